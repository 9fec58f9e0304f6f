"""The README's two set-up commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    ") and line.strip().startswith(".venv/bin/")
            or line.startswith("    python3 -m venv")]


def test_readme_opens_with_install_and_test_commands() -> None:
    setup, test = _readme_commands()[:2]
    assert setup.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert "torch==2.13.0" in setup
    assert "pytest" in test


def test_ci_runs_the_readme_commands() -> None:
    setup, test = _readme_commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup in ci, "the README's set-up command must appear in .ci/run"
    assert test in ci, "the README's test command must appear in .ci/run"
