"""Dependencies inside ``medwss`` point one way (docs/design.md, "Package graph").

Every ``from medwss.X ...`` / ``import medwss.X`` is read from the source, at module top and inside functions alike
(a lazy import still couples the packages), and checked against the layers below: a package may import its own
layer or lower ones, never a higher one, and no two packages import each other (directly or round a loop).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medwss

ROOT = Path(medwss.__file__).resolve().parent

LAYERS: dict[str, int] = {
    # base: errors and the package's version; runtime (files, checkpoints, progress, devices, bundle configs)
    "errors": 0, "": 0, "runtime": 1,
    # what the method is made of, knowing nothing of how it is trained or run
    "game": 2, "data": 2, "metrics": 3,
    "agents": 4, "detector": 4, "refinement": 4, "viz": 4,
    # running a trained bundle; self-play training of the agents
    "inference": 5, "selfplay": 5,
    # the only orchestrator: stages, training, export
    "bundle": 6,
    "api": 7, "cli": 8, "__main__": 9,
}  # fmt: skip


def package_of(module: str) -> str:
    """``medwss.detector.cam`` -> ``detector``; ``medwss`` itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported medwss module, line) for every import statement in a file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("medwss"):
            if node.module == "medwss":  # from medwss import detector  ->  the named subpackages
                found += [(f"medwss.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("medwss")]
    return found


def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> where, for every import across packages."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        source = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        source = "" if source == "__init__" else source
        for module, line in imports_of(path):
            target = package_of(module)
            target = "" if target == "__version__" else target
            if target != source:
                edges.setdefault((source, target), []).append(f"{rel}:{line}")
    return edges


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LAYERS), f"add {sorted(packages | modules - set(LAYERS))} to LAYERS"


def test_no_package_imports_a_higher_one() -> None:
    upward = [
        f"{a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]}) at {', '.join(where)}"
        for (a, b), where in package_edges().items()
        if LAYERS[b] > LAYERS[a]
    ]
    assert not upward, "\n".join(upward)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for a, b in package_edges():
        graph.setdefault(a, set()).add(b)

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            found = cycle_from(nxt, [*path, nxt])
            if found:
                return found
        return None

    for start in sorted(graph):
        loop = cycle_from(start, [start])
        assert loop is None, " -> ".join(loop)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from medwss.bundle.stages import train_stage\n", [("medwss.bundle.stages", 1)]),
        ("def f():\n    import medwss.api as api\n", [("medwss.api", 2)]),
        ("from medwss import cli\nfrom . import x\n", [("medwss.cli", 1)]),
    ],
)
def test_imports_are_found_at_top_and_inside_functions(tmp_path: Path, source: str, expected: list) -> None:
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    assert imports_of(path) == expected
