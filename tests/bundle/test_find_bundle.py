"""Bundles named on the command line (``--bundle prostate``) are found without a checkout, or the error says where
medwss looked."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medwss.errors import MedwssError
from medwss.runtime import config
from medwss.runtime.config import BUNDLES_ENV, bundle_dir_of, find_bundle
from tests.cli.helpers import assert_one_error_line, invoke

SHIPPED = Path(__file__).resolve().parents[2] / "bundles"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working folder outside the checkout, with $MEDWSS_BUNDLES unset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(BUNDLES_ENV, raising=False)
    return tmp_path


def test_a_name_resolves_from_the_checkout_from_any_folder(elsewhere):
    assert bundle_dir_of("prostate") == (SHIPPED / "prostate").resolve()
    assert bundle_dir_of(SHIPPED / "liver_tumour") == (SHIPPED / "liver_tumour").resolve()  # a folder stays a folder


def test_without_a_checkout_the_error_says_where_bundles_are_looked_for(elsewhere, monkeypatch):
    monkeypatch.setattr(config, "CHECKOUT_BUNDLES", elsewhere / "site-packages" / "bundles")  # an installed wheel
    with pytest.raises(MedwssError) as err:
        find_bundle("prostate")
    message = str(err.value)
    assert "\n" not in message
    assert str(elsewhere / "bundles") in message and f"${BUNDLES_ENV} is unset" in message
    assert "site-packages" not in message  # a folder that does not exist is not offered as a place

    monkeypatch.setenv(BUNDLES_ENV, str(SHIPPED))
    assert bundle_dir_of("prostate") == (SHIPPED / "prostate").resolve()

    copy = elsewhere / "bundles" / "prostate"  # the current folder's bundles/ comes after $MEDWSS_BUNDLES
    (copy / "configs").mkdir(parents=True)
    assert bundle_dir_of("prostate") == (SHIPPED / "prostate").resolve()
    monkeypatch.delenv(BUNDLES_ENV)
    assert bundle_dir_of("prostate") == copy.resolve()


def test_missing_folders_and_names_are_one_line_cli_errors(elsewhere):
    scan = elsewhere / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 4), dtype=np.float32), np.eye(4)), scan)
    result = invoke("segment", scan, "--bundle", "nope", "--no-progress")
    assert_one_error_line(result, "nope", "no bundle named 'nope' in ")
    assert str(elsewhere / "bundles") in result.stderr and BUNDLES_ENV in result.stderr
    assert not list(elsewhere.glob("scan_*"))  # no mask left behind
    result = invoke("train", "nope", "--no-progress")
    assert_one_error_line(result, "nope", "no bundle named 'nope' in ")
    result = invoke("segment", scan, "--bundle", elsewhere / "gone" / "prostate", "--no-progress")
    assert_one_error_line(result, elsewhere / "gone" / "prostate", "bundle not found")
