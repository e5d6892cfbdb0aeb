"""Campaign files: TOML parsing, validation against the registry, grid expansion, trial ids.

A campaign names datasets × learners × defences × attacks × seeds and a list of budgets; each
component is ``{name, params, grid, label}`` where ``grid`` maps parameter names to lists of
values (Cartesian product). One :class:`Trial` per combination; attacks with
``needs_budget = True`` get one trial per budget, incremental attacks one trial for all
budgets (evaluated at checkpoints). The trial id is a hash of the canonical JSON of the
resolved configuration, so re-running a campaign finds its finished trials. The format is
documented key by key in ``docs/campaigns.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import itertools
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poisonbench.data_identity import content_hash, path_parameters, resolve_path
from poisonbench.registry import (
    KINDS,
    RESERVED_PARAMETERS,
    ParameterNameError,
    ParameterValueError,
    Registry,
    UnknownNameError,
)
from poisonbench.results import to_json

TOP_KEYS = (
    "name",
    "description",
    "seeds",
    "budgets",
    "record_every",
    "timeout",
    "isolation",
    "memory_limit_mb",
    "max_retries",
    "feasibility_tol",
    "feasibility",
    "store_poisons",
    "resources",
    *KINDS,
)
COMPONENT_KEYS = ("name", "params", "grid", "label")
DATASET_KEYS = (*COMPONENT_KEYS, "subpopulations")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
DEFAULT_DEFENCE = {"name": "none"}
#: Seconds a trial may run unless the campaign says otherwise (``timeout``).
DEFAULT_TIMEOUT = 7200.0
#: ``process``: each trial in a worker process (a hang, exit or crash is one failed row);
#: ``none``: in the runner's own process (debugging; no timeout or memory limit can be enforced).
ISOLATION = ("process", "none")
#: ``exact``: poisons must satisfy the whole feasible set (box, integer features, one-hot
#: groups); ``box``: only the box (the relaxation the reference code uses for Adult's MTP).
FEASIBILITY = ("exact", "box")
#: The most trials one campaign may expand to (a larger grid is refused before anything runs).
MAX_TRIALS = 100_000
#: A budget may ask for at most this many times the training set in poisons.
MAX_BUDGET_FACTOR = 100


class CampaignError(ValueError):
    """A campaign file is invalid; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class ComponentSpec:
    """One concrete component: registered name, parameters (no grids left) and a display label."""

    kind: str
    name: str
    params: dict[str, Any]
    label: str
    subpopulations: tuple[str | None, ...] = (None,)
    data: tuple[tuple[str, str], ...] = ()  # (path parameter, SHA-256 of its content)

    def config(self) -> dict[str, Any]:
        """The part that identifies the experiment (the label is cosmetic; the content hashes of
        file parameters are part of it)."""
        out: dict[str, Any] = {"name": self.name, "params": self.params}
        if self.data:
            out["data"] = dict(self.data)
        return out

    @functools.cached_property
    def config_json(self) -> str:
        """``to_json(self.config())``, computed once (every trial of a grid shares it)."""
        return to_json(self.config())


@dataclass(frozen=True)
class Trial:
    """One run of one attack on one dataset/learner/defence/seed, evaluated at ``budgets``."""

    campaign: str
    dataset: ComponentSpec
    learner: ComponentSpec
    defence: ComponentSpec
    attack: ComponentSpec
    seed: int
    budgets: tuple[int | float, ...]
    subpopulation: str | None = None
    record_every: int = 0
    feasibility_tol: float = 1e-6
    timeout: float | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 1
    base_dir: str | None = None  # folder that relative file parameters are read from
    isolation: str = "process"
    memory_limit_mb: float | None = None
    feasibility: str = "exact"
    store_poisons: bool = True  # write the poison set next to the rows (not part of the trial id)

    def config(self) -> dict[str, Any]:
        """The resolved configuration that decides the results (hashed into the trial id)."""
        return {
            "dataset": self.dataset.config(),
            "learner": self.learner.config(),
            "defence": self.defence.config(),
            "attack": self.attack.config(),
            **self._settings(),
        }

    def _settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "subpopulation": self.subpopulation,
            "seed": self.seed,
            "budgets": list(self.budgets),
            "record_every": self.record_every,
            "feasibility_tol": self.feasibility_tol,
        }
        if self.feasibility != "exact":  # the default is left out, so earlier trial ids stay valid
            out["feasibility"] = self.feasibility
        return out

    @functools.cached_property
    def config_json(self) -> str:
        """``to_json(self.config())``, assembled from the components' cached JSON (a grid of
        10^5 trials hashes in about a second instead of re-serialising every component)."""
        parts = {
            **{kind: getattr(self, kind).config_json for kind in ("dataset", "learner", "defence", "attack")},
            **{k: to_json(v) for k, v in self._settings().items()},
        }
        return "{" + ",".join(f'"{k}":{v}' for k, v in sorted(parts.items())) + "}"

    @functools.cached_property
    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`config`."""
        return hashlib.sha256(self.config_json.encode()).hexdigest()

    @property
    def trial_id(self) -> str:
        return self.config_hash[:16]

    def as_dict(self) -> dict[str, Any]:
        """Everything about the trial, JSON-friendly (what hooks receive and ``config`` stores)."""
        return {
            "campaign": self.campaign,
            "trial_id": self.trial_id,
            "config_hash": self.config_hash,
            **self.config(),
            "labels": {k: getattr(self, k).label for k in ("dataset", "learner", "defence", "attack")},
            "timeout": self.timeout,
            "resources": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_retries": self.max_retries,
            "base_dir": self.base_dir,
            "isolation": self.isolation,
            "memory_limit_mb": self.memory_limit_mb,
            **({} if self.store_poisons else {"store_poisons": False}),  # the default left out: rows unchanged
        }

    def describe(self) -> str:
        """One line for ``--dry-run`` and progress messages."""
        sub = f" subpop={self.subpopulation}" if self.subpopulation else ""
        budgets = ",".join(budget_spec(b) for b in self.budgets)
        return (
            f"{self.trial_id}  {self.dataset.label} / {self.learner.label} / {self.defence.label} / "
            f"{self.attack.label}  seed={self.seed}{sub} budgets={budgets}"
        )


@dataclass(frozen=True)
class Campaign:
    """A parsed campaign file (grids expanded per component; trials come from :meth:`trials`)."""

    name: str
    path: str
    components: dict[str, tuple[ComponentSpec, ...]]
    seeds: tuple[int, ...]
    budgets: tuple[int | float, ...]
    description: str = ""
    record_every: int = 0
    feasibility_tol: float = 1e-6
    timeout: float | None = None
    max_retries: int = 1
    isolation: str = "process"
    memory_limit_mb: float | None = None
    feasibility: str = "exact"
    store_poisons: bool = True
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    source: dict[str, Any] = field(default_factory=dict)

    def validate(self, registry: Registry) -> None:
        """Check every component name and parameter against ``registry``; raise :class:`CampaignError`."""
        for kind in KINDS:
            for i, spec in _numbered(self.components[kind]):
                where = f"[[{kind}]] #{i} ({spec.label})"
                try:
                    component = registry.get(kind, spec.name)
                except UnknownNameError as exc:
                    raise CampaignError(f"{self.path}: {where} name: {exc}") from None
                if kind == "datasets" and "seed" in spec.params:
                    raise CampaignError(f"{self.path}: {where} params.seed: set seeds with the top-level 'seeds' key")
                reserved = RESERVED_PARAMETERS.get(kind, ())
                try:
                    component.check_params(spec.params, reserved)
                except (ParameterNameError, ParameterValueError) as exc:
                    key = "params" if exc.problem.startswith("missing") else f"params.{exc.key}"
                    raise CampaignError(f"{self.path}: {where} {key}: {exc.problem}") from None

    @property
    def base_dir(self) -> str | None:
        """The campaign file's folder (None for a campaign not read from a file)."""
        path = Path(self.path)
        return str(path.resolve().parent) if path.is_file() else None

    def _with_data_identity(self, spec: ComponentSpec, registry: Registry, where: str) -> ComponentSpec:
        """``spec`` with the content hash of each file parameter (CampaignError for a missing file)."""
        declarations = registry.get(spec.kind, spec.name).declarations
        hashes = []
        for key, value in sorted(path_parameters(declarations, spec.params).items()):
            path = resolve_path(value, self.base_dir)
            if not path.exists():
                base = f" (relative paths are read from {self.base_dir})" if self.base_dir else ""
                raise CampaignError(f"{self.path}: {where} params.{key}: no such file {str(path)!r}{base}")
            hashes.append((key, content_hash(path)))
        return dataclasses.replace(spec, data=tuple(hashes)) if hashes else spec

    def size(self, registry: Registry) -> int:
        """The number of trials the grid expands to (before deduplication), without expanding it."""
        per_seed = 0
        for attack in self.components["attacks"]:
            needs_budget = bool(getattr(registry.get("attacks", attack.name).factory, "needs_budget", False))
            per_seed += len(self.budgets) if needs_budget else 1
        subpops = sum(len(d.subpopulations) for d in self.components["datasets"])
        others = len(self.components["learners"]) * len(self.components["defences"])
        return per_seed * subpops * others * len(self.seeds)

    def trials(self, registry: Registry) -> list[Trial]:
        """Validate, then expand into trials (deduplicated by trial id, in file order)."""
        return list(self.iter_trials(registry))

    def iter_trials(self, registry: Registry) -> Iterator[Trial]:
        """:meth:`trials` one at a time (the grid is validated, its size checked against
        :data:`MAX_TRIALS` and the data files hashed before the first trial is yielded)."""
        self.validate(registry)
        size = self.size(registry)
        if size > MAX_TRIALS:
            raise CampaignError(
                f"{self.path}: the grid expands to {size:,} trials, more than the limit of {MAX_TRIALS:,}; "
                f"split the campaign into several files"
            )
        components = {
            kind: tuple(
                self._with_data_identity(spec, registry, f"[[{kind}]] #{i} ({spec.label})")
                for i, spec in _numbered(self.components[kind])
            )
            for kind in KINDS
        }
        return self._expand(registry, components)

    def _expand(self, registry: Registry, components: dict[str, tuple[ComponentSpec, ...]]) -> Iterator[Trial]:
        seen: set[str] = set()
        base_dir = self.base_dir
        order = ("datasets", "learners", "defences", "attacks")
        for dataset, learner, defence, attack in itertools.product(*(components[k] for k in order)):
            needs_budget = bool(getattr(registry.get("attacks", attack.name).factory, "needs_budget", False))
            budget_sets = [(b,) for b in self.budgets] if needs_budget else [self.budgets]
            for subpop, seed, budgets in itertools.product(dataset.subpopulations, self.seeds, budget_sets):
                trial = Trial(
                    self.name,
                    dataset,
                    learner,
                    defence,
                    attack,
                    seed,
                    budgets,
                    subpop,
                    self.record_every,
                    self.feasibility_tol,
                    self.timeout,
                    self.num_cpus,
                    self.num_gpus,
                    self.max_retries,
                    base_dir,
                    self.isolation,
                    self.memory_limit_mb,
                    self.feasibility,
                    self.store_poisons,
                )
                if trial.trial_id not in seen:
                    seen.add(trial.trial_id)
                    yield trial


def budget_spec(budget: int | float) -> str:
    """The budget as written: ``'100'`` (poisons) or ``'0.05'`` (fraction of the training set)."""
    return str(budget) if isinstance(budget, int) else repr(float(budget))


def resolve_budget(budget: int | float, n_train: int) -> int:
    """Poisons for a budget: an int is absolute, a float in (0, 1] a fraction of ``n_train``
    (rounded). ``ValueError`` past :data:`MAX_BUDGET_FACTOR` × ``n_train`` poisons."""
    poisons = budget if isinstance(budget, int) else int(math.floor(budget * n_train + 0.5))
    if poisons > MAX_BUDGET_FACTOR * n_train:
        raise ValueError(
            f"budget {budget_spec(budget)}: {poisons:,} poisons is more than {MAX_BUDGET_FACTOR}× the "
            f"{n_train:,} training points; lower the budget"
        )
    return poisons


def load_campaign(path: str | Path) -> Campaign:
    """Parse and check the structure of a campaign file (component names are checked by
    :meth:`Campaign.validate`)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(f"{path}: campaign file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CampaignError(
            f"{path}: not UTF-8 text (a campaign file is TOML, UTF-8): {exc.reason} at byte {exc.start}"
        ) from None
    return parse_campaign(raw, str(path), default_name=path.stem)


def parse_campaign(raw: dict[str, Any], path: str = "<campaign>", default_name: str = "campaign") -> Campaign:
    """Build a :class:`Campaign` from the decoded TOML table ``raw``."""
    p = _Parser(path)
    p.keys(raw, TOP_KEYS, "top level")
    name = p.string(raw.get("name", default_name), "name")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise CampaignError(f"{path}: name: {name!r} is not a usable campaign name (no '/', not starting with '.')")
    seeds = p.int_list(raw.get("seeds", [0]), "seeds", minimum=0)
    budgets = p.budgets(raw.get("budgets"))
    resources = raw.get("resources", {})
    if not isinstance(resources, dict):
        raise CampaignError(f"{path}: resources: expected a table [resources], got {type(resources).__name__}")
    p.keys(resources, RESOURCE_KEYS, "[resources]")
    components = {}
    for kind in KINDS:
        entries = raw.get(kind, [DEFAULT_DEFENCE] if kind == "defences" else None)
        components[kind] = p.components(kind, entries)
    isolation = p.string(raw.get("isolation", "process"), "isolation")
    if isolation not in ISOLATION:
        raise p.fail("isolation", f"expected one of {', '.join(map(repr, ISOLATION))}, got {isolation!r}")
    isolated = isolation == "process"
    for key in ("timeout", "memory_limit_mb"):
        if not isolated and raw.get(key) is not None:
            raise p.fail(key, "needs isolation = 'process' (an in-process trial cannot be stopped or capped)")
    timeout = raw.get("timeout", DEFAULT_TIMEOUT if isolated else None)
    feasibility = p.string(raw.get("feasibility", "exact"), "feasibility")
    if feasibility not in FEASIBILITY:
        raise p.fail("feasibility", f"expected one of {', '.join(map(repr, FEASIBILITY))}, got {feasibility!r}")
    memory = raw.get("memory_limit_mb")
    store_poisons = raw.get("store_poisons", True)
    if not isinstance(store_poisons, bool):
        raise p.fail("store_poisons", f"expected true or false, got {store_poisons!r}")
    return Campaign(
        name=name,
        path=path,
        components=components,
        seeds=tuple(seeds),
        budgets=tuple(budgets),
        description=p.string(raw.get("description", ""), "description"),
        record_every=p.integer(raw.get("record_every", 0), "record_every", minimum=0),
        feasibility_tol=p.number(raw.get("feasibility_tol", 1e-6), "feasibility_tol", minimum=0.0),
        timeout=None if timeout is None else p.number(timeout, "timeout", minimum=0.0, strict=True),
        isolation=isolation,
        memory_limit_mb=None if memory is None else p.number(memory, "memory_limit_mb", minimum=1.0),
        feasibility=feasibility,
        store_poisons=store_poisons,
        max_retries=p.integer(raw.get("max_retries", 1), "max_retries", minimum=0),
        num_cpus=p.number(resources.get("num_cpus", 1), "resources.num_cpus", minimum=0.0, strict=True),
        num_gpus=p.number(resources.get("num_gpus", 0), "resources.num_gpus", minimum=0.0),
        source=raw,
    )


class _Parser:
    """Structure checks with messages ``<file>: <key>: <problem>``."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str) -> CampaignError:
        return CampaignError(f"{self.path}: {key}: {problem}")

    def keys(self, table: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(f"{where} {key}", f"unknown key{hint}; valid keys: {', '.join(valid)}")

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def integer(self, value: Any, key: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, key: str, minimum: float | None = None, strict: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        if minimum is not None and (value < minimum or (strict and value == minimum)):
            raise self.fail(key, f"expected a number {'>' if strict else '>='} {minimum:g}, got {value!r}")
        return float(value)

    def int_list(self, value: Any, key: str, minimum: int) -> list[int]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list of integers, got {value!r}")
        out = [self.integer(v, f"{key}[{i}]", minimum) for i, v in enumerate(value)]
        if len(set(out)) != len(out):
            raise self.fail(key, f"duplicate values in {out}")
        return out

    def budgets(self, value: Any) -> list[int | float]:
        if value is None:
            raise self.fail(
                "budgets",
                "missing: give a list of poison counts (integers) or fractions of the training set (floats in (0, 1])",
            )
        if not isinstance(value, list) or not value:
            raise self.fail("budgets", f"expected a non-empty list, got {value!r}")
        out: list[int | float] = []
        for i, b in enumerate(value):
            key = f"budgets[{i}]"
            if isinstance(b, bool) or not isinstance(b, (int, float)):
                raise self.fail(key, f"expected an integer (poisons) or a float fraction, got {b!r}")
            if isinstance(b, int) and b < 0:
                raise self.fail(key, f"expected a non-negative number of poisons, got {b}")
            if isinstance(b, float) and not (0.0 < b <= 1.0):
                raise self.fail(
                    key, f"a float budget is a fraction of the training set, expected 0 < b <= 1, got {b!r}"
                )
            out.append(b)
        if len({budget_spec(b) for b in out}) != len(out):
            raise self.fail("budgets", f"duplicate values in {value}")
        return out

    def components(self, kind: str, entries: Any) -> tuple[ComponentSpec, ...]:
        if entries is None:
            raise self.fail(kind, f"missing: add at least one [[{kind}]] table with a name")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise self.fail(kind, f"expected one or more [[{kind}]] tables, got {entries!r}")
        out: list[ComponentSpec] = []
        for i, entry in _numbered(entries):
            out += self.component(kind, entry, f"[[{kind}]] #{i}")
        labels = [c.label for c in out]
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dup:
            raise self.fail(kind, f"several entries have the label {dup[0]!r}; give each a distinct 'label'")
        return tuple(out)

    def component(self, kind: str, entry: dict[str, Any], where: str) -> list[ComponentSpec]:
        self.keys(entry, DATASET_KEYS if kind == "datasets" else COMPONENT_KEYS, where)
        if "name" not in entry:
            raise self.fail(where, "missing key 'name'")
        name = self.string(entry["name"], f"{where} name")
        params = entry.get("params", {})
        grid = entry.get("grid", {})
        for key, table in (("params", params), ("grid", grid)):
            if not isinstance(table, dict):
                raise self.fail(f"{where} {key}", f"expected a table of parameter = value, got {table!r}")
            for k, v in table.items():
                self.plain(v, f"{where} {key}.{k}")
        for k, values in grid.items():
            if not isinstance(values, list) or not values:
                raise self.fail(f"{where} grid.{k}", f"expected a non-empty list of values, got {values!r}")
            if k in params:
                raise self.fail(f"{where} grid.{k}", "also set in params; set it in one place")
        subpops: tuple[str | None, ...] = (None,)
        if "subpopulations" in entry:
            sp = entry["subpopulations"]
            if not isinstance(sp, list) or not sp or not all(isinstance(s, str) for s in sp):
                raise self.fail(f"{where} subpopulations", f"expected a non-empty list of names, got {sp!r}")
            subpops = tuple(sp)
        label = entry.get("label")
        if label is not None:
            self.string(label, f"{where} label")
        keys = list(grid)
        out = []
        for values in itertools.product(*(grid[k] for k in keys)):
            setting = dict(zip(keys, values))
            auto = name + ("(" + ",".join(f"{k}={to_json(v)}" for k, v in setting.items()) + ")" if keys else "")
            lab = auto if label is None else (label + (auto[len(name) :] if keys else ""))
            out.append(ComponentSpec(kind, name, {**params, **setting}, lab, subpops))
        return out

    def plain(self, value: Any, key: str) -> None:
        """Parameter values must be JSON-friendly (TOML dates/times are not)."""
        if isinstance(value, dict):
            for k, v in value.items():
                self.plain(v, f"{key}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.plain(v, f"{key}[{i}]")
        elif not isinstance(value, (str, int, float, bool)):
            raise self.fail(key, f"expected a string, number, boolean, list or table, got {type(value).__name__}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")


def _numbered(items: Any) -> Any:
    return enumerate(items, start=1)
