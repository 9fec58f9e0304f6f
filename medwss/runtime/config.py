"""MONAI bundle configs for medwss: layered stage configs, ``#``-id overrides, and the bundle's stage list.

A bundle's ``configs/`` holds ``common.yaml`` (data, preset, classes, seed: what every stage shares), one
``train_<stage>.yaml`` per training stage layered on top of it, and ``inference.yaml`` for ``segment`` and MONAI
Label. Configs are read with MONAI's ``ConfigParser``, so ``_target_`` components, ``@`` references and
``--set a#b=value`` overrides work as in ``python -m monai.bundle run``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medwss.errors import MedwssError

COMMON = "common.yaml"
DEFAULT_STAGES = ("detector", "selfplay")


BUNDLES_ENV = "MEDWSS_BUNDLES"
"""Environment variable: folders (``os.pathsep``-separated) that hold bundles, looked in first for a bundle name."""
DEFAULT_BUNDLE = "prostate"
"""The bundle ``segment`` and ``replay`` use when none is given."""
CHECKOUT_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
"""The shipped bundles of a source checkout (an installed wheel has none: see ``bundle_search_path``)."""


def bundle_search_path() -> list[Path]:
    """Where a bundle given by name (``prostate``) is looked for, in order: each folder of ``$MEDWSS_BUNDLES``, the
    current folder's ``bundles/``, and the checkout's ``bundles/`` when medwss runs from one."""
    folders = [Path(f) for f in os.environ.get(BUNDLES_ENV, "").split(os.pathsep) if f]
    folders.append(Path.cwd() / "bundles")
    if CHECKOUT_BUNDLES.is_dir() and CHECKOUT_BUNDLES.resolve() != folders[-1].resolve():
        folders.append(CHECKOUT_BUNDLES)
    return folders


def find_bundle(bundle: str | Path) -> Path:
    """A bundle given as a folder, or by name (a single relative name that is not a folder here) looked up in
    ``bundle_search_path``.

    Raises:
        MedwssError: a folder that does not exist, or a name found nowhere (the error says where it looked).
    """
    p = Path(bundle)
    if p.exists():
        return p
    if p.is_absolute() or len(p.parts) != 1:
        raise MedwssError(p, "bundle not found")
    folders = bundle_search_path()
    for folder in folders:
        if (folder / p.name / "configs").is_dir():
            return folder / p.name
    where = ", ".join(str(f) for f in folders) + ("" if os.environ.get(BUNDLES_ENV) else f" (${BUNDLES_ENV} is unset)")
    raise MedwssError(p, f"no bundle named {p.name!r} in {where}; give the bundle's folder, "
                         f"or set {BUNDLES_ENV} to the folder that holds it")  # fmt: skip


def bundle_dir_of(path: str | Path) -> Path:
    """The bundle folder (the one holding ``configs/``) of a bundle given as a folder or by name (``find_bundle``).

    Raises:
        MedwssError: not found, or not a bundle.
    """
    p = find_bundle(path)
    if not (p / "configs").is_dir():
        raise MedwssError(p, "not a bundle (no configs/ folder)")
    return p.resolve()


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["selfplay#num_iterations=20", "seed=3"]`` -> ``{"selfplay#num_iterations": 20, "seed": 3}``.

    Values are read as YAML, so numbers, booleans, lists and null come out typed.

    Raises:
        MedwssError: a pair without ``=``.
    """
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise MedwssError("--set", f"expected ID=VALUE (e.g. selfplay#num_iterations=20), got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def stage_config_file(bundle: Path, stage: str) -> Path:
    """``configs/train_<stage>.yaml`` (or .json)."""
    for suffix in (".yaml", ".yml", ".json"):
        candidate = bundle / "configs" / f"train_{stage}{suffix}"
        if candidate.is_file():
            return candidate
    raise MedwssError(bundle / "configs" / f"train_{stage}.yaml", f"no config for stage {stage!r}")


def load_config(bundle: str | Path, files: Sequence[str | Path], overrides: dict[str, Any] | None = None):
    """A ``ConfigParser`` over ``configs/common.yaml`` (when present) then ``files``, with ``bundle_root`` set.

    Raises:
        MedwssError: an unreadable config or an override naming no existing key's parent.
    """
    from monai.bundle import ConfigParser

    root = bundle_dir_of(bundle)
    paths = [root / "configs" / COMMON] if (root / "configs" / COMMON).is_file() else []
    paths += [Path(f) for f in files]
    parser = ConfigParser()
    try:
        parser.read_config([str(p) for p in paths])
    except Exception as err:  # yaml/json errors carry their own types; all mean an unreadable config
        raise MedwssError(paths[-1] if paths else root, f"cannot read config: {str(err).splitlines()[0]}") from None
    parser.set(anchor_macros(parser.get(), root))
    parser["bundle_root"] = str(root)
    for key, value in (overrides or {}).items():
        parent = key.rsplit("#", 1)[0] if "#" in key else None
        if parent is not None and parent not in parser:
            raise MedwssError("--set", f"no config entry {parent!r} to set {key!r} in")
        parser[key] = value
    return parser


def anchor_macros(config: Any, root: Path) -> Any:
    """``config`` with each ``%file#id`` macro whose file path is relative made absolute under the bundle ``root``.

    MONAI reads a macro's file relative to the current folder, as its model zoo runs a bundle from the bundle folder
    (``python -m monai.bundle run --config_file configs/inference.yaml``); medwss reads a bundle from anywhere, so it
    reads the macros as if run from there (``inference.yaml`` includes ``models/inference_parts.json`` so).
    """
    from monai.bundle import ConfigParser
    from monai.bundle.utils import ID_SEP_KEY, MACRO_KEY

    if isinstance(config, dict):
        return {k: anchor_macros(v, root) for k, v in config.items()}
    if isinstance(config, list):
        return [anchor_macros(v, root) for v in config]
    if isinstance(config, str) and config.startswith(MACRO_KEY):
        path, ids = ConfigParser.split_path_id(config[len(MACRO_KEY) :])
        if path and not Path(path).is_absolute():
            return f"{MACRO_KEY}{root / path}" + (f"{ID_SEP_KEY}{ids}" if ids else "")
    return config


def macro_files(config: Any) -> list[Path]:
    """The files the ``%file#id`` macros of ``config`` read, in order of appearance, each once."""
    from monai.bundle import ConfigParser
    from monai.bundle.utils import MACRO_KEY

    if isinstance(config, dict):
        config = list(config.values())
    if isinstance(config, list):
        return list(dict.fromkeys(f for v in config for f in macro_files(v)))
    if isinstance(config, str) and config.startswith(MACRO_KEY):
        path = ConfigParser.split_path_id(config[len(MACRO_KEY) :])[0]
        return [Path(path)] if path else []
    return []


def stages_of(bundle: str | Path) -> list[str]:
    """Training stages in order: ``stages`` in ``common.yaml``, else those of ``DEFAULT_STAGES`` that exist."""
    root = bundle_dir_of(bundle)
    common = root / "configs" / COMMON
    if common.is_file():
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(common))
        if "stages" in parser:
            return [str(s) for s in parser["stages"]]
    return [
        s for s in DEFAULT_STAGES if any((root / "configs" / f"train_{s}{x}").is_file() for x in (".yaml", ".json"))
    ]


PHOTO_DATA_TYPES = ("jpeg", "jpg", "png", "image")
"""``metadata.json`` ``data_type`` values that mark a photo bundle."""


def bundle_metadata(bundle: str | Path) -> dict[str, Any]:
    """A bundle's ``configs/metadata.json``; empty when it has none or it is not JSON (reported where it matters)."""
    import json

    meta = Path(bundle) / "configs" / "metadata.json"
    if not meta.is_file():
        return {}
    try:
        data = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def is_photo_bundle(bundle: str | Path) -> bool:
    """Whether a bundle reads photos (``metadata.json`` ``data_type`` an image format, not ``nifti``): photos are
    one-slice volumes of the same pipeline; only how inputs are found, read and written differs."""
    return str(bundle_metadata(bundle).get("data_type", "")).lower() in PHOTO_DATA_TYPES


def is_multiclass_bundle(bundle: str | Path) -> bool:
    """Whether a bundle's ``pred`` is a label map of several classes (``metadata.json``
    ``network_data_format.outputs.pred.format: labels``): training and inference then add the multi-class step
    (``medwss.inference.multiclass``), one game per present class."""
    outputs = bundle_metadata(bundle).get("network_data_format", {}).get("outputs", {})
    return str(outputs.get("pred", {}).get("format", "")).lower() == "labels"


def parsed(parser, key: str, default: Any = None) -> Any:
    """``parser.get_parsed_content(key)``, or ``default`` when the key is absent; errors name the key.

    Raises:
        MedwssError: the entry exists but cannot be built (bad ``_target_``, bad arguments).
    """
    if key not in parser:
        return default
    try:
        return parser.get_parsed_content(key, instantiate=True)
    except Exception as err:
        cause: BaseException | None = err
        innermost: BaseException = err
        while cause is not None:  # MONAI wraps a component's own user error: let that one speak
            if isinstance(cause, MedwssError):
                raise cause from None
            innermost = cause
            cause = cause.__cause__ or cause.__context__
        why = str(err).splitlines()[0]
        if innermost is not err and str(innermost):  # MONAI's "Failed to instantiate ..." hides the value at fault
            why += f" ({str(innermost).splitlines()[0]})"
        raise MedwssError(f"config {key}", f"cannot build: {why}") from None
