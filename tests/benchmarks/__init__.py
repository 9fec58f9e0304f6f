"""Tests of the scripts under ``benchmarks/``, which are files, not an installed package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(file_name: str) -> ModuleType:
    """Import ``benchmarks/<file_name>`` as a module. The folder goes on ``sys.path`` (once): the scripts import
    their siblings (``game_speed``, ``cohort``, ``stop_study``), some only inside functions."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"{Path(file_name).stem}_benchmark", BENCHMARKS / file_name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
