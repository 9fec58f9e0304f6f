"""The settings of a self-play run, in small parts: PPO, the opponent pool, the policy network, and the run itself.

A bundle's ``train_selfplay.yaml`` holds one section per part under ``selfplay``; each part is a frozen dataclass
that lives beside the code it configures and checks its own values (a lower package never imports this one):

========================  =====================================  =================================================
config section            dataclass                              what it sets
========================  =====================================  =================================================
``selfplay#training``     `SelfPlaySettings` (its own fields)    how long and how often: iterations, games per
                                                                 iteration, termination warm-up, checkpoint and
                                                                 validation cadence (the seed is the bundle's)
``selfplay#ppo``          `medwss.agents.ppo.PPOSettings`        optimiser and PPO maths
``selfplay#pool``         `medwss.selfplay.pool.PoolSettings`    snapshots, opponent sampling, learner seats
``selfplay#policy``       `medwss.agents.policy.PolicySettings`  the agents' network and observation
========================  =====================================  =================================================

The run-level section keeps the name ``training`` (as ``detector#training``), so the overrides people type most,
``--set selfplay#training#num_iterations=...``, mean what they meant. `SelfPlaySettings.from_config` is the one
place a config becomes settings: defaults live only in the dataclasses, and a key that is unknown, or that sits in
the wrong section (such as the flat ``selfplay#training`` mapping of earlier bundles), is a one-line error that says
where it belongs. Field names are unique across the parts, which gives a flat view (`SelfPlaySettings.flat`) for
checkpoint provenance and leaf-named changes (`SelfPlaySettings.replace`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medwss.agents.policy import PolicySettings
from medwss.agents.ppo import PPOSettings
from medwss.errors import MedwssError
from medwss.selfplay.pool import PoolSettings

__all__ = ["RESUMABLE_CHANGES", "RUN_SECTION", "SECTIONS", "SelfPlaySettings", "section_of"]

RUN_SECTION = "training"
"""Config section (under ``selfplay``) of the run-level fields, the ones `SelfPlaySettings` holds itself."""
SECTIONS: dict[str, type] = {"ppo": PPOSettings, "pool": PoolSettings, "policy": PolicySettings}
"""Config section (under ``selfplay``) -> the dataclass it builds, the `SelfPlaySettings` attribute of that name."""
RESUMABLE_CHANGES = ("num_iterations", "checkpoint_every", "eval_every")
"""Settings a resumed run may change: they extend or observe the run without changing what it learns (all run-level,
so a resume compares every PPO, pool and policy setting)."""


@dataclass(frozen=True)
class SelfPlaySettings:
    """All settings of one self-play run: its run-level fields plus one part per concern (``ppo``, ``pool``,
    ``policy``); frozen and stored in checkpoints so a resumed run cannot drift."""

    num_iterations: int = 300
    """Iterations of play + PPO update (one iteration = games_per_iteration games); on the synthetic task at G=16
    validation Dice levels off after ~160-300."""
    games_per_iteration: int = 64
    """B, games played in lock-step per iteration, each on a slice drawn with replacement."""
    termination_warmup: int = 20
    """First iterations played with TERMINATE masked out, for at most warmup_turns turns: turn rewards alone first
    teach both seats to find ROI patches, so that the pool holds finders once terminating is allowed. Without it,
    "terminate at once" beats the first, random opponents' final picks and self-play stalls there."""
    warmup_turns: int = 32
    """Turn limit of the warm-up games (a truncation), enough to reach the ROI patches without playing out the board."""
    seed: int = 0
    """Seeds torch, numpy, Python and the named generators (slices, opponent, minibatch) and the action sampler."""
    checkpoint_every: int = 10
    """Write checkpoint_latest.pt and redraw progress.png every N iterations."""
    eval_every: int = 10
    """Log val/dice every N iterations (and at the last)."""
    ppo: PPOSettings = field(default_factory=PPOSettings)
    """Optimiser and PPO maths (``selfplay#ppo``)."""
    pool: PoolSettings = field(default_factory=PoolSettings)
    """Opponent pool, opponent sampling and learner seats (``selfplay#pool``)."""
    policy: PolicySettings = field(default_factory=PolicySettings)
    """The agents' network and observation (``selfplay#policy``)."""

    def __post_init__(self) -> None:
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        for name in ("num_iterations", "games_per_iteration", "checkpoint_every", "eval_every", "warmup_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.termination_warmup < 0:
            raise ValueError(f"termination_warmup must be >= 0, got {self.termination_warmup}")

    @classmethod
    def from_config(
        cls, node: Mapping[str, Any] | None, seed: int | None = None, *, node_keys: Iterable[str] | None = None
    ) -> SelfPlaySettings:
        """Settings from a bundle's ``selfplay`` node (or `to_config`'s output): its ``training``, ``ppo``, ``pool``
        and ``policy`` sections, each optional.

        Args:
            node: the ``selfplay`` mapping.
            seed: the bundle's top-level ``seed``; None takes ``training#seed`` (stored settings) or the default.
            node_keys: the node's other keys, which the stage reads itself (``rules``, ``num_threads``...); given,
                any further key of the node is an error (a misspelt section would otherwise drop its settings
                silently); None leaves other keys alone.

        Raises:
            MedwssError: a section that is not a mapping, an unknown key, a key in the wrong section (the error
                lists where each belongs), a value its part rejects, or a seed given in both places.
        """
        node = node or {}
        if node_keys is not None:
            known_keys = [RUN_SECTION, *SECTIONS, *node_keys]
            for key in node:
                if key not in known_keys:
                    where = f": it belongs in selfplay#{section_of(key)}" if section_of(key) else ""
                    raise MedwssError("selfplay", f"unknown key {key!r}{where} (known: {', '.join(known_keys)})")
        sections = {name: _section(node, name) for name in (RUN_SECTION, *SECTIONS)}
        for name, values in sections.items():
            known = _run_fields() if name == RUN_SECTION else _fields(SECTIONS[name])
            misplaced = {key: section_of(key) for key in values if key not in known and section_of(key)}
            unknown = [key for key in values if key not in known and key not in misplaced]
            if unknown:
                raise MedwssError(f"selfplay#{name}", f"unknown setting {unknown[0]!r} (known: {', '.join(known)})")
            if misplaced:
                moves = "; ".join(
                    f"{', '.join(k for k in misplaced if misplaced[k] == where)} -> selfplay#{where}"
                    for where in dict.fromkeys(misplaced.values())
                )  # fmt: skip
                raise MedwssError(f"selfplay#{name}", f"settings in the wrong section, move them: {moves}")
        run = dict(sections[RUN_SECTION])
        if seed is not None:
            if "seed" in run:
                raise MedwssError(f"selfplay#{RUN_SECTION}#seed", "the run's seed is the bundle's top-level 'seed'")
            run["seed"] = int(seed)
        parts = {name: _build(kind, sections[name], f"selfplay#{name}") for name, kind in SECTIONS.items()}
        return _build(cls, run, f"selfplay#{RUN_SECTION}", **parts)

    def to_config(self) -> dict[str, dict[str, Any]]:
        """The settings as ``selfplay`` config sections (``training`` with the seed, ``ppo``, ``pool``, ``policy``):
        what checkpoints and ``models/policy.json`` store, and what `from_config` reads back unchanged."""
        run = {name: getattr(self, name) for name in _run_fields()}
        return {RUN_SECTION: run, **{name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}}

    def flat(self) -> dict[str, Any]:
        """Every setting by its field name, sections dissolved (names are unique across the parts): the form
        checkpoint provenance compares, so a change is named by its field and pre-split checkpoints still match."""
        return {key: value for values in self.to_config().values() for key, value in values.items()}

    def replace(self, **changes: Any) -> SelfPlaySettings:
        """A copy with settings changed by field name, whatever part holds them (``replace(gamma=0.9,
        num_iterations=5)``); each changed part is validated again.

        Raises:
            TypeError: a name that is no setting.
        """
        parts: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            where = section_of(key)
            if where is None:
                raise TypeError(f"SelfPlaySettings has no setting {key!r}")
            parts.setdefault(where, {})[key] = value
        run = parts.pop(RUN_SECTION, {})
        nested = {name: dataclasses.replace(getattr(self, name), **values) for name, values in parts.items()}
        return dataclasses.replace(self, **run, **nested)


def section_of(key: str) -> str | None:
    """The config section (``training``, ``ppo``, ``pool``, ``policy``) that holds a setting, or None."""
    return _SECTION_OF.get(key)


def _fields(kind: type) -> list[str]:
    return [f.name for f in dataclasses.fields(kind)]


def _section(node: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    values = node.get(name)
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise MedwssError(f"selfplay#{name}", f"must be a mapping of settings, got {type(values).__name__}")
    return values


def _build(kind: type, values: Mapping[str, Any], where: str, **parts: Any) -> Any:
    """One part from its section: a value of the wrong type, or one its own check rejects, as a one-line error."""
    for f in dataclasses.fields(kind):
        if f.name in values and f.default is not dataclasses.MISSING and not _same_kind(values[f.name], f.default):
            raise MedwssError(where, f"{f.name} must be {type(f.default).__name__}, got {values[f.name]!r}")
    try:
        return kind(**values, **parts)
    except (TypeError, ValueError) as err:
        raise MedwssError(where, str(err)) from None


def _same_kind(value: Any, default: Any) -> bool:
    """YAML gave the type the default has (an int where a float is expected is fine; a bool is no number)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _run_fields() -> list[str]:
    """`SelfPlaySettings`' own fields, those of ``selfplay#training``."""
    return [name for name in _fields(SelfPlaySettings) if name not in SECTIONS]


_SECTION_OF: dict[str, str] = {
    **{name: RUN_SECTION for name in _run_fields()},
    **{key: name for name, kind in SECTIONS.items() for key in _fields(kind)},
}
