"""Which files are the cases to segment, and which organ prior goes with each scan (``medwss segment`` and the
bundles' ``dataset`` lists): files, folders, DICOM series folders, MSD layouts and photo folders.

It sits in ``data`` beside the readers because it is about files on disk, not about a trained model: the segmenter,
the MONAI datalists of ``inference.yaml`` and the CLI ask the same questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medwss.errors import MedwssError

LABEL_WORDS = frozenset(
    {"label", "labels", "seg", "segmentation", "mask", "masks", "gt", "truth", "anatomy", "reader1", "reader2",
     "roi", "annotation", "annotations", "rlsp", "cam", "single-agent", "prior", "liver", "tumor", "tumour", "gland"}
)  # fmt: skip
LABEL_FOLDERS = frozenset({"labelstr", "labelsts", "labels", "masks", "segmentations", "eval"})


def looks_like_label(path: Path) -> bool:
    """A file named like a label map or a medwss output (``t2_anatomy_reader1``, ``case_seg``, ``x_rlsp``)."""
    import re

    from medwss.data.io import strip_suffix

    words = {w for w in re.split(r"[_.\-]+", strip_suffix(path).lower()) if w}
    return bool(words & LABEL_WORDS) or path.parent.name.lower() in LABEL_FOLDERS


def find_scans(
    paths: Sequence[Path], pattern: str | None = None, spec: Path | None = None
) -> list[Path]:
    """``find_scan_items`` without the relative folders."""
    return [scan for scan, _ in find_scan_items(paths, pattern, spec)]


def find_scan_items(
    paths: Sequence[Path], pattern: str | None = None, spec: Path | None = None
) -> list[tuple[Path, Path]]:
    """Expand files, folders and DICOM series folders into scans, each with its folder relative to the folder given
    (so ``out/<patient>/t2.nii.gz`` keeps two patients' ``t2`` apart).

    What counts as a scan in a folder: the files matching ``pattern`` (a glob relative to the folder, e.g.
    ``'*/t2.nii.gz'``), else those of a dataset spec's image pattern, else those of an MSD ``dataset.json``
    (imagesTr, imagesTs), else every volume file and DICOM series folder at any depth whose name does not look like
    a label map or a medwss output (``looks_like_label``).

    Raises:
        MedwssError: a missing path, or a folder with no scan.
    """
    from medwss.data.io import dicom_series_ids, volume_suffix

    if spec is not None and pattern is None:
        from medwss.data.datalist import DatasetSpec

        image = DatasetSpec.load(spec).image
        if image is None:
            raise MedwssError(spec, "this spec names no image pattern ('image: {case}/...')")
        pattern = image.replace("{case}", "*")
    items: list[tuple[Path, Path]] = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise MedwssError(p, "file not found")
        if p.is_file() or dicom_series_ids(p):
            items.append((p, Path()))
            continue
        if pattern is not None:
            found = sorted(c for c in p.glob(pattern) if (c.is_file() and volume_suffix(c)) or c.is_dir())
        elif (p / "dataset.json").is_file():
            found = sorted(c for sub in ("imagesTr", "imagesTs") for c in (p / sub).glob("*") if volume_suffix(c))
        else:
            found = _walk_scans(p)
        if not found:
            raise MedwssError(p, "no scans in this folder (NIfTI, MetaImage, NRRD or DICOM series)")
        items += [(c, c.parent.relative_to(p)) for c in found]
    return items


def _walk_scans(folder: Path, depth: int = 4) -> list[Path]:
    """Volume files and DICOM series folders under ``folder`` (a few levels deep), label maps left out."""
    from medwss.data.io import dicom_series_ids, volume_suffix

    found: list[Path] = []
    try:
        children = sorted(folder.iterdir())
    except OSError as err:
        raise MedwssError(folder, f"cannot list this folder ({err.strerror})") from None
    for c in children:
        if c.name.startswith("."):
            continue
        if c.is_file() and volume_suffix(c) and not looks_like_label(c):
            found.append(c)
        elif c.is_dir() and c.name.lower() not in LABEL_FOLDERS:
            if dicom_series_ids(c):
                found.append(c)
            elif depth > 0 and not c.is_symlink():
                found += _walk_scans(c, depth - 1)
    return found


def match_priors(scans: Sequence[Path], roi: Path | None) -> list[Path | None]:
    """The organ-prior mask of each scan: ``roi`` itself for one scan, else ``roi/<case id>.*`` by name.

    Raises:
        MedwssError: a scan without its prior.
    """
    from medwss.data.io import strip_suffix, volume_suffix

    if roi is None:
        return [None] * len(scans)
    if not roi.exists():
        raise MedwssError(roi, "file not found")
    if roi.is_file():
        if len(scans) != 1:
            raise MedwssError(roi, "one --roi-mask file for several scans: give a folder of masks named like them")
        return [roi]
    by_case = {strip_suffix(c): c for c in roi.iterdir() if c.is_file() and volume_suffix(c)}
    out = []
    for scan in scans:
        if strip_suffix(scan) not in by_case:
            raise MedwssError(scan, f"no organ prior named {strip_suffix(scan)}.* in {roi}")
        out.append(by_case[strip_suffix(scan)])
    return out


def find_photos(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their photos (by suffix), sorted.

    Raises:
        MedwssError: a missing path, or a folder without photos.
    """
    from medwss.data.natural.dataset import PHOTO_SUFFIXES

    photos: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise MedwssError(path, "file not found")
        if path.is_file():
            photos.append(path)
            continue
        found = sorted(c for c in path.iterdir() if c.is_file() and c.suffix.lower() in PHOTO_SUFFIXES)
        if not found:
            raise MedwssError(path, f"no photos in this folder ({', '.join(PHOTO_SUFFIXES)})")
        photos += found
    return photos
