"""Sharded folder segmentation: shards cover each scan once, reruns skip, a bad scan never stops the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from medwss.errors import MedwssError
from medwss.inference.sharding import Shard, parse_shard, segment_batch, shard_from


@pytest.mark.parametrize("text,expected", [("0/1", Shard(0, 1)), ("2/4", Shard(2, 4)), (" 1 / 2 ", Shard(1, 2))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2", "0/0", ""])
def test_bad_shards_are_user_errors(text):
    with pytest.raises(MedwssError, match="--shard"):
        parse_shard(text)


def test_torchrun_rank_is_the_shard_when_none_is_given(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard_from(None) == Shard(1, 2) and shard_from("0/3") == Shard(0, 3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert shard_from(None) is None


def _fake_segment(calls):
    def segment(scan: Path, out: Path, prior, overlay) -> Path:
        calls.append(scan.name)
        if "bad" in scan.name:
            raise MedwssError(scan, "not a volume")
        if "bug" in scan.name:
            raise RuntimeError("reader exploded\nsecond line")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(scan.name)
        return out

    return segment


def test_shards_segment_each_scan_once_and_reruns_skip(tmp_path):
    scans = [tmp_path / f"s{i}.nii.gz" for i in range(7)]
    outs = [tmp_path / "out" / s.name for s in scans]
    calls: list[str] = []
    summaries = [segment_batch(_fake_segment(calls), scans, [None] * 7, outs, shard=Shard(i, 3)) for i in range(3)]
    assert sorted(calls) == sorted(s.name for s in scans) and len(calls) == 7
    assert sum(len(s.done) for s in summaries) == 7 and all(s.ok for s in summaries)
    again = segment_batch(_fake_segment(calls), scans, [None] * 7, outs)
    assert len(calls) == 7 and len(again.skipped) == 7 and "0 done, 7 skipped" in again.line()
    redo = segment_batch(_fake_segment(calls), scans, [None] * 7, outs, overwrite=True)
    assert len(redo.done) == 7


def test_a_bad_scan_is_one_summary_line_and_the_others_go_on(tmp_path):
    names = ["a.nii.gz", "bad.nii.gz", "bug.nii.gz", "z.nii.gz"]
    scans = [tmp_path / n for n in names]
    outs = [tmp_path / "out" / n for n in names]
    summary = segment_batch(_fake_segment([]), scans, [None] * 4, outs)
    assert [p.name for p in summary.done] == ["a.nii.gz", "z.nii.gz"] and not summary.ok
    problems = dict(summary.failed)
    assert problems[scans[1]].endswith("bad.nii.gz: not a volume")
    assert problems[scans[2]].endswith("RuntimeError: reader exploded") and "\n" not in problems[scans[2]]
    assert not outs[1].exists() and not outs[2].exists()
