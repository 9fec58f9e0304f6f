"""CLI test helpers: run ``medwss`` in-process and check the one-line user error contract."""

from __future__ import annotations

from typer.testing import CliRunner

from medwss.cli import app

runner = CliRunner()


def invoke(*args: object):
    """Run ``medwss args``; typer's runner keeps stdout and stderr apart (``result.stdout``, ``result.stderr``)."""
    return runner.invoke(app, [str(a) for a in args])


def assert_one_error_line(result, path: object, problem: str) -> None:
    """Exit 2, nothing on stdout, exactly ``error: <path>: <problem...>`` on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: {problem}"), lines[0]
    assert result.stdout == ""
    assert "Traceback" not in result.output
