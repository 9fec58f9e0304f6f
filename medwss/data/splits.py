"""Patient-level splits: no patient's slices on both sides, so validation measures generalisation to new patients."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def patient_split(patients: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split distinct patient ids into (train, validation), seeded and independent of input order.

    At least one patient lands on each side when there are two or more.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    unique = sorted(set(patients))
    if len(unique) < 2:
        return unique, []
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = min(len(unique) - 1, max(1, int(round(val_fraction * len(unique)))))
    val = sorted(unique[i] for i in order[:n_val])
    train = sorted(p for p in unique if p not in set(val))
    return train, val


def contiguous_slabs(num_slices: int, num_folds: int) -> list[np.ndarray]:
    """Slice indices of ``num_folds`` contiguous slabs covering 0..num_slices-1.

    With one positive patient (3D-IRCADb liver tumours here) validation holds out a slab of neighbouring slices,
    not random slices, so near-duplicate neighbours do not leak across the split.
    """
    if num_folds < 1 or num_folds > num_slices:
        raise ValueError(f"need 1 <= num_folds <= num_slices, got {num_folds} for {num_slices}")
    return [np.asarray(chunk) for chunk in np.array_split(np.arange(num_slices), num_folds)]


def select(items: Sequence, patients: Iterable[str], key=lambda item: item.patient) -> list:
    """The items whose patient is in ``patients``."""
    wanted = set(patients)
    return [item for item in items if key(item) in wanted]
