"""What the CLI calls: one function per verb, plain arguments in, results out (nnU-Net's ``*_entrypoints``).

Heavy imports stay inside the functions so that ``medwss --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from medwss.runtime.progress import ProgressTask


def check_dataset(path: str | Path, spec: str | Path | None = None, task: ProgressTask | None = None):
    """Read every image, label, prior and manifest row under ``path``; return a ``CheckReport``.

    Raises:
        MedwssError: ``path`` cannot be read at all.
    """
    from medwss.data.check import check_path

    task = task or ProgressTask()
    return check_path(path, spec, progress=task.advance, on_total=task.set_total)


def labels_from_masks(
    root: str | Path, out: str | Path, spec: str | Path | None = None, task: ProgressTask | None = None
):
    """Derive a slice-level presence manifest from a data set's masks and write it (CSV or JSON by suffix).

    Returns:
        the ``Manifest`` written.

    Raises:
        MedwssError: bad data set, spec or output path.
    """
    from medwss.data.datalist import DatasetSpec
    from medwss.data.manifest import manifest_from_masks, write_manifest
    from medwss.errors import MedwssError

    out = Path(out)
    if out.suffix.lower() not in (".csv", ".json"):
        raise MedwssError(out, "a manifest is a .csv or .json file")
    inputs = [Path(root) / "dataset.json", *([Path(spec)] if spec else [])]
    if any(out.resolve() == p.resolve() for p in inputs):
        raise MedwssError(out, "refusing to overwrite an input (the data set's dataset.json or the spec)")
    task = task or ProgressTask()
    manifest = manifest_from_masks(root, DatasetSpec.load(spec) if spec else None, progress=task.advance)
    write_manifest(manifest, out)
    return manifest


def evaluate(
    pred: str | Path,
    gt: str | Path,
    out: str | Path | None = None,
    *,
    gt_pattern: str | None = None,
    gt_rule: str | None = None,
    pred_rule: str | None = None,
    classes: Sequence[str] | Mapping[str, str] | None = None,
    spec: str | Path | None = None,
    report_html: str | Path | None = None,
    images: str | Path | None = None,
    bundle: str | None = None,
    command: str = "",
    task: ProgressTask | None = None,
):
    """Score predicted masks against ground truth per case and class; write ``cases.csv`` and ``summary.json``
    (and, with ``report_html``, one self-contained HTML page: summary, cases by Dice with overlays, Dice plot).

    With a slice-folder ``spec`` (``kind: slices``), ``gt`` is the slice set's folder and ``pred`` the folder
    ``medwss segment`` wrote; each patient is scored over its stacked slices (``evaluate_slice_set``).

    Args:
        pred, gt: a mask file each, or folders paired by case id (``gt_pattern`` such as
            ``"{case}/gland_reader1.nii.gz"`` finds ground truths laid out one folder per case).
        out: output folder; default ``eval/`` in the prediction folder (or next to the prediction file).
        gt_rule, pred_rule, classes: label rules, see ``medwss.metrics.evaluate.class_rules``.
        report_html: HTML report to write (``medwss.viz.report``).
        images: the scans under the report's overlays: a scan for one case, or a folder of scans named by case id.
        bundle, command: what produced the predictions, stated in the report.

    Returns:
        the ``EvalReport`` written (rows, per-class summary, unmatched files, output paths).

    Raises:
        MedwssError: missing or unreadable masks, no matching case, a grid mismatch, bad rules, unwritable output;
            nothing is written then.
    """
    from medwss.errors import MedwssError
    from medwss.metrics.evaluate import class_rules, evaluate_cases, match_cases, write_report

    pred = Path(pred)
    task = task or ProgressTask()
    if spec is not None:
        from medwss.data.datalist import DatasetSpec
        from medwss.metrics.evaluate import evaluate_slice_set

        loaded = DatasetSpec.load(spec)
        if getattr(loaded, "kind", "volumes") != "slices":
            raise MedwssError(spec, "eval takes a --spec only for slice-folder sets (kind: slices)")
        if classes or gt_rule or pred_rule or gt_pattern:
            raise MedwssError(
                spec, "a slice-folder spec's classes set the rules: drop --class/--gt-rule/--pred-rule/--gt-pattern"
            )
        out = Path(out) if out is not None else pred / "eval"
        return write_report(evaluate_slice_set(pred, gt, loaded, progress=task.advance), out)
    rules = class_rules(classes, gt_rule, pred_rule)
    if report_html is not None:
        from medwss.viz.report import check_report_path

        check_report_path(report_html)
    matching = match_cases(pred, gt, gt_pattern)
    out = Path(out) if out is not None else (pred if pred.is_dir() else pred.parent) / "eval"
    task.set_total(len(matching.pairs) * (2 if report_html is not None else 1))
    report = evaluate_cases(matching, rules, progress=task.advance)
    if report_html is None:
        return write_report(report, out)
    from medwss.viz.report import write_html_report

    task.describe("drawing the report")
    html = write_html_report(
        report, report_html, images=Path(images) if images else None, command=command, bundle=bundle,
        progress=task.advance,
    )  # fmt: skip
    report = write_report(report, out)
    report.report_html = html
    return report


def evaluate_semantic(
    pred: str | Path,
    gt: str | Path,
    out: str | Path | None = None,
    *,
    num_classes: int | None = None,
    class_set: str | None = None,
    task: ProgressTask | None = None,
):
    """Score PNG label maps with VOC conventions (mIoU, mean Dice); write ``summary.json``, ``classes.csv``,
    ``cases.csv`` (default ``eval/`` in the prediction folder or beside a prediction file).

    Args:
        class_set: ``voc`` or ``coco`` names the classes (background + its classes); else labels are numbers.

    Raises:
        MedwssError: unreadable or mismatched label maps, no pair, unwritable output.
    """
    from medwss.data.natural.classes import CLASS_SETS, class_names
    from medwss.errors import MedwssError
    from medwss.metrics.semantic_eval import evaluate_semantic as score
    from medwss.metrics.semantic_eval import write_semantic_report

    pred = Path(pred)
    names = None
    if class_set is not None:
        if class_set not in CLASS_SETS:
            raise MedwssError("--class-set", f"unknown class set {class_set!r} (use {' or '.join(CLASS_SETS)})")
        names = ["background", *class_names(class_set)]
        num_classes = num_classes or len(names)
    out = Path(out) if out is not None else (pred if pred.is_dir() else pred.parent) / "eval"
    task = task or ProgressTask()
    report = score(pred, gt, num_classes=num_classes, class_names=names, progress=task.advance)
    return write_semantic_report(report, out)


def train_bundle(
    bundle: str | Path,
    stage: str | None = None,
    *,
    overrides: dict | None = None,
    run_dir: str | Path | None = None,
    restart: bool = False,
    progress: bool = True,
    command: str = "",
) -> list[dict]:
    """Run a bundle's training stages in order (or one ``stage``), each resuming from its last checkpoint.

    Returns the exported model notes, one per stage run.

    Raises:
        MedwssError: bad bundle, config, override or data.
    """
    from medwss.bundle.stages import train_stage
    from medwss.runtime.config import load_config, stages_of
    from medwss.runtime.device import resolve_device
    from medwss.runtime.distributed import distributed_run
    from medwss.runtime.progress import progress_task

    stages = [stage] if stage else stages_of(bundle)
    overrides = dict(overrides or {})
    # --device, else the bundle's `device` (common.yaml), else auto; every stage then reads the resolved device.
    device = resolve_device(overrides.get("device") or load_config(bundle, []).get("device") or "auto")
    overrides["device"] = str(device)
    notes = []
    with distributed_run(device) as here:  # one process alone, or this rank of a torchrun job
        for name in stages:
            with progress_task(f"{name}", enabled=progress and here.is_main, lines=True) as task:
                note = train_stage(
                    bundle, name, overrides=overrides, run_dir=run_dir, restart=restart, task=task, command=command
                )
            notes.append(note)
    return notes if here.is_main else []


def segment(
    scans: list[str | Path],
    out: str | Path | None = None,
    *,
    bundle: str | Path | None = None,
    method: str = "rlsp",
    roi_mask: str | Path | None = None,
    overlay: bool = False,
    fmt: str = "nifti",
    task: ProgressTask | None = None,
    pattern: str | None = None,
    spec: str | Path | None = None,
    allow_modality_mismatch: bool = False,
    device: str | None = None,
    threads: int | None = None,
) -> list[Path]:
    """Segment scans (files, folders, DICOM series folders) with a bundle; returns the masks written.

    With a slice-folder ``spec`` (``kind: slices``) the one input is the slice set's folder and ``out`` a folder:
    one PNG mask per slice, same size, under ``out`` as the images lie under the set (organ prior from the spec).

    ``bundle`` is a folder or a name (``prostate``: ``medwss.runtime.config.find_bundle``), ``prostate`` when
    None. Each mask is NIfTI on exactly its scan's grid; with
    ``overlay`` a PNG of the mask on the scan is written beside it. ``fmt`` ``dicom-seg`` writes a DICOM SEG
    referencing the source series instead (``<mask>.seg.dcm``; DICOM series inputs only, needs the ``dicom-seg``
    extra), ``both`` writes both. With a photo bundle (``bundles/coco``) the
    inputs are photos and each result is a PNG label map at the photo's size, always with an overlay beside it.
    The first bad scan stops the run (see `segment_batch` for large folders).

    Every output is checked and claimed (``medwss.runtime.outputs``) before the first scan is read: a bad ``-o``
    fails at once, and two processes never write the same file. In a folder, ``pattern`` (a glob) or a dataset
    ``spec`` decides what is a scan (see ``find_scan_items``); masks keep the scans' sub-folders.

    Raises:
        MedwssError: bad scans, masks, outputs or bundle; a scan of another modality than the bundle's unless
            ``allow_modality_mismatch``.
    """
    from medwss.data.discovery import find_scan_items, match_priors
    from medwss.inference.segment import Segmenter, check_format, output_paths, seg_path
    from medwss.runtime.device import configure_threads
    from medwss.runtime.outputs import claim_outputs

    if bundle is not None and is_photo_bundle(bundle):
        from medwss.errors import MedwssError
        from medwss.inference.photo_segment import segment_photos

        if roi_mask is not None:
            raise MedwssError(roi_mask, "photo bundles take no organ prior mask")
        if fmt != "nifti":
            raise MedwssError("--format", "photo bundles write PNG label maps; DICOM SEG is for DICOM series")
        return segment_photos(scans, out, bundle, method, overlay=True, task=task)

    task = task or ProgressTask()
    if is_slice_spec(spec):
        from medwss.data.datalist import DatasetSpec
        from medwss.errors import MedwssError
        from medwss.inference.slice_segment import segment_slice_set

        loaded = DatasetSpec.load(spec)
        if len(scans) != 1 or out is None or roi_mask is not None or overlay:
            raise MedwssError(
                spec, "a slice set is segmented as one folder with -o OUT_FOLDER (no --roi-mask, --overlay)"
            )
        segmenter = Segmenter(bundle or default_bundle(), method, device=device)
        configure_threads(segmenter.device, threads)
        patients = loaded.discover(Path(scans[0]))
        task.set_total(len(patients))
        return segment_slice_set(Path(scans[0]), loaded, Path(out), segmenter, progress=task.advance)
    items = find_scan_items([Path(s) for s in scans], pattern, Path(spec) if spec else None)
    scan_paths = [scan for scan, _ in items]
    check_format(scan_paths, fmt)
    priors = match_priors(scan_paths, Path(roi_mask) if roi_mask else None)
    outs = output_paths(scan_paths, Path(out) if out else None, method, [folder for _, folder in items], fmt)
    stems = [t.name.split(".nii")[0].removesuffix(".dcm").removesuffix(".seg") for t in outs]
    pngs = [t.with_name(stem + "_overlay.png") if overlay else None for t, stem in zip(outs, stems, strict=True)]
    inputs = [*scan_paths, *(p for p in priors if p is not None)]
    files = [*(outs if fmt != "dicom-seg" else []), *(seg_path(t) for t in outs if fmt != "nifti")]
    with claim_outputs([*files, *(p for p in pngs if p is not None)], inputs):
        refuse_other_scans_masks(scan_paths, outs)
        segmenter = Segmenter(
            bundle or default_bundle(), method, allow_modality_mismatch=allow_modality_mismatch, device=device
        )
        configure_threads(segmenter.device, threads)
        task.set_total(len(scan_paths))
        written = []
        for scan, prior, target, png in zip(scan_paths, priors, outs, pngs, strict=True):
            task.describe(f"segmenting {scan.name}: scan")
            written += segmenter.segment(scan, target, prior, png, fmt, progress=task.detail)
            task.advance(1)
    return written


def refuse_other_scans_masks(scans: list[Path], outs: list[Path]) -> None:
    """Refuse to replace a mask that medwss wrote for another scan (two patients' ``t2.nii.gz`` into one folder,
    by one process after the other or at once); a mask of the same scan is replaced (a rerun).

    Raises:
        MedwssError: naming the output and what to do.
    """
    from medwss.data.io import mask_source, source_tag
    from medwss.errors import MedwssError

    for scan, out in zip(scans, outs, strict=True):
        if out.is_file():
            existing = mask_source(out)
            if existing is not None and existing != source_tag(scan):
                raise MedwssError(out, f"holds the mask of another scan than {scan}; choose another output "
                                       "(-o) or remove it")  # fmt: skip


def segment_batch(
    scans: list[str | Path],
    out: str | Path | None = None,
    *,
    bundle: str | Path | None = None,
    method: str = "rlsp",
    roi_mask: str | Path | None = None,
    overlay: bool = False,
    shard: str | None = None,
    overwrite: bool = False,
    task: ProgressTask | None = None,
    device: str | None = None,
    threads: int | None = None,
    fmt: str = "nifti",
    pattern: str | None = None,
    spec: str | Path | None = None,
    allow_modality_mismatch: bool = False,
):
    """Segment a large set of scans as one part of a job: ``shard`` ``"i/n"`` (array jobs), or torchrun's rank.

    Each scan is segmented by exactly one shard; masks already there are skipped (a rerun resumes a killed job)
    unless ``overwrite``; a bad scan is recorded and the others go on. Returns the ``BatchSummary``.

    Raises:
        MedwssError: a bad shard, bundle, output folder or scan list (before any scan is segmented).
    """
    import torch

    from medwss.inference.sharding import merge_summaries, shard_from
    from medwss.inference.sharding import segment_batch as run_batch
    from medwss.runtime.distributed import distributed_run, env_world, gather_objects

    part = shard_from(shard)
    segmenter, scan_paths, priors, outs = _segment_plan(
        scans, out, bundle, method, roi_mask, device, threads, fmt, pattern, spec, allow_modality_mismatch
    )
    task = task or ProgressTask()

    def segment_one(scan, target, prior, png):
        return segmenter.segment(scan, target, prior, png, fmt, progress=task.detail)[0]

    if shard is not None or env_world().size <= 1:
        return run_batch(
            segment_one, scan_paths, priors, outs, shard=part, overlay=overlay, overwrite=overwrite, task=task
        )
    # Under torchrun the ranks wait for each other and share one summary: torchrun stops every rank as soon as
    # one exits with an error, which would let one bad scan stop the others' scans.
    with distributed_run(torch.device("cpu")) as here:  # gloo: only Python objects travel
        summary = run_batch(
            segment_one, scan_paths, priors, outs, shard=part, overlay=overlay, overwrite=overwrite, task=task
        )
        return merge_summaries(gather_objects(summary), here.rank)


def _segment_plan(scans, out, bundle, method, roi_mask, device, threads, fmt, pattern, spec, allow_modality_mismatch):
    """The segmenter, the scans, their priors and their mask paths: everything checked before the first scan."""
    from medwss.data.discovery import find_scan_items, match_priors
    from medwss.inference.segment import Segmenter, check_format, output_paths
    from medwss.runtime.device import configure_threads

    items = find_scan_items([Path(s) for s in scans], pattern, Path(spec) if spec else None)
    scan_paths = [scan for scan, _ in items]
    check_format(scan_paths, fmt)
    priors = match_priors(scan_paths, Path(roi_mask) if roi_mask else None)
    outs = output_paths(scan_paths, Path(out) if out else None, method, [folder for _, folder in items], fmt)
    segmenter = Segmenter(
        bundle or default_bundle(), method, allow_modality_mismatch=allow_modality_mismatch, device=device
    )
    configure_threads(segmenter.device, threads)
    return segmenter, scan_paths, priors, outs


def is_slice_spec(spec: str | Path | None) -> bool:
    """Whether a dataset spec describes a slice-folder set (``kind: slices``): segmented set by set, not by scan."""
    if spec is None:
        return False
    from medwss.data.datalist import DatasetSpec

    return getattr(DatasetSpec.load(spec), "kind", "volumes") == "slices"


def is_photo_bundle(bundle: str | Path) -> bool:
    """A photo bundle (``bundles/coco``, ``bundles/voc``, or its name): photos in, PNG label maps out; False for a
    bundle found nowhere, which is reported where the bundle is read (after the cheaper checks of the inputs)."""
    from medwss.errors import MedwssError
    from medwss.runtime.config import find_bundle
    from medwss.runtime.config import is_photo_bundle as photo

    try:
        return photo(find_bundle(bundle))
    except MedwssError:
        return False


def default_bundle() -> Path:
    """The prostate bundle, found by name (``medwss.runtime.config.bundle_search_path``).

    Raises:
        MedwssError: no ``prostate`` bundle where bundles are looked for.
    """
    from medwss.runtime.config import DEFAULT_BUNDLE, bundle_dir_of

    return bundle_dir_of(DEFAULT_BUNDLE)


def replay(
    scan: str | Path,
    slice_z: int,
    out: str | Path,
    *,
    bundle: str | Path | None = None,
    roi_mask: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> Path:
    """Draw the bundle's agent playing itself on one slice of a scan (PNG strip).

    Raises:
        MedwssError: bad scan, slice, mask or bundle.
    """
    from medwss.inference.replay import replay_slice
    from medwss.inference.segment import Segmenter

    out = Path(out)
    if out.suffix.lower() != ".png":
        from medwss.errors import MedwssError

        raise MedwssError(out, "a replay is written as a .png file")
    if not Path(scan).exists():
        from medwss.errors import MedwssError

        raise MedwssError(scan, "file not found")
    from medwss.runtime.device import configure_threads

    segmenter = Segmenter(bundle or default_bundle(), "rlsp", device=device)
    configure_threads(segmenter.device, threads)
    return replay_slice(segmenter, Path(scan), slice_z, out, Path(roi_mask) if roi_mask else None)
