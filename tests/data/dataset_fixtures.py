"""Tiny data sets in the three layouts medwss reads, written to a test's ``tmp_path``, with the answer known.

Every builder writes real NIfTI files (8 x 8 x 6 voxels, oblique direction, anisotropic spacing, non-zero origin) and
returns the per-slice presence each class must get, computed here from the slices the structures were drawn on,
not by medwss. Layouts:

* MSD / nnU-Net (``imagesTr``, ``labelsTr``, ``dataset.json``) in both forms: the MSD ``training`` list and the
  nnU-Net v2 ``file_ending`` form with ``_0000`` channel files.
* 3D-IRCADb-like: one binary mask per structure, several tumour files, a cyst, a liver prior, and a tumour-free case
  that ships no tumour file at all.
* Prostate158-like: one folder per patient, a zonal label map (0 background, 1 transition zone, 2 peripheral zone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

SHAPE = (8, 8, 6)
SPACING = (0.9, 0.8, 3.0)
ORIGIN = (-20.0, 15.5, -40.0)
_t = np.deg2rad(15.0)
# ITK (LPS) direction, columns = index axes: 15 degrees about x with y flipped, as an oblique prostate scan.
DIRECTION = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(_t), -np.sin(_t)], [0.0, np.sin(_t), np.cos(_t)]]) @ np.diag(
    [1.0, -1.0, 1.0]
)
# Two in-plane boxes, so two structures drawn on the same slice do not overlap.
BOX_A = (slice(1, 4), slice(1, 4))
BOX_B = (slice(4, 7), slice(4, 7))


@dataclass
class TinyDataset:
    """A data set written to disk and what medwss must find in it.

    Args:
        root: the data set folder.
        spec: the dataset spec file to pass (None: an MSD folder read through its ``dataset.json``).
        expected: case -> class -> per-slice presence (float 0/1), computed from the drawn slices.
        patients: case -> patient id.
        files: named files of interest (e.g. ``"irc_01/cyst"``) for tests that break or inspect one.
    """

    root: Path
    spec: Path | None
    expected: dict[str, dict[str, np.ndarray]]
    patients: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(next(iter(self.expected.values())))


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    *,
    spacing: tuple[float, ...] = SPACING,
    origin: tuple[float, ...] = ORIGIN,
    direction: np.ndarray = DIRECTION,
) -> Path:
    """Write an (x, y, z) array as NIfTI with the given ITK geometry; an (x, y, z, t) array becomes a 4D series."""
    array = np.asarray(array)
    if array.ndim == 4:  # GetImageFromArray would read a 4D array as a 3D vector image
        frames = [_image(array[..., t], spacing, origin, direction) for t in range(array.shape[-1])]
        image = sitk.JoinSeries(frames)
    else:
        image = _image(array, spacing, origin, direction)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _image(array: np.ndarray, spacing, origin, direction) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in np.asarray(direction).reshape(-1)))
    return image


def mr_image(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """float32 T2-like intensities 50..1000 (MR has no absolute units)."""
    return np.random.default_rng(seed).uniform(50.0, 1000.0, size=shape).astype(np.float32)


def ct_image(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """int16 Hounsfield units: air (-1000) around soft tissue (0..200)."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, -1000, dtype=np.int16)
    image[1:-1, 1:-1, :] = rng.integers(0, 200, size=(shape[0] - 2, shape[1] - 2, shape[2]), dtype=np.int16)
    return image


def draw(slices: dict[int, tuple[slice, slice]] | list[int], value: int = 1, base: np.ndarray | None = None,
         box: tuple[slice, slice] = BOX_A) -> np.ndarray:
    """A uint8 label map (or ``base`` drawn over) with ``value`` in ``box`` on each listed slice z."""
    labels = np.zeros(SHAPE, dtype=np.uint8) if base is None else base.copy()
    boxes = slices if isinstance(slices, dict) else {z: box for z in slices}
    for z, (bx, by) in boxes.items():
        labels[bx, by, z] = value
    return labels


def presence(slices, depth: int = SHAPE[2]) -> np.ndarray:
    """Per-slice presence (float 0/1) with 1 on the listed slices."""
    out = np.zeros(depth)
    out[list(slices)] = 1.0
    return out


def write_spec(path: str | Path, mapping: dict) -> Path:
    """Write a dataset spec as YAML (or JSON for a .json path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mapping) if path.suffix == ".json" else yaml.safe_dump(mapping, sort_keys=False))
    return path


def garbage(path: str | Path) -> Path:
    """A file with a volume suffix that no reader can parse."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a NIfTI file\x00\x01\x02" * 10)
    return path


# ---------------------------------------------------------------------------------------------------------------
# MSD / nnU-Net
# ---------------------------------------------------------------------------------------------------------------

#: case -> zone value -> slices drawn (PZ = 1 in box A, TZ = 2 in box B; prostate_01 has no TZ).
MSD_ZONES = {"prostate_00": {1: [1, 2, 3], 2: [2, 3, 4]}, "prostate_01": {1: [0, 1]}}


def write_msd(base: str | Path, form: str = "msd") -> TinyDataset:
    """An MSD Task05-like folder: zonal label maps 1 = PZ, 2 = TZ.

    Args:
        form: ``"msd"`` (labels ``{"0": "background"}``, a ``training`` list) or ``"v2"`` (nnU-Net v2:
            labels ``{"background": 0}``, ``file_ending``, images ``<case>_0000`` plus a second channel ``_0001``
            that must not become a case).
    """
    root = Path(base) / f"Task05_{form}"
    expected, files = {}, {}
    for seed, (case, zones) in enumerate(MSD_ZONES.items()):
        labels = np.zeros(SHAPE, dtype=np.uint8)
        for value, slices in zones.items():
            labels = draw(slices, value, labels, BOX_A if value == 1 else BOX_B)
        image_name = f"{case}_0000.nii.gz" if form == "v2" else f"{case}.nii.gz"
        files[f"{case}/image"] = write_nifti(root / "imagesTr" / image_name, mr_image(seed))
        if form == "v2":
            write_nifti(root / "imagesTr" / f"{case}_0001.nii.gz", mr_image(seed + 10))
        files[f"{case}/label"] = write_nifti(root / "labelsTr" / f"{case}.nii.gz", labels)
        expected[case] = {"PZ": presence(zones.get(1, [])), "TZ": presence(zones.get(2, []))}
    if form == "v2":
        meta = {
            "channel_names": {"0": "T2", "1": "ADC"},
            "labels": {"background": 0, "PZ": 1, "TZ": 2},
            "numTraining": len(MSD_ZONES),
            "file_ending": ".nii.gz",
        }
    else:
        meta = {
            "name": "Prostate",
            "modality": {"0": "T2"},
            "labels": {"0": "background", "1": "PZ", "2": "TZ"},
            "numTraining": len(MSD_ZONES),
            "training": [
                {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"} for case in MSD_ZONES
            ],
            "test": [],
        }
    files["dataset.json"] = root / "dataset.json"
    files["dataset.json"].write_text(json.dumps(meta, indent=1))
    return TinyDataset(root, None, expected, {case: case for case in MSD_ZONES}, files)


# ---------------------------------------------------------------------------------------------------------------
# 3D-IRCADb-like: one mask file per structure
# ---------------------------------------------------------------------------------------------------------------

#: irc_01: tumour 01 on z 1, tumour 02 on z 3-4 and, on z 5, drawn exactly over the cyst (so z 5 is cyst only);
#: the cyst also sits alone on z 0. irc_07 is tumour-free: no livertumor file, only a structure outside the liver.
IRCADB_TUMOUR_SLICES = {"irc_01": [1, 3, 4], "irc_07": []}
IRCADB_TUMOUR_SLICES_WITHOUT_EXCLUSION = {"irc_01": [1, 3, 4, 5], "irc_07": []}
IRCADB_SPEC = {
    "name": "ircadb_tiny",
    "modality": "CT",
    "preset": "ct_liver",
    "image": "imagesTr/{case}.nii.gz",
    "classes": {
        "tumour": {
            "files": ["labelsTr/{case}/livertumor*.nii.gz"],
            "test": "> 0",
            "exclude": ["labelsTr/{case}/liverkyst.nii.gz"],
            "missing": "empty",
        }
    },
    "prior": "labelsTr/{case}/liver.nii.gz",
}


def write_ircadb(base: str | Path, spec: dict | None = None) -> TinyDataset:
    """A 3D-IRCADb-like CT data set (two cases) and its spec (``IRCADB_SPEC`` unless ``spec`` is given)."""
    base = Path(base)
    root = base / "liver"
    liver = draw({z: (slice(0, 8), slice(0, 8)) for z in range(SHAPE[2])})
    files = {}
    for seed, case in enumerate(IRCADB_TUMOUR_SLICES):
        labels = root / "labelsTr" / case
        files[f"{case}/image"] = write_nifti(root / "imagesTr" / f"{case}.nii.gz", ct_image(seed))
        files[f"{case}/liver"] = write_nifti(labels / "liver.nii.gz", liver)
    irc01 = root / "labelsTr" / "irc_01"
    files["irc_01/tumour01"] = write_nifti(irc01 / "livertumor01.nii.gz", draw([1]))
    files["irc_01/tumour02"] = write_nifti(irc01 / "livertumor02.nii.gz", draw({3: BOX_A, 4: BOX_B, 5: BOX_B}))
    files["irc_01/cyst"] = write_nifti(irc01 / "liverkyst.nii.gz", draw({0: BOX_A, 5: BOX_B}))
    files["irc_07/not_liver"] = write_nifti(root / "labelsTr" / "irc_07" / "tumor_not_liver.nii.gz", draw([2]))
    spec_path = write_spec(base / "ircadb_tiny.yaml", spec or IRCADB_SPEC)
    expected = {case: {"tumour": presence(zs)} for case, zs in IRCADB_TUMOUR_SLICES.items()}
    return TinyDataset(root, spec_path, expected, {case: case for case in expected}, files)


# ---------------------------------------------------------------------------------------------------------------
# Prostate158-like: one folder per patient, zonal map 0/1/2
# ---------------------------------------------------------------------------------------------------------------

#: case -> zone -> slices (1 = transition zone in box A, 2 = peripheral zone in box B).
P158_ZONES = {"001": {1: [1, 2, 3], 2: [2, 3, 4]}, "020": {1: [0, 1, 2]}, "021": {2: [3, 4, 5]}}
P158_SPEC = {
    "name": "prostate158_tiny",
    "modality": "MR",
    "preset": "mr",
    "image": "{case}/t2.nii.gz",
    "classes": {
        "gland": {"files": ["{case}/t2_anatomy_reader1.nii.gz"], "test": "> 0"},
        "pz": {"files": ["{case}/t2_anatomy_reader1.nii.gz"], "test": "== 2"},
    },
}


def write_prostate158(
    base: str | Path, zones: dict[str, dict[int, list[int]]] | None = None, spec: dict | None = None
) -> TinyDataset:
    """A Prostate158-like MR data set; ``zones`` (default ``P158_ZONES``) names the cases and their drawn slices."""
    base = Path(base)
    root = base / "prostate158"
    zones = P158_ZONES if zones is None else zones
    expected, files = {}, {}
    for seed, (case, case_zones) in enumerate(zones.items()):
        labels = np.zeros(SHAPE, dtype=np.uint16)
        for value, slices in case_zones.items():
            labels = draw(slices, value, labels, BOX_A if value == 1 else BOX_B)
        files[f"{case}/image"] = write_nifti(root / case / "t2.nii.gz", mr_image(seed))
        files[f"{case}/label"] = write_nifti(root / case / "t2_anatomy_reader1.nii.gz", labels)
        gland = sorted(set(case_zones.get(1, [])) | set(case_zones.get(2, [])))
        expected[case] = {"gland": presence(gland), "pz": presence(case_zones.get(2, []))}
    spec_path = write_spec(base / "prostate158_tiny.yaml", spec or P158_SPEC)
    return TinyDataset(root, spec_path, expected, {case: case for case in expected}, files)
