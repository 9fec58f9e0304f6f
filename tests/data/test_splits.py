"""Patient-level splits: disjoint, seeded, order-independent; leave-one-patient-out; contiguous slabs."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from medwss.data.splits import contiguous_slabs, patient_split, select

PATIENTS = [f"p{i:02d}" for i in range(17)]


@pytest.mark.parametrize("n", [2, 3, 5, 10, 17])
@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.5, 0.99])
def test_patient_split_disjoint_and_both_sides_non_empty(n, fraction):
    scans = [p for p in PATIENTS[:n] for _ in range(3)]  # three scans per patient
    train, val = patient_split(scans, fraction, seed=1)
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == PATIENTS[:n]
    assert train and val
    assert train == sorted(train) and val == sorted(val)


@pytest.mark.parametrize(("n", "fraction", "n_val"), [(10, 0.2, 2), (10, 0.25, 2), (17, 0.2, 3), (4, 0.5, 2)])
def test_patient_split_size(n, fraction, n_val):
    assert len(patient_split(PATIENTS[:n], fraction)[1]) == n_val


def test_patient_split_seeded_and_independent_of_input_order():
    shuffled = PATIENTS[:]
    random.Random(3).shuffle(shuffled)
    assert patient_split(PATIENTS, 0.3, seed=7) == patient_split(shuffled, 0.3, seed=7)
    assert patient_split(PATIENTS, 0.3, seed=7) == patient_split(iter(PATIENTS * 2), 0.3, seed=7)
    splits = {tuple(patient_split(PATIENTS, 0.3, seed=s)[1]) for s in range(10)}
    assert len(splits) > 1  # the seed matters


@pytest.mark.parametrize(("patients", "expected"), [([], ([], [])), (["a", "a"], (["a"], []))])
def test_patient_split_too_few_patients(patients, expected):
    assert patient_split(patients) == expected


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_patient_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        patient_split(PATIENTS, fraction)


@pytest.mark.parametrize(("num_slices", "num_folds"), [(6, 1), (6, 2), (7, 3), (129, 5), (5, 5)])
def test_contiguous_slabs(num_slices, num_folds):
    slabs = contiguous_slabs(num_slices, num_folds)
    assert len(slabs) == num_folds
    np.testing.assert_array_equal(np.concatenate(slabs), np.arange(num_slices))
    for slab in slabs:
        assert slab.size and np.all(np.diff(slab) == 1)
    sizes = [slab.size for slab in slabs]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("num_slices", "num_folds"), [(5, 0), (5, 6), (0, 1)])
def test_contiguous_slabs_errors(num_slices, num_folds):
    with pytest.raises(ValueError, match="num_folds"):
        contiguous_slabs(num_slices, num_folds)


def test_select_by_patient():
    items = [SimpleNamespace(patient=p, case=f"{p}_{i}") for p in ("a", "b", "c") for i in range(2)]
    train, val = patient_split([item.patient for item in items], 0.34, seed=0)
    chosen = select(items, val)
    assert {item.patient for item in chosen} == set(val)
    assert not {item.case for item in chosen} & {item.case for item in select(items, train)}
    assert select(items, ["b"], key=lambda item: item.case[0]) == items[2:4]
