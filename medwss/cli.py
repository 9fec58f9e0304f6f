"""The ``medwss`` command: parse, call ``medwss.api``, print. Nothing else lives here.

User errors (``MedwssError``) print one line, ``error: <file>: <problem>``, on stderr and exit with code 2; any other
exception is a bug and keeps its traceback. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from medwss import __version__
from medwss.errors import MedwssError

app = typer.Typer(
    name="medwss",
    help="Weakly-supervised segmentation from image-level labels by self-play (RLSP), on MONAI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
labels_app = typer.Typer(help="Derive and inspect slice-level (weak) presence labels.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")

F = TypeVar("F", bound=Callable[..., Any])

NoProgress = Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar (it goes to stderr).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does (stderr).")]
Device = Annotated[
    str | None,
    typer.Option(metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: the bundle's device; auto: GPU if any)."),
]
BUNDLE_HELP = (
    "Bundle folder, or a name (prostate, liver_tumour, coco, voc) looked up in $MEDWSS_BUNDLES, ./bundles and the "
    "medwss checkout (default: prostate)."
)
Threads = Annotated[
    int, typer.Option(min=1, help="Torch threads for a CPU run (1 is fastest on a busy machine; GPUs ignore it).")
]


def user_errors(func: F) -> F:
    """Turn a ``MedwssError`` into ``error: <file>: <problem>`` and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MedwssError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging(verbose: bool) -> None:
    from medwss.runtime.quiet import set_verbose

    set_verbose(verbose)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medwss {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Weakly-supervised segmentation from image-level labels by self-play (RLSP), on MONAI."""


@app.command()
@user_errors
def check(
    path: Annotated[
        Path, typer.Argument(help="Data set folder (MSD layout or with --spec), manifest, DICOM folder or volume.")
    ],
    spec: Annotated[
        Path | None, typer.Option(help="Dataset spec (YAML/JSON) for folders without dataset.json.")
    ] = None,
    no_progress: NoProgress = False,
    verbose: Verbose = False,
) -> None:
    """Read every image, label, organ prior and manifest row; report each problem in one line (exit 2 if any)."""
    from medwss import api
    from medwss.runtime.progress import progress_task

    _setup_logging(verbose)
    with progress_task(f"checking {path}", enabled=not no_progress) as task:
        report = api.check_dataset(path, spec, task)
    for problem in report.problems or []:
        typer.echo(f"error: {problem}", err=True)
    if report.ok:
        typer.echo(f"ok: {report.target}: {report.summary}")
        return
    if report.kind == "volume":  # one file, its one error line says it all
        raise typer.Exit(2)
    typer.echo(f"{len(report.problems)} problem(s) in {report.target} ({report.items} {report.kind} items read)")
    raise typer.Exit(2)


@app.command()
@user_errors
def train(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (bundles/prostate) or name (prostate).")],
    stage: Annotated[
        str | None, typer.Option(help="Run only this stage (detector, selfplay; refine: optional, after selfplay).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config entry by its MONAI id: --set seed=3.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for everything (same as --set seed=N).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Where checkpoints and logs go (default runs/<bundle>).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Start over instead of resuming.")] = False,
    device: Device = None,
    no_progress: NoProgress = False,
    verbose: Verbose = False,
) -> None:
    """Train a bundle's stages in order (detector, then self-play), resuming each from its last checkpoint.

    Under torchrun (torchrun --nproc_per_node N -m medwss train BUNDLE) the stages train data-parallel over the
    processes; rank 0 writes checkpoints, metrics, progress and the exported models (docs/distributed.md).
    """
    from medwss import api
    from medwss.runtime.config import parse_overrides

    _setup_logging(verbose)
    overrides = parse_overrides(set_ or [])
    if seed is not None:
        overrides["seed"] = seed
    from medwss.runtime.interrupt import TrainingInterrupted

    if device is not None:
        overrides["device"] = device
    command = "medwss " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("medwss", "__main__.py")) else ""
    try:
        notes = api.train_bundle(
            bundle,
            stage,
            overrides=overrides,
            run_dir=run_dir,
            restart=restart,
            progress=not no_progress,
            command=command,
        )
    except TrainingInterrupted as stopped:
        typer.echo(f"interrupted: {stopped}", err=True)
        raise typer.Exit(130) from None
    for note in notes:
        metrics = ", ".join(f"{k} {v}" for k, v in note.get("metrics", {}).items())
        typer.echo(f"{note['stage']}: exported to {bundle}/models ({metrics})")


class Method(str, Enum):
    """Segmentation methods over the bundle's detector."""

    rlsp = "rlsp"
    cam = "cam"
    single_agent = "single-agent"


class OutputFormat(str, Enum):
    """Mask file formats of ``medwss segment``."""

    nifti = "nifti"
    dicom_seg = "dicom-seg"
    both = "both"


@app.command()
@user_errors
def segment(
    scans: Annotated[list[Path], typer.Argument(help="Scan files, folders of scans, or DICOM series folders.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Mask file (one scan) or folder.")] = None,
    bundle: Annotated[Path | None, typer.Option(help=BUNDLE_HELP)] = None,
    method: Annotated[
        Method, typer.Option(help="rlsp (the self-play agent), cam (Grad-CAM++) or single-agent.")
    ] = Method.rlsp,
    roi_mask: Annotated[
        Path | None, typer.Option(help="Organ prior mask (a file, or a folder of masks named like the scans).")
    ] = None,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write <mask>_overlay.png.")] = False,
    pattern: Annotated[
        str | None, typer.Option(metavar="GLOB", help="Which files of a folder are scans, e.g. '*/t2.nii.gz'.")
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            help="Dataset spec: its image pattern says which files of a folder are scans; a slice-folder spec "
            "(kind: slices) makes SCANS a slice set and -o a folder of PNG masks."
        ),
    ] = None,
    allow_modality_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-modality-mismatch", help="Segment a scan that looks like another modality than the bundle's."
        ),
    ] = False,
    format_: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="nifti, dicom-seg (a DICOM SEG <mask>.seg.dcm referencing a DICOM series input) or both.",
        ),
    ] = OutputFormat.nifti,
    shard: Annotated[
        str | None,
        typer.Option(metavar="I/N", help="Segment only part I (0-based) of N of the scans, e.g. a cluster array job."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Folders: segment again scans whose mask is already there.")
    ] = False,
    device: Device = None,
    threads: Threads = 1,
    no_progress: NoProgress = False,
    verbose: Verbose = False,
) -> None:
    """Segment scans with a bundle; masks are NIfTI on exactly each scan's grid.

    In a folder, label maps are skipped and per-patient sub-folders are searched; masks keep those sub-folders.
    A slice-folder set (--spec with kind: slices) gets one lossless PNG mask per slice.
    Folders (several scans), --shard I/N and torchrun runs go on past a bad scan, skip masks already written (so a
    rerun resumes a killed job) and end with a done / skipped / failed summary; exit 2 if any scan failed.
    Progress (stderr) goes scan by scan and, in a long volume, batch of slices by batch (a few lines a stage in a log).
    """
    from medwss import api
    from medwss.runtime.distributed import env_world
    from medwss.runtime.progress import progress_task

    _setup_logging(verbose)
    single = (bundle is not None and api.is_photo_bundle(bundle)) or api.is_slice_spec(spec)
    if not single and shard is None and env_world().size <= 1:
        from medwss.data.discovery import find_scan_items

        # A folder of many scans is a batch (goes on past a bad scan); one scan, or a DICOM series folder, is not.
        single = len(find_scan_items(scans, pattern, spec)) <= 1
    if single:
        with progress_task("segmenting", enabled=not no_progress, lines=True) as task:
            written = api.segment(
                scans, out, bundle=bundle, method=method.value, roi_mask=roi_mask, overlay=overlay, task=task,
                pattern=pattern, fmt=format_.value, spec=spec, allow_modality_mismatch=allow_modality_mismatch,
                device=device, threads=threads,
            )  # fmt: skip
        for path in written:
            typer.echo(f"wrote {path}")
        return
    with progress_task("segmenting", enabled=not no_progress, lines=True) as task:
        summary = api.segment_batch(
            scans, out, bundle=bundle, method=method.value, roi_mask=roi_mask, overlay=overlay, shard=shard,
            overwrite=overwrite, task=task, device=device, threads=threads, fmt=format_.value, pattern=pattern,
            spec=spec, allow_modality_mismatch=allow_modality_mismatch,
        )  # fmt: skip
    if not summary.quiet:
        for path in summary.done:
            typer.echo(f"wrote {path}")
        for _, problem in summary.failed:
            typer.echo(f"error: {problem}", err=True)
        typer.echo(summary.line())
    if not summary.ok:
        raise typer.Exit(2)


@app.command()
@user_errors
def replay(
    scan: Annotated[Path, typer.Argument(help="Scan file or DICOM series folder.")],
    slice_z: Annotated[int, typer.Option("--slice", help="Slice index z of the scan as loaded.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("replay.png"),
    bundle: Annotated[Path | None, typer.Option(help=BUNDLE_HELP)] = None,
    roi_mask: Annotated[Path | None, typer.Option(help="Organ prior mask, for bundles that need one.")] = None,
    device: Device = None,
    threads: Threads = 1,
    verbose: Verbose = False,
) -> None:
    """Draw one self-play game of the bundle's agent on one slice: picks in order, termination, final patches."""
    from medwss import api

    _setup_logging(verbose)
    written = api.replay(scan, slice_z, out, bundle=bundle, roi_mask=roi_mask, device=device, threads=threads)
    typer.echo(f"wrote {written}")


@labels_app.command("from-masks")
@user_errors
def labels_from_masks(
    root: Annotated[Path, typer.Argument(help="Data set folder (MSD layout, or any layout with --spec).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Manifest to write: .csv (one row per slice and class) or .json.")
    ],
    spec: Annotated[
        Path | None, typer.Option(help="Dataset spec naming images, class label rules and organ prior.")
    ] = None,
    no_progress: NoProgress = False,
    verbose: Verbose = False,
) -> None:
    """Derive slice-level presence labels (ROI present / absent per slice) from a data set's masks."""
    from medwss import api
    from medwss.runtime.progress import progress_task

    _setup_logging(verbose)
    with progress_task(f"reading masks under {root}", enabled=not no_progress) as task:
        manifest = api.labels_from_masks(root, out, spec, task)
    counts = ", ".join(f"{n}: {p} present / {a} absent" for n, (p, a) in manifest.counts().items())
    typer.echo(f"wrote {out}: {len(manifest.images)} images, {len(manifest.patients())} patients; {counts}")


@app.command("eval")
@user_errors
def eval_(
    pred: Annotated[Path, typer.Argument(help="Predicted mask file, or folder of masks named by case id.")],
    gt: Annotated[Path, typer.Argument(help="Ground-truth label map, or folder of them (see --gt-pattern).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for cases.csv and summary.json (default: eval/ in PRED, or beside a PRED file)."
        ),
    ] = None,
    gt_pattern: Annotated[
        str | None,
        typer.Option(metavar="PATTERN", help="Ground truth of each case under GT, e.g. '{case}/gland_reader1.nii.gz'."),
    ] = None,
    gt_rule: Annotated[
        str | None,
        typer.Option(metavar="RULE", help="Voxel test for the ground-truth mask: '> 0' (default), '== 2', 'in 1,2'."),
    ] = None,
    pred_rule: Annotated[
        str | None,
        typer.Option(metavar="RULE", help="Voxel test for the predicted mask of every class (default '> 0')."),
    ] = None,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            metavar="NAME=RULE",
            help="One scored class per option, its rule applied to ground truth and prediction (instead of 'roi').",
        ),
    ] = None,
    class_set: Annotated[
        str | None, typer.Option(metavar="SET", help="PNG label maps: name classes as 'voc' or 'coco' (background 0).")
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(help="Slice-folder spec (kind: slices): GT is the slice set, PRED what `segment` wrote for it."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            metavar="HTML", help="Also write one self-contained HTML page: summary, cases by Dice with overlays, plot."
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(help="Scans under the report's overlays: a scan (one case) or a folder named by case id."),
    ] = None,
    bundle: Annotated[
        str | None, typer.Option(help="Bundle (and method) that made the predictions, stated in the report.")
    ] = None,
    no_progress: NoProgress = False,
    verbose: Verbose = False,
) -> None:
    """Dice, IoU, HD95 and mean surface distance (mm) per case and class; mDSC and mIoU over cases.

    A slice-folder set (--spec) is scored per patient over its stacked slices; without spacing, HD95 and MSD are in
    pixels.

    PNG label maps (VOC/COCO photos) are scored the VOC way instead: one confusion matrix, 255 ignored, mIoU.
    """
    from medwss import api
    from medwss.metrics.semantic_eval import is_label_png_input
    from medwss.runtime.progress import progress_task

    _setup_logging(verbose)
    if spec is None and is_label_png_input(pred, gt):
        if report is not None:
            typer.echo(f"error: {report}: --report is for volume masks, not PNG label maps", err=True)
            raise typer.Exit(2)
        with progress_task(f"evaluating {pred}", enabled=not no_progress) as task:
            semantic = api.evaluate_semantic(pred, gt, out, class_set=class_set, task=task)
        _print_semantic(semantic)
        return
    with progress_task(f"evaluating {pred}", enabled=not no_progress) as task:
        result = api.evaluate(
            pred,
            gt,
            out,
            gt_pattern=gt_pattern,
            gt_rule=gt_rule,
            pred_rule=pred_rule,
            classes=classes,
            spec=spec,
            report_html=report,
            images=images,
            bundle=bundle,
            command=_command_line(),
            task=task,
        )
    for path in result.matching.unmatched_predictions:
        typer.echo(f"warning: {path}: no ground truth with this case id; not scored", err=True)
    for path in result.matching.unmatched_ground_truths:
        typer.echo(f"warning: {path}: no prediction for this case; not scored", err=True)
    _print_eval(result)


def _command_line() -> str:
    """The command as typed (``medwss ...``), for reports; the arguments alone when not run as ``medwss``."""
    import shlex

    return "medwss " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("medwss") else ""


def _print_semantic(report: Any) -> None:
    """Per-class IoU of the scored classes, then mIoU and mean Dice, on stdout."""
    for path in report.unmatched_predictions:
        typer.echo(f"warning: {path}: no ground truth with this name; not scored", err=True)
    for path in report.unmatched_ground_truths:
        typer.echo(f"warning: {path}: no prediction for this image; not scored", err=True)
    for label, (name, iou) in enumerate(zip(report.class_names, report.iou, strict=True)):
        if iou == iou:  # NaN: class absent from prediction and ground truth, not scored
            typer.echo(f"{label:>3} {name}: IoU {iou:.3f}")
    n = len(report.rows)
    images = f"{n} image{'s' if n != 1 else ''}"
    typer.echo(f"mIoU {report.miou:.3f}, mean Dice {report.mdice:.3f} over {images} (VOC rules)")
    typer.echo(f"wrote {report.summary_json}, {report.classes_csv} and {report.cases_csv}")


def _print_eval(report: Any) -> None:
    """The per-case table, then one summary line per class, on stdout."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def fmt(value: float, digits: int = 3) -> str:
        return "n/a" if value != value else f"{value:.{digits}f}"  # NaN: one mask empty, no surface distance

    unit = getattr(report, "units", "mm")
    table = Table("case", "class", "Dice", "IoU", f"HD95 ({unit})", f"MSD ({unit})")
    for row in report.rows:
        table.add_row(
            escape(row["case"]),
            escape(row["class"]),
            fmt(row["dice"]),
            fmt(row["iou"]),
            fmt(row["hd95"], 2),
            fmt(row["msd"], 2),
        )
    Console(highlight=False).print(table)
    n = report.num_cases
    for name, stats in report.summary.items():
        hd, msd = stats["hd95"], stats["msd"]
        typer.echo(
            f"{name}: mean Dice (mDSC) {fmt(stats['dice']['mean'])}, mIoU {fmt(stats['iou']['mean'])} over {n} "
            f"case{'s' if n != 1 else ''}; HD95 {fmt(hd['mean'], 2)} {unit}, MSD {fmt(msd['mean'], 2)} {unit} "
            f"(mean over {hd['count']} of {n})" + ("; no spacing: distances in pixels" if unit == "px" else "")
        )
    typer.echo(f"wrote {report.cases_csv} and {report.summary_json}")
    if report.report_html is not None:
        typer.echo(f"wrote {report.report_html}")


def hide_ignite() -> None:
    """Mark pytorch-ignite as absent for this process, before MONAI is imported.

    Why: MONAI imports ignite eagerly whenever it is installed (for ``monai.engines``), and with it
    ``torch.distributed``: 1.5-4 s of every command's start on 2 cores (measured: ``import monai`` 4.6 s instead of
    8.5 s under load). No medwss command uses MONAI's engines; ignite stays installed for the bundles'
    ``SupervisedEvaluator`` under ``python -m monai.bundle run`` and for MONAI Label, which are other processes.
    """
    sys.modules.setdefault("ignite", None)  # type: ignore[assignment]  # None makes `import ignite` fail fast


def run() -> None:
    """The ``medwss`` console script: the typer app in a process without ignite (`hide_ignite`)."""
    hide_ignite()
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
