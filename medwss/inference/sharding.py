"""Segment a large folder in parts: ``--shard i/n`` (cluster array jobs) or one part per torchrun rank.

Each scan belongs to exactly one shard (``scans[i::n]`` of the sorted scan list, the same list on every worker), so
n workers that never talk to each other still segment every scan once. Masks are written atomically (temp file +
rename), which makes a finished mask's presence the proof that it is done: a rerun skips it, so a killed job is
resumed by running it again. One bad scan never stops the others; its one-line error goes in the summary.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medwss.errors import MedwssError
from medwss.runtime.distributed import env_world
from medwss.runtime.progress import ProgressTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` equal parts of a scan list."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence) -> list:
        """This shard's items: every ``count``-th one from ``index`` (round-robin keeps the parts balanced)."""
        return list(items[self.index :: self.count])


def parse_shard(text: str) -> Shard:
    """``"i/n"`` -> ``Shard(i, n)``, 0 <= i < n (SLURM: ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``).

    Raises:
        MedwssError: not ``i/n`` with 0 <= i < n.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if match is None:
        raise MedwssError("--shard", f"expected i/n such as 0/4, got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise MedwssError("--shard", f"{text!r}: need 0 <= i < n")
    return Shard(index, count)


def shard_from(text: str | None) -> Shard | None:
    """The shard this worker segments: ``--shard`` when given, else torchrun's rank/world size, else None (all)."""
    if text is not None:
        return parse_shard(text)
    here = env_world()
    return Shard(here.rank, here.size) if here.size > 1 else None


@dataclass
class BatchSummary:
    """What a folder run did: masks written, masks already there (skipped), and scans that failed with why."""

    shard: Shard = field(default_factory=Shard)
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    quiet: bool = False
    """True on torchrun ranks other than 0: rank 0 prints the merged summary of every rank."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        """``shard 0/2: 3 done, 1 skipped (already there), 0 failed`` (``all N shards: ...`` when merged)."""
        where = f"shard {self.shard}" if self.shard.index >= 0 else f"all {self.shard.count} shards"
        return (
            f"{where}: {len(self.done)} done, {len(self.skipped)} skipped (already there), "
            f"{len(self.failed)} failed"
        )


SegmentOne = Callable[[Path, Path, Path | None, Path | None], Path]
"""``(scan, mask out, prior or None, overlay out or None) -> mask written``: ``Segmenter.segment``."""


def overlay_path(mask: Path) -> Path:
    """``<mask>_overlay.png`` beside a mask."""
    return mask.with_name(mask.name.split(".nii")[0] + "_overlay.png")


def segment_batch(
    segment_one: SegmentOne,
    scans: Sequence[Path],
    priors: Sequence[Path | None],
    outs: Sequence[Path],
    *,
    shard: Shard | None = None,
    overlay: bool = False,
    overwrite: bool = False,
    task: ProgressTask | None = None,
) -> BatchSummary:
    """Segment this shard's scans, skipping masks already written (unless ``overwrite``); never stop on a bad scan.

    A ``MedwssError`` (unreadable scan, bad prior, ...) is that scan's one-line error in the summary; any other
    exception is also recorded in one line, its traceback logged (``--verbose``), and the run goes on.
    """
    shard = shard or Shard()
    task = task or ProgressTask()
    rows = shard.select(list(zip(scans, priors, outs, strict=True)))
    summary = BatchSummary(shard=shard)
    task.set_total(len(rows))
    for scan, prior, target in rows:
        png = overlay_path(target) if overlay else None
        if not overwrite and target.is_file() and (png is None or png.is_file()):
            summary.skipped.append(target)
            task.advance(1)
            continue
        task.describe(f"segmenting {scan.name}")
        try:
            summary.done.append(segment_one(scan, target, prior, png))
        except MedwssError as err:
            summary.failed.append((scan, str(err)))
        except Exception as err:  # noqa: BLE001 - one bad scan must not stop a 10,000-scan job; logged below
            logger.info("segmenting %s failed", scan, exc_info=True)
            first_line = str(err).splitlines()[0] if str(err) else ""
            summary.failed.append((scan, f"{scan}: {type(err).__name__}: {first_line}"))
        task.advance(1)
    return summary


def merge_summaries(summaries: Sequence[BatchSummary], rank: int) -> BatchSummary:
    """Every rank's summary as one (torchrun): rank 0 prints it, the others stay quiet; all share its outcome."""
    merged = BatchSummary(shard=Shard(-1, len(summaries)), quiet=rank != 0)
    for part in summaries:
        merged.done += part.done
        merged.skipped += part.skipped
        merged.failed += part.failed
    return merged
