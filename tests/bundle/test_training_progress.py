"""Training progress a person can read: plain per-epoch / per-iteration lines when stderr is a file, and a Ctrl-C
that says where it stopped and which checkpoint a rerun resumes from."""

from __future__ import annotations

import contextlib
import re

import pytest

from medwss import api
from medwss.runtime.interrupt import TrainingInterrupted
from medwss.runtime.progress import ProgressTask, progress_task
from tests.bundle.fixtures import tiny_bundle, tiny_overrides, write_tiny_prostate
from tests.bundle.test_selfplay_stage import SMALL
from tests.cli.helpers import invoke

DETECTOR_LINE = re.compile(
    r"^detector (\d) of 3: epoch (\d) of 2, loss \d+\.\d{3}, val AUC (?:\d\.\d{3}|n/a), \d+:\d\d:\d\d elapsed"
    r"(, about \d+:\d\d:\d\d left)?$"
)
SELFPLAY_LINE = re.compile(
    r"^self-play: iteration (\d) of 4, loss -?\d+\.\d{3}, win rate \d\.\d\d(, val Dice \d\.\d{3})?, "
    r"\d+:\d\d:\d\d elapsed(, about \d+:\d\d:\d\d left)?$"
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_prostate(tmp_path_factory.mktemp("tiny_prostate"))


def test_training_with_stderr_to_a_file_leaves_one_line_per_epoch_and_iteration(tmp_path, data_root):
    bundle = tiny_bundle(tmp_path)
    log = tmp_path / "train.log"
    with log.open("w") as stderr, contextlib.redirect_stderr(stderr):
        api.train_bundle(bundle, overrides={**tiny_overrides(data_root), **SMALL}, run_dir=tmp_path / "runs")
    lines = log.read_text().splitlines()
    detector = [DETECTOR_LINE.match(line) for line in lines if line.startswith("detector ")]
    assert all(detector), lines
    assert [(m[1], m[2]) for m in detector] == [(k, e) for k in "123" for e in "12"]  # every member, every epoch
    assert all(("left" in m[0]) == (m[2] == "1") for m in detector)  # time left until the member's last epoch
    selfplay = [SELFPLAY_LINE.match(line) for line in lines if line.startswith("self-play")]
    assert all(selfplay), lines
    assert [m[1] for m in selfplay] == ["1", "2", "3", "4"]
    assert selfplay[1][3] is not None  # eval_every 2: the validation Dice shows from iteration 2 on


def test_no_lines_when_progress_is_off(tmp_path, capsys):
    with progress_task("detector: epoch", enabled=False, lines=True) as task:
        task.set_total(3)
        task.advance(1)
    assert capsys.readouterr().err == ""
    assert task.where() == "detector: epoch 1 of 3"


def test_a_resumed_run_says_so_and_times_only_its_own_steps(capsys):
    with progress_task("self-play: iteration", lines=True) as task:
        task.set_total(10)
        task.skip(6)
        task.status("loss 0.100")
        task.advance(1)
    first, second = capsys.readouterr().err.splitlines()
    assert first == "self-play: iteration 6 of 10 already done (resumed)"
    assert second.startswith("self-play: iteration 7 of 10, loss 0.100, 0:00:00 elapsed, about 0:00:00 left")


def test_ctrl_c_says_where_it_stopped_and_what_a_rerun_resumes_from(tmp_path, data_root, monkeypatch):
    bundle = tiny_bundle(tmp_path)
    calls = {"n": 0}

    def interrupt_on_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C during the first epoch of the second member, after its checkpoint
        return None

    monkeypatch.setattr("medwss.viz.curves.plot_progress", interrupt_on_third_epoch)
    runs = tmp_path / "runs"
    with pytest.raises(TrainingInterrupted) as stopped:
        api.train_bundle(bundle, "detector", overrides=tiny_overrides(data_root), run_dir=runs, progress=False)
    member = runs / "detector" / "member1"
    assert str(stopped.value) == (
        "detector stage stopped at detector 2 of 3: epoch 1 of 2; rerun the same command to resume from "
        f"{member / 'checkpoint_latest.pt'}"
    )


def test_cli_prints_the_interruption_in_one_line_with_exit_130(tmp_path, monkeypatch):
    def stopped(*args, **kwargs):
        raise TrainingInterrupted("detector stage stopped at detector: epoch 3 of 9; rerun ... from x.pt")

    monkeypatch.setattr("medwss.api.train_bundle", stopped)
    result = invoke("train", tmp_path)
    assert result.exit_code == 130
    assert result.stderr == "interrupted: detector stage stopped at detector: epoch 3 of 9; rerun ... from x.pt\n"
    assert result.stdout == ""


def test_where_reads_like_a_sentence():
    task = ProgressTask(description="checking data", completed=4, total=10)
    assert task.where() == "checking data: 4 of 10"
