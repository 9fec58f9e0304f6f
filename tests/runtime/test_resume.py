"""Resume: a SIGKILLed stage resumes to bit-identical weights; a checkpoint of another run is refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from medwss.bundle.stages import train_stage
from medwss.errors import MedwssError
from medwss.runtime.checkpoint import FINAL, LATEST, load_checkpoint, save_checkpoint
from tests.bundle.fixtures import REPO, tiny_bundle, tiny_overrides, write_tiny_prostate

SMALL = {
    "detector#network_def#members": 1,
    "detector#training#epochs": 3,
    "selfplay#training#num_iterations": 4,
    "selfplay#training#games_per_iteration": 8,
    "selfplay#ppo#minibatch_size": 32,
    "selfplay#ppo#update_epochs": 1,
    "selfplay#pool#snapshot_every": 1,
    "selfplay#training#checkpoint_every": 1,
    "selfplay#training#eval_every": 2,
    "selfplay#training#termination_warmup": 1,
    "selfplay#training#warmup_turns": 4,
    "selfplay#policy#channels": 8,
}
MODELS = {"detector": "detector.pt", "selfplay": "model.pt"}

# The child trains one stage and kills itself (SIGKILL: no cleanup, no finally) right after its K-th checkpoint.
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch
    torch.set_num_threads(int(sys.argv[6]))  # as the parent's: another thread count may round differently
    import medwss.runtime.checkpoint as ckpt
    import medwss.selfplay.loop as loop
    from medwss.bundle.stages import train_stage

    bundle, stage, run_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    overrides, kill_after = json.loads(sys.argv[4]), int(sys.argv[5])
    real, saves = ckpt.save_checkpoint, []

    def save_then_die(state, path):
        out = real(state, path)
        if os.path.basename(str(path)).startswith("checkpoint_"):
            saves.append(path)
            if len(saves) == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return out

    ckpt.save_checkpoint = save_then_die
    loop.save_checkpoint = save_then_die
    train_stage(bundle, stage, overrides=overrides, run_dir=run_dir)
    """
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_prostate(tmp_path_factory.mktemp("tiny_prostate_resume"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """An uninterrupted run of both stages: the reference weights (one thread throughout, as the self-play stage
    sets it: another thread count may round differently)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("reference")
    bundle = tiny_bundle(root)
    overrides = {**tiny_overrides(data_root), **SMALL}
    for stage in ("detector", "selfplay"):
        train_stage(bundle, stage, overrides=overrides, run_dir=root / "runs")
    return bundle, overrides


def _state(bundle: Path, stage: str) -> dict:
    return torch.load(bundle / "models" / MODELS[stage], weights_only=True)


@pytest.mark.parametrize("stage", ["detector", "selfplay"])
def test_sigkilled_stage_resumes_to_bit_identical_weights(tmp_path, trained, stage):
    reference, overrides = trained
    bundle = tiny_bundle(tmp_path)
    run_dir = tmp_path / "runs"
    if stage == "selfplay":  # the self-play stage starts from the same trained detector
        shutil.copytree(reference / "models", bundle / "models")
        (bundle / "models" / "model.pt").unlink()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, bundle, stage, run_dir, json.dumps(overrides), "2", str(torch.get_num_threads())],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert (run_dir / stage / LATEST).is_file() and not (run_dir / stage / FINAL).exists()
    assert not (bundle / "models" / MODELS[stage]).exists()
    train_stage(bundle, stage, overrides=overrides, run_dir=run_dir)  # a plain rerun resumes
    a, b = _state(reference, stage), _state(bundle, stage)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _detector_run(tmp_path: Path, data_root: Path, **extra) -> tuple[Path, Path, dict]:
    bundle = tiny_bundle(tmp_path)
    overrides = {**tiny_overrides(data_root), **SMALL, "detector#training#epochs": 1, **extra}
    run_dir = tmp_path / "runs"
    train_stage(bundle, "detector", overrides=overrides, run_dir=run_dir)
    return bundle, run_dir, overrides


def test_resume_with_other_data_settings_or_seed_is_refused(tmp_path, data_root):
    bundle, run_dir, overrides = _detector_run(tmp_path, data_root)
    final = run_dir / "detector" / FINAL
    # A copied bundle sharing the run folder, trained on changed data: its data fingerprint differs.
    other_data = write_tiny_prostate(tmp_path / "other", patients=5)
    cases = [
        ({**overrides, **tiny_overrides(other_data), "detector#training#epochs": 1}, "other data"),
        ({**overrides, "detector#training#learning_rate": 0.5}, "other settings (learning_rate)"),
        ({**overrides, "seed": 7}, "seed 0, not 7"),
    ]
    for changed, words in cases:
        with pytest.raises(MedwssError, match=r"pass --restart") as err:
            train_stage(tiny_bundle(tmp_path / "copy"), "detector", overrides=changed, run_dir=run_dir)
        assert str(err.value).startswith(f"{final}: ") and words in err.value.problem
        assert "\n" not in str(err.value)
        shutil.rmtree(tmp_path / "copy")


def test_restart_removes_superseded_checkpoints_before_training(tmp_path, data_root, monkeypatch):
    bundle, run_dir, overrides = _detector_run(tmp_path, data_root)
    final = run_dir / "detector" / FINAL
    assert final.is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C before the restarted run's first checkpoint

    monkeypatch.setattr("medwss.bundle.stages.fit_detector", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_stage(bundle, "detector", overrides=overrides, run_dir=run_dir, restart=True)
    assert not final.exists() and not (run_dir / "detector" / LATEST).exists()


def test_corrupt_and_unsafe_checkpoints_are_one_line(tmp_path, data_root):
    bundle, run_dir, overrides = _detector_run(tmp_path, data_root)
    final = run_dir / "detector" / FINAL
    final.write_bytes(final.read_bytes()[:200])  # truncated
    with pytest.raises(MedwssError, match="corrupt or unsafe checkpoint") as err:
        train_stage(bundle, "detector", overrides=overrides, run_dir=run_dir)
    assert "\n" not in str(err.value) and "--restart" in err.value.problem

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"trainer": Exploit()}, final)
    with pytest.raises(MedwssError, match="corrupt or unsafe checkpoint"):
        train_stage(bundle, "detector", overrides=overrides, run_dir=run_dir)
    assert not (tmp_path / "pwned").exists()


def test_numpy_rng_states_round_trip_through_safe_loading(tmp_path):
    import numpy as np

    np.random.seed(3)
    state = {"numpy": np.random.get_state(), "gen": np.random.default_rng(5).bit_generator.state, "x": np.float64(2)}
    save_checkpoint(state, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    np.random.set_state(back["numpy"])
    assert np.random.random() == (np.random.seed(3), np.random.random())[1]
    assert back["gen"] == state["gen"] and back["x"] == 2.0 and type(back["x"]) is float
