"""Progress inside a step (a long volume's slices): a few plain lines per stage in a log, a second bar on a terminal,
nothing when progress is off."""

from __future__ import annotations

import io

import pytest

from medwss.runtime import progress as progress_module
from medwss.runtime.progress import PlainLines, progress_task


def _lines(plain: PlainLines) -> list[str]:
    return plain.stream.getvalue().splitlines()


def test_plain_detail_lines_say_scan_and_stage_and_stay_few():
    plain = PlainLines("segmenting a.nii.gz: scan", None, stream=io.StringIO())
    plain.set_total(2)
    for done in range(8, 1001, 8):  # 125 batches of 8 slices
        plain.detail("scoring slices", min(done, 1000), 1000)
    lines = _lines(plain)
    assert lines[0].startswith("segmenting a.nii.gz: scan 1 of 2, scoring slices 8 of 1000, 0:00:0")
    assert lines[-1].startswith("segmenting a.nii.gz: scan 1 of 2, scoring slices 1000 of 1000, ")
    assert len(lines) == 11  # the first batch, then one a tenth: not one per batch
    plain.detail("playing slices", 256, 1000)  # a new stage is shown at once
    plain.advance(1)
    plain.detail("scoring slices", 64, 1000)  # the next scan's first stage too
    assert [line.split(", ")[:2] for line in _lines(plain)[-3:]] == [
        ["segmenting a.nii.gz: scan 1 of 2", "playing slices 256 of 1000"],
        ["segmenting a.nii.gz: scan 1 of 2", "0:00:00 elapsed"],
        ["segmenting a.nii.gz: scan 2 of 2", "scoring slices 64 of 1000"],
    ]


def test_slow_batches_get_a_line_each(monkeypatch):
    monkeypatch.setattr(progress_module, "DETAIL_SECONDS", 0.0)  # every batch slower than the limit
    plain = PlainLines("segmenting", 1, stream=io.StringIO())
    for done in (1, 2, 3):
        plain.detail("playing slices", done, 1000)
    assert [line.split(", ")[1] for line in _lines(plain)] == [f"playing slices {n} of 1000" for n in (1, 2, 3)]


def test_detail_is_silent_when_progress_is_off(capsys):
    with progress_task("segmenting", enabled=False, lines=True) as task:
        task.set_total(1)
        task.detail("scoring slices", 64, 600)
        task.advance(1)
    assert capsys.readouterr().err == ""


def test_detail_on_a_terminal_is_a_second_bar(monkeypatch):
    from rich.console import Console
    from rich.progress import Progress

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    seen = []
    update = Progress.update

    def record(self, task_id, **fields):
        seen.append((int(task_id), fields.get("description"), fields.get("completed"), fields.get("visible")))
        update(self, task_id, **fields)

    monkeypatch.setattr(Progress, "update", record)
    with progress_task("segmenting", lines=True) as task:
        task.set_total(2)
        task.describe("segmenting a.nii.gz: scan")
        task.detail("scoring slices", 64, 600)  # adds the second bar
        task.detail("scoring slices", 128, 600)
        task.detail("playing slices", 256, 600)  # the same bar, restarted for the stage
        task.advance(1)  # hides it until the next scan's first stage
    assert (1, None, 128, True) in seen
    assert seen[-1] == (1, None, None, False)


@pytest.mark.parametrize("total", [0, 1])
def test_an_empty_or_one_slice_stage_gets_one_line(total):
    plain = PlainLines("segmenting", 1, stream=io.StringIO())
    plain.detail("scoring slices", total, total)
    assert _lines(plain) == [f"segmenting: 1 of 1, scoring slices {total} of {total}, 0:00:00 elapsed"]
