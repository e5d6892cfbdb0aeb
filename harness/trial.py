"""Run one trial: build the components, stream the attack's poisons, evaluate at checkpoints.

For an incremental attack the scenario budget is the largest budget and the attack runs
once; at each checkpoint (the cumulative poison count reaches a budget, or the attack stops)
the defence fits the learner on ``D_c ∪ D_p[:budget]`` (with the dataset's validation split)
and a result row records the defended model's test / subpopulation accuracy, the defence's
λ and the attack's latest diagnostics. An attack with ``needs_budget = True`` gets a trial per
budget. Every poison batch is checked against the harness's own copy of the data (shape
``(k, d)``, finite, labels ±1, inside the feasible box to ``feasibility_tol`` and, unless the
campaign says ``feasibility = "box"``, integral on integer features and 0/1 with at most one 1
in each one-hot group; never past the budget); any exception or violation makes
the trial's rows ``status = "failed"`` with an error naming the component. Never raises.

The accepted poisons (a failed trial's too) become the trial's :class:`~poisonbench.results.PoisonSet`:
its content hash is every row's ``poisons_sha256`` and, unless the campaign says
``store_poisons = false``, :func:`run_trial_with_poisons` returns its Parquet bytes for the store.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.campaign import Trial, budget_spec, resolve_budget
from poisonbench.code_identity import code_hash
from poisonbench.data_identity import resolved
from poisonbench.dataset import Dataset, FeasibleSet
from poisonbench.host import PluginHost, load_host
from poisonbench.learner import fit_certificate, require_certified
from poisonbench.progress import PROGRESS_SECONDS, OnTrialProgress, TrialProgress
from poisonbench.registry import Component
from poisonbench.results import (
    DIAGNOSTIC_COLUMNS,
    PoisonSet,
    finite_or_none,
    jsonable,
    provenance,
    to_json,
    utcnow,
)

COMPONENT_KINDS = ("dataset", "learner", "defence", "attack")
_HOSTS: dict[tuple[str, ...], PluginHost] = {}


class ComponentError(Exception):
    """A component misbehaved; the message starts with ``<kind> '<name>':``."""


def host_for(extra_modules: Sequence[str]) -> PluginHost:
    """The plugin host of this process for ``extra_modules`` (built once per process; used by
    executor workers, which cannot receive a host from the driver)."""
    key = tuple(extra_modules)
    if key not in _HOSTS:
        _HOSTS[key] = load_host(key)
    return _HOSTS[key]


@dataclass
class TrialResult:
    """What one trial produced: its rows and its poison set as the bytes of a Parquet artefact
    (:meth:`~poisonbench.results.PoisonSet.to_parquet`; None when the trial produced no poisons
    or the campaign does not store them). Plain data, cheap to send from a worker process."""

    rows: list[dict[str, Any]]
    poisons: bytes | None = None


def run_trial(
    trial: Trial, host: PluginHost, executor: str = "local", on_progress: OnTrialProgress | None = None
) -> list[dict[str, Any]]:
    """Run ``trial`` and return its result rows (checkpoint rows, trace rows, or failed rows).

    ``on_progress`` receives a :class:`~poisonbench.progress.TrialProgress` when the attack
    starts and then at most every :data:`~poisonbench.progress.PROGRESS_SECONDS` while it runs."""
    return run_trial_with_poisons(trial, host, executor, on_progress).rows


def run_trial_with_poisons(
    trial: Trial, host: PluginHost, executor: str = "local", on_progress: OnTrialProgress | None = None
) -> TrialResult:
    """:func:`run_trial`, with the trial's poison set for the store (what the executors run)."""
    return _TrialRun(trial, host, executor, on_progress).run()


def failure_rows(
    trial: Trial, error: str, executor: str, started_at: Any = None, wall_seconds: float | None = None
) -> list[dict[str, Any]]:
    """The single failed row of a trial that produced nothing (timeout, crashed worker)."""
    row = {
        **base_row(trial, executor),
        "kind": "checkpoint",
        "checkpoint": 0,
        "step": 0,
        "status": "failed",
        "error": error,
        "started_at": started_at or utcnow(),
        "finished_at": utcnow(),
        "wall_seconds": wall_seconds,
    }
    return [row]


def base_row(trial: Trial, executor: str) -> dict[str, Any]:
    """Columns every row of ``trial`` shares: identity, configuration, provenance."""
    row: dict[str, Any] = {
        "campaign": trial.campaign,
        "trial_id": trial.trial_id,
        "config_hash": trial.config_hash,
        "subpopulation": trial.subpopulation,
        "seed": trial.seed,
        "config": to_json(trial.as_dict()),
        "target": _target(trial.attack.params),
        **provenance(executor),
    }
    for kind in COMPONENT_KINDS:
        spec = getattr(trial, kind)
        row[kind] = spec.name
        row[f"{kind}_params"] = to_json(spec.params)
        row[f"{kind}_label"] = spec.label
    return row


def _components(host: PluginHost, **names: str) -> dict[str, Component | None]:
    """The registered component of each ``kind=name`` (None where none is registered)."""
    out: dict[str, Component | None] = {}
    for kind, name in names.items():
        try:
            out[kind] = host.registry.get(kind + "s", name)
        except LookupError:
            out[kind] = None
    return out


def _trial_components(trial: Trial, host: PluginHost) -> dict[str, Component | None]:
    return _components(host, **{kind: getattr(trial, kind).name for kind in COMPONENT_KINDS})


def _plugin_versions(trial: Trial, host: PluginHost) -> dict[str, str]:
    """``{"attack": "<plugin module> <version>", …}`` for the trial's four components."""
    return {
        kind: "unknown" if c is None else f"{c.plugin} {c.version}"
        for kind, c in _trial_components(trial, host).items()
    }


def component_code_hash(trial: Trial, host: PluginHost) -> str | None:
    """:func:`poisonbench.code_identity.code_hash` of the modules defining the trial's components."""
    return _code_hash_of(_trial_components(trial, host))


def components_code_hash(host: PluginHost, **names: str) -> str | None:
    """The code hash of the components named ``dataset=…, learner=…, defence=…, attack=…``
    (None when one is not registered)."""
    return _code_hash_of(_components(host, **names))


def _code_hash_of(components: dict[str, Component | None]) -> str | None:
    if any(c is None for c in components.values()):
        return None
    return code_hash(tuple(sorted({getattr(c.factory, "__module__", "") for c in components.values() if c})))


def create_component(
    host: PluginHost, kind: str, name: str, params: dict[str, Any], seed: int, base_dir: str | None
) -> Any:
    """The ``kind`` component ``name`` as a trial builds it: declared file parameters resolved
    against ``base_dir`` (the campaign file's folder), and a dataset made with the trial's ``seed``."""
    extra = {"seed": seed} if kind == "dataset" else {}
    declarations = host.registry.get(kind + "s", name).declarations
    return host.create(kind + "s", name, **extra, **resolved(declarations, params, base_dir))


def private_copy(data: Dataset) -> Dataset:
    """A copy of ``data`` sharing no array with it (the harness's own truth)."""
    fs = data.feasible
    feasible = FeasibleSet(fs.lo.copy(), fs.hi.copy(), np.array(fs.integer, copy=True), fs.onehot_groups)
    subpops = {
        k: dataclasses.replace(v, train_idx=v.train_idx.copy(), test_idx=v.test_idx.copy())
        for k, v in data.subpopulations.items()
    }
    return dataclasses.replace(data, feasible=feasible, subpopulations=subpops)


def measured_accuracy(model: Any, X: np.ndarray, y: np.ndarray, trial: Trial) -> float:
    """Accuracy measured by the harness from the model's predictions (never the model's own
    ``accuracy``): NaN for an empty set; ComponentError for predictions that are not ±1 labels."""
    if len(y) == 0:
        return float("nan")
    pred = np.asarray(model.predict(X), dtype=np.float64)
    if pred.shape != y.shape or not np.isin(pred, (-1.0, 1.0)).all():
        raise ComponentError(
            f"learner {trial.learner.name!r}: predict returned {pred.shape} values "
            f"{np.unique(pred)[:5].tolist()}; expected {y.shape[0]} labels in {{-1, +1}}"
        )
    return float(np.mean(pred == y))


def clean_measures(learner: Any, model: Any, X: np.ndarray, y: np.ndarray, hyperparameters: dict) -> dict[str, Any]:
    """The defended model on the clean training points (harness-measured, schema 7):

    ``clean_loss`` = (1/n) Σ_{i ∈ D_c} ℓ(θ̂; x_i, y_i), the learner's own loss, and
    ``clean_objective`` = J(θ̂; D_c), the learner's objective on D_c (for the linear learners
    clean_loss + C_R R(θ̂), MTP eq. 1: the quantity the min-max attack's certified upper bound
    bounds), only when the defence fitted with the learner's own regularisation (it reports no
    ``lambda``); null when the learner has no ``loss`` / ``objective``. ComponentError for a
    loss that is not one finite value per point."""
    out: dict[str, Any] = {"clean_loss": None, "clean_objective": None}
    if not callable(getattr(learner, "loss", None)) or len(y) == 0:
        return out
    name = getattr(learner, "name", type(learner).__name__)
    losses = np.asarray(learner.loss(model, X, y), dtype=np.float64)
    if losses.shape != y.shape or not np.isfinite(losses).all():
        raise ComponentError(
            f"learner {name!r}: loss returned shape {losses.shape}; expected {y.shape[0]} finite values"
        )
    out["clean_loss"] = float(losses.mean())
    if "lambda" not in hyperparameters and callable(getattr(learner, "objective", None)):
        out["clean_objective"] = finite_or_none(float(learner.objective(model, X, y)))
    return out


def removed_counts(kept: Any, n_clean: int, n_poisons: int, who: str) -> tuple[int | None, int | None, int | None]:
    """``(removed, poisons removed, clean removed)`` from a defence's kept rows over the
    ``n_clean + n_poisons`` training rows (the poisons are the last ``n_poisons``): a boolean
    mask of that length, or distinct row indices. ``(None,) * 3`` when the defence reports none;
    ComponentError for anything else (a defence cannot claim rows that do not exist)."""
    if kept is None:
        return None, None, None
    total = n_clean + n_poisons
    arr = np.asarray(kept)
    if arr.dtype == bool and arr.shape == (total,):
        mask = arr
    elif arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer) and np.unique(arr).size == arr.size:
        if arr.size and (arr.min() < 0 or arr.max() >= total):
            raise ComponentError(f"{who}: kept row indices outside 0..{total - 1}")
        mask = np.zeros(total, dtype=bool)
        mask[arr] = True
    else:
        raise ComponentError(
            f"{who}: kept must be a boolean mask of the {total} training rows or distinct row indices, "
            f"got {arr.dtype} of shape {arr.shape}"
        )
    removed_poisons = int(n_poisons - mask[n_clean:].sum())
    removed_clean = int(n_clean - mask[:n_clean].sum())
    return removed_poisons + removed_clean, removed_poisons, removed_clean


def _target(params: dict[str, Any]) -> str | None:
    target = params.get("target")
    return None if target is None else str(target)


class _TrialRun:
    def __init__(self, trial: Trial, host: PluginHost, executor: str, on_progress: OnTrialProgress | None = None):
        self.trial, self.host = trial, host
        self.on_progress = on_progress
        self.reported_at = -float("inf")  # perf_counter of the last progress report
        self.base = base_row(trial, executor)
        self.base["plugin_versions"] = to_json(_plugin_versions(trial, host))
        self.base["code_hash"] = component_code_hash(trial, host)
        self.rows: list[dict[str, Any]] = []
        self.stage = ("dataset", trial.dataset.name)
        self.step = 0
        self.count = 0
        self.diagnostics: dict[str, Any] = {}
        self.diagnostics_count: int | None = None  # poisons of the model the diagnostics describe
        self.pending: list[tuple[int, int | float, int]] = []
        self.batches: list[PoisonBatch] = []
        self.budget_points: list[int] = []  # the budgets in poisons, increasing (checkpoint order)

    def run(self) -> TrialResult:
        self.started_at = utcnow()
        self.t0 = time.perf_counter()
        try:
            self._run()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # every plugin failure, sys.exit included, becomes a failed row
            self._fail(exc)
        finished = utcnow()
        poisons = self._poison_set()
        sha = None if poisons is None else poisons.sha256()
        for row in self.rows:
            row["started_at"], row["finished_at"] = self.started_at, finished
            row["poisons_sha256"] = sha
        stored = poisons.to_parquet() if poisons is not None and self.trial.store_poisons else None
        return TrialResult(self.rows, stored)

    def _poison_set(self) -> PoisonSet | None:
        """The accepted poisons as a :class:`PoisonSet` (None when there are none)."""
        if self.count == 0:
            return None
        X, y = self._poisons(self.count)
        step = np.repeat(np.arange(1, len(self.batches) + 1), [len(b.y) for b in self.batches])
        checkpoint = np.searchsorted(np.asarray(self.budget_points), np.arange(self.count), side="right")
        identity = {
            "campaign": self.trial.campaign,
            "trial_id": self.trial.trial_id,
            "dataset": self.trial.dataset.config_json,
            "seed": str(self.trial.seed),
        }
        return PoisonSet(
            X.astype(np.float64),
            y.astype(np.float64),
            step,
            checkpoint,
            len(self.batches),
            self.visible_digest,
            identity,
        )

    def _create(self, kind: str) -> Any:
        spec = getattr(self.trial, kind)
        self.stage = (kind, spec.name)
        return create_component(self.host, kind, spec.name, spec.params, self.trial.seed, self.trial.base_dir)

    def _run(self) -> None:
        t = self.trial
        ds = self._create("dataset")
        if not isinstance(ds, Dataset):
            raise ComponentError(
                f"dataset {t.dataset.name!r}: factory returned {type(ds).__name__}, expected poisonbench.dataset.Dataset"
            )
        self.dataset = private_copy(ds)  # what the harness measures with; plugins never see it
        self.visible_digest = ds.digest()
        self.base.update(n_train=ds.n_train)
        learner = self._create("learner")
        defence = self._create("defence")
        if callable(getattr(defence, "calibrate", None)):
            self.stage = ("defence", t.defence.name)
            defence.calibrate(learner, ds.X_train.copy(), ds.y_train.copy())
        attack = self._create("attack")
        self.stage = ("budgets", "")
        resolved = sorted(((resolve_budget(b, ds.n_train), i, b) for i, b in enumerate(t.budgets)))
        self.pending = [(i, b, n) for i, (n, _, b) in enumerate(resolved)]
        self.budget_points = [n for n, _, _ in resolved]
        self.stage = ("scenario", "")
        try:
            scenario = Scenario(
                ds,
                learner,
                defence,
                budget=resolved[-1][0],
                seed=t.seed,
                subpopulation=t.subpopulation,
                target=self.base["target"],
            )
        except KeyError as exc:
            raise ComponentError(f"dataset {t.dataset.name!r}: {exc.args[0]}") from None
        self.scenario, self.learner, self.defence = scenario, learner, defence
        self.sub_test = None if t.subpopulation is None else ds.subpopulation(t.subpopulation).test_idx
        self._checkpoints(reached=0)
        self.stage = ("attack", t.attack.name)
        stream: Iterator[Any] = iter(attack.poison(scenario))
        self._progress(force=True)
        while self.pending:
            self.stage = ("attack", t.attack.name)
            batch = next(stream, None)
            if batch is None:
                break
            self.step += 1
            self._accept(batch)
            self._progress()
            if t.record_every and self.step % t.record_every == 0:
                self._trace()
            self._checkpoints(reached=self.count)
        if self.pending:
            self._checkpoints(reached=self.count, stopped=True)

    def _progress(self, force: bool = False) -> None:
        """Report progress to ``on_progress``: when ``force``d, else at most every
        :data:`PROGRESS_SECONDS` (a clock read per batch in between)."""
        if self.on_progress is None:
            return
        now = time.perf_counter()
        if not force and now - self.reported_at < PROGRESS_SECONDS:
            return
        self.reported_at = now
        mld = finite_or_none(self.diagnostics.get("max_loss_diff"))
        self.on_progress(TrialProgress(self.step, self.count, self.scenario.budget, now - self.t0, mld))

    def _accept(self, batch: Any) -> None:
        name = self.trial.attack.name
        if not isinstance(batch, PoisonBatch):
            raise ComponentError(
                f"attack {name!r}: yielded {type(batch).__name__}, expected poisonbench.attack.PoisonBatch"
            )
        X, y, d = np.asarray(batch.X), np.asarray(batch.y), self.dataset.n_features
        if X.ndim != 2 or X.shape[1] != d or y.shape != (X.shape[0],):
            raise ComponentError(
                f"attack {name!r}: yielded poisons X{X.shape}, y{y.shape}; expected X (k, {d}), y (k,)"
            )
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise ComponentError(f"attack {name!r}: yielded non-finite poison values (NaN or inf)")
        if not np.isin(y, (-1.0, 1.0)).all():
            raise ComponentError(f"attack {name!r}: yielded labels {np.unique(y)[:5].tolist()}, expected -1 or +1")
        if self.count + len(y) > self.scenario.budget:
            raise ComponentError(
                f"attack {name!r}: exceeded the budget: {self.count + len(y)} poisons > {self.scenario.budget}"
            )
        exact = self.trial.feasibility == "exact"
        problem = self.dataset.feasible.violation(X, atol=self.trial.feasibility_tol, exact=exact)
        if problem is not None:
            raise ComponentError(f"attack {name!r}: {problem} (campaign feasibility = {self.trial.feasibility!r})")
        if not isinstance(batch.diagnostics, dict):
            raise ComponentError(f"attack {name!r}: diagnostics must be a dict, got {type(batch.diagnostics).__name__}")
        self.batches.append(batch)
        self.count += len(y)
        self.diagnostics.update(batch.diagnostics)
        if batch.diagnostics:
            self.diagnostics_count = self.count

    def _poisons(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        d = self.dataset.n_features
        X = np.concatenate([b.X for b in self.batches] + [np.empty((0, d))])[:n]
        y = np.concatenate([b.y for b in self.batches] + [np.empty(0)])[:n]
        return X, y

    def _checkpoints(self, reached: int, stopped: bool = False) -> None:
        fitted: dict[int, dict[str, Any]] = {}
        while self.pending and (stopped or self.pending[0][2] <= reached):
            index, spec, budget = self.pending[0]
            n = min(budget, reached)
            if n not in fitted:
                fitted[n] = self._evaluate(n)
            self.rows.append(
                {
                    **self.base,
                    **fitted[n],
                    "kind": "checkpoint",
                    "checkpoint": index,
                    "step": self.step,
                    "status": "ok",
                    "budget_spec": budget_spec(spec),
                    "budget": budget,
                    "stopped_early": n < budget,
                    "wall_seconds": time.perf_counter() - self.t0,
                }
            )
            self.pending.pop(0)

    def _evaluate(self, n: int) -> dict[str, Any]:
        ds = self.dataset
        if self.scenario.dataset.digest() != self.visible_digest:
            raise ComponentError(
                f"attack {self.trial.attack.name!r}: modified the scenario's dataset or feasible set "
                f"(its arrays were unlocked and written); the rows of a tampering attack are not trusted"
            )
        Xp, yp = self._poisons(n)
        self.stage = ("defence", self.trial.defence.name)
        fit = self.defence.fit(
            self.learner,
            np.vstack([ds.X_train, Xp]),
            np.concatenate([ds.y_train, yp]),
            X_val=ds.X_val,
            y_val=ds.y_val,
        )
        hyper = dict(getattr(fit, "hyperparameters", {}) or {})
        model = fit.model
        self.stage = ("learner", self.trial.learner.name)
        require_certified(
            model, f"learner {self.trial.learner.name!r} (defence {self.trial.defence.name!r}, {n} poisons)"
        )
        gap, converged = fit_certificate(model)
        gap = finite_or_none(gap)
        removed = removed_counts(getattr(fit, "kept", None), len(ds.y_train), n, f"defence {self.trial.defence.name!r}")
        sub_acc = None
        if self.sub_test is not None:
            sub_acc = measured_accuracy(model, ds.X_test[self.sub_test], ds.y_test[self.sub_test], self.trial)
        return {
            "n_poisons": n,
            "poison_fraction": n / ds.n_train,
            "test_accuracy": finite_or_none(measured_accuracy(model, ds.X_test, ds.y_test, self.trial)),
            "subpop_accuracy": finite_or_none(sub_acc),
            "lambda": finite_or_none(hyper.get("lambda")),
            "n_removed": removed[0],
            "n_removed_poisons": removed[1],
            "n_removed_clean": removed[2],
            **clean_measures(self.learner, model, ds.X_train, ds.y_train, hyper),
            "fit_gap": gap,
            "fit_converged": converged,
            "hyperparameters": to_json(hyper),
            **self._diagnostic_columns(n),
        }

    def _diagnostic_columns(self, n: int | None = None) -> dict[str, Any]:
        """The attack's latest diagnostics; the diagnostic columns only when they describe the
        model with exactly ``n`` poisons (a batch that overshot a checkpoint describes another)."""
        same_model = n is None or self.diagnostics_count == n
        out: dict[str, Any] = {
            k: finite_or_none(self.diagnostics.get(k)) if same_model else None for k in DIAGNOSTIC_COLUMNS
        }
        out["diagnostics"] = to_json(jsonable(self.diagnostics))
        out["diagnostics_n_poisons"] = self.diagnostics_count
        return out

    def _trace(self) -> None:
        """A trace row: the attack's diagnostics after this step, no refit. The measured columns
        (``test_accuracy``, ``subpop_accuracy``, ``lambda``) stay null: the attack's own estimates
        of them are in ``diagnostics`` (metric ``attack.test_accuracy``, …), never in a column
        that means "the harness measured this"."""
        self.rows.append(
            {
                **self.base,
                **self._diagnostic_columns(),
                "kind": "trace",
                "checkpoint": -1,
                "step": self.step,
                "status": "ok",
                "n_poisons": self.count,
                "poison_fraction": self.count / self.dataset.n_train,
                "wall_seconds": time.perf_counter() - self.t0,
            }
        )

    def _culprit(self, exc: BaseException) -> tuple[str, str]:
        """The component whose code raised: the innermost traceback frame in one of the four
        components' modules (a learner failing inside a defence's fit is the learner's error),
        else the stage the trial was in."""
        modules: dict[str, list[tuple[str, str]]] = {}
        for kind, component in _trial_components(self.trial, self.host).items():
            module = getattr(component.factory, "__module__", None) if component is not None else None
            if module is not None:
                modules.setdefault(module, []).append((kind, getattr(self.trial, kind).name))
        for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
            found = modules.get(frame.f_globals.get("__name__", ""))
            if found:
                return self.stage if self.stage in found else found[0]
        return self.stage

    def _fail(self, exc: BaseException) -> None:
        kind, name = self._culprit(exc)
        if isinstance(exc, ComponentError):
            error = str(exc)
        else:
            who = f"{kind} {name!r}" if name else kind
            error = f"{who}: {type(exc).__name__}: {exc}"
        error = " ".join(error.split())
        tb = traceback.format_exc()
        for row in self.rows:
            row.update(status="failed", error=error)
        index, spec, budget = self.pending[0] if self.pending else (0, None, None)
        self.rows.append(
            {
                **self.base,
                **self._diagnostic_columns(),
                "kind": "checkpoint",
                "checkpoint": index,
                "step": self.step,
                "status": "failed",
                "error": error,
                "traceback": tb,
                "n_poisons": self.count,
                "budget_spec": None if spec is None else budget_spec(spec),
                "budget": budget,
                "wall_seconds": time.perf_counter() - self.t0,
            }
        )
