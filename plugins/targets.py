"""Target models θ_p for model-targeted attacks (MTP, KKT): ``make_target(spec, scenario)``.

Specs
-----
``"error:<rate>"``
    Koh et al. (2018) label-flip heuristic, as in the MTP reference code: for each loss
    quantile q and repeat count r, take the points whose margin under the clean model is at
    most the q-quantile, flip their labels, add them with weight r (= r copies), retrain;
    keep, among the models whose test error exceeds ``rate``, the one with the lowest
    regularised loss on the clean training set (MTP Theorem 1: a lower clean loss needs
    fewer poisons).
``"error:<rate>:improved"``
    MTP appendix D.3: the same grid, but the margins are recomputed from the latest poisoned
    model after every fit (adaptive), which finds targets of lower clean loss.
``"subpop"``
    0 % accuracy on ``scenario.subpopulation``: the same heuristic restricted to the
    subpopulation's points (reference grids q ∈ {0.3 … 1.0}, r ∈ {1 … 100}); keep the model with
    0 % accuracy on the subpopulation's test points and the lowest clean loss.
``"file:<path.npz>"``
    A user's θ_p: arrays ``w`` (d,) and ``b`` (scalar).

The reference code flips *test* points (``flip_source="test"``, the default here, to reproduce
the paper); ``flip_source="train"`` flips training points instead. Generated targets are cached
as NPZ (never pickle) under ``$POISONBENCH_CACHE`` (default ``~/.cache/poisonbench``)/targets,
keyed by a hash of the data, the dataset provenance, the learner, the spec, the grids and the
seed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poisonbench.attack import Scenario
from poisonbench.learner import Model, require_certified

#: Grids of the reference code (generate_target_theta.py) for indiscriminate targets.
ERROR_QUANTILES = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)
ERROR_REPEATS = (1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 50, 60)
#: ... and for subpopulation targets.
SUBPOP_QUANTILES = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.80, 1.0)
SUBPOP_REPEATS = (1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 80, 100)
CACHE_ENV = "POISONBENCH_CACHE"
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """``$POISONBENCH_CACHE`` or ``~/.cache/poisonbench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "poisonbench")


def make_target(
    spec: str,
    scenario: Scenario,
    *,
    quantiles: Sequence[float] | None = None,
    repeats: Sequence[int] | None = None,
    flip_source: str = "test",
    cache: bool = True,
) -> Model:
    """The target model named by ``spec`` (module doc) for ``scenario``'s data and learner.

    ``quantiles`` / ``repeats`` replace the reference grids (smaller grids in tests)."""
    parse_spec(spec)
    if spec.startswith("file:"):
        return load_target(spec[len("file:") :], scenario.dataset.n_features)
    if flip_source not in ("test", "train"):
        raise ValueError(f"flip_source: expected 'test' or 'train', got {flip_source!r}")
    kind, rate, improved = _parse(spec, scenario)
    if kind == "subpop":
        q = tuple(SUBPOP_QUANTILES if quantiles is None else quantiles)
        r = tuple(SUBPOP_REPEATS if repeats is None else repeats)
    else:
        q = tuple(ERROR_QUANTILES if quantiles is None else quantiles)
        r = tuple(ERROR_REPEATS if repeats is None else repeats)
    _check_grid(q, r)
    path = cache_dir() / "targets" / f"{_cache_key(spec, scenario, q, r, flip_source)}.npz"
    if cache and path.exists():
        return load_target(path, scenario.dataset.n_features, cached=True)
    if kind == "subpop":
        model = subpop_target(scenario, q, r, flip_source)
    else:
        model = error_target(scenario, rate, q, r, improved, flip_source)
    if cache:
        save_target(path, model)
    return model


def parse_spec(spec: str) -> tuple[str, float, bool]:
    """``(kind, rate, improved)`` of a spec: ``("file", nan, False)``, ``("subpop", 1, False)`` or
    ``("error", rate, improved)``; ``ValueError`` for anything else (checked at ``--dry-run``)."""
    if not isinstance(spec, str):
        raise ValueError(f"target spec: expected a string, got {type(spec).__name__}")
    if spec.startswith("file:") and len(spec) > len("file:"):
        return "file", float("nan"), False
    parts = spec.split(":")
    if parts == ["subpop"]:
        return "subpop", 1.0, False
    if parts[0] == "error" and len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "improved"):
        try:
            rate = float(parts[1])
        except ValueError:
            rate = float("nan")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"target {spec!r}: expected an error rate in [0, 1), got {parts[1]!r}")
        return "error", rate, len(parts) == 3
    raise ValueError(
        f"target spec {spec!r} not understood; expected 'subpop', 'error:<rate>', 'error:<rate>:improved' "
        "or 'file:<path.npz>'"
    )


def _parse(spec: str, scenario: Scenario) -> tuple[str, float, bool]:
    kind, rate, improved = parse_spec(spec)
    if kind == "subpop" and scenario.subpopulation is None:
        raise ValueError("target 'subpop': the scenario names no subpopulation; set scenario.subpopulation")
    return kind, rate, improved


def check_grid(values: Sequence[float] | None, integer: bool = False) -> None:
    """A target grid: None (the reference grid), or a non-empty list of quantiles in (0, 1] or
    (``integer``) of positive repeat counts."""
    if values is None:
        return
    if integer:
        _check_grid([1.0], values)
    else:
        _check_grid(values, [1])


def _check_grid(quantiles: Sequence[float], repeats: Sequence[int]) -> None:
    if not isinstance(quantiles, (list, tuple)) or not isinstance(repeats, (list, tuple)):
        raise ValueError(f"grid: expected a list, got {quantiles!r} / {repeats!r}")
    if not quantiles or any(not 0.0 < q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles: expected a non-empty list of values in (0, 1], got {list(quantiles)}")
    if not repeats or any(int(r) != r or r < 1 for r in repeats):
        raise ValueError(f"repeats: expected a non-empty list of positive integers, got {list(repeats)}")


def _flip_grid(
    scenario: Scenario,
    X_s: np.ndarray,
    y_s: np.ndarray,
    quantiles: Sequence[float],
    repeats: Sequence[int],
    adaptive: bool,
) -> list[tuple[Model, float, int, int]]:
    """Fit the label-flip grid (quantile outer, repeat inner, as the reference); returns
    (model, quantile, repeat, number of flipped points) per grid cell."""
    data, learner = scenario.dataset, scenario.learner
    X_c, y_c = data.X_train, data.y_train
    clean = require_certified(learner.fit(X_c, y_c), f"target: learner {learner.name!r} on the clean data")
    margins = y_s * clean.decision_function(X_s)
    out = []
    for q in quantiles:
        for r in repeats:
            sel = margins <= np.quantile(margins, q)
            X = np.vstack([X_c, X_s[sel]])
            y = np.concatenate([y_c, -y_s[sel]])
            w = np.concatenate([np.ones(len(y_c)), np.full(int(sel.sum()), float(r))])
            model = learner.fit(X, y, sample_weight=w, warm_start=clean)
            require_certified(model, f"target: learner {learner.name!r} at quantile {q}, repeat {r}")
            out.append((model, float(q), int(r), int(sel.sum())))
            if adaptive:
                margins = y_s * model.decision_function(X_s)
    return out


def _describe(model: Model, scenario: Scenario, **info: Any) -> Model:
    data = scenario.dataset
    info = dict(
        info,
        clean_objective=scenario.learner.objective(model, data.X_train, data.y_train),
        test_accuracy=model.accuracy(data.X_test, data.y_test),
    )
    return Model(model.w, model.b, info=info)


def error_target(
    scenario: Scenario,
    rate: float,
    quantiles: Sequence[float] = ERROR_QUANTILES,
    repeats: Sequence[int] = ERROR_REPEATS,
    improved: bool = False,
    flip_source: str = "test",
) -> Model:
    """Indiscriminate target of test error > ``rate`` (Koh et al.; ``improved``: MTP D.3)."""
    data, learner = scenario.dataset, scenario.learner
    X_s, y_s = (data.X_test, data.y_test) if flip_source == "test" else (data.X_train, data.y_train)
    best, best_loss, best_err = None, np.inf, 0.0
    for model, q, r, n in _flip_grid(scenario, X_s, y_s, quantiles, repeats, improved):
        err = 1.0 - model.accuracy(data.X_test, data.y_test)
        best_err = max(best_err, err)
        loss = learner.objective(model, data.X_train, data.y_train)
        if err > rate and loss < best_loss:
            best, best_loss, best_info = model, loss, dict(quantile=q, repeat=r, n_flipped=n)
    if best is None:
        raise ValueError(
            f"target error:{rate}: no model of the grid has test error above {rate} (largest {best_err:.3f}); "
            "use larger quantiles or repeats"
        )
    spec = f"error:{rate}" + (":improved" if improved else "")
    return _describe(best, scenario, spec=spec, **best_info)


def subpop_target(
    scenario: Scenario,
    quantiles: Sequence[float] = SUBPOP_QUANTILES,
    repeats: Sequence[int] = SUBPOP_REPEATS,
    flip_source: str = "test",
) -> Model:
    """Target with 0 % accuracy on the subpopulation's test points and the lowest clean loss."""
    data, learner = scenario.dataset, scenario.learner
    if scenario.subpopulation is None:
        raise ValueError("subpop target: the scenario names no subpopulation")
    sub = data.subpopulation(scenario.subpopulation)
    idx = sub.test_idx if flip_source == "test" else sub.train_idx
    X_all, y_all = (data.X_test, data.y_test) if flip_source == "test" else (data.X_train, data.y_train)
    if idx.size == 0:
        raise ValueError(f"subpop target: subpopulation {sub.name!r} has no {flip_source} points to flip")
    X_sub_te, y_sub_te = data.X_test[sub.test_idx], data.y_test[sub.test_idx]
    best, best_loss, lowest = None, np.inf, 1.0
    for model, q, r, n in _flip_grid(scenario, X_all[idx], y_all[idx], quantiles, repeats, adaptive=False):
        acc = model.accuracy(X_sub_te, y_sub_te)
        lowest = min(lowest, acc)
        loss = learner.objective(model, data.X_train, data.y_train)
        if acc <= 0.0 and loss < best_loss:
            best, best_loss, best_info = model, loss, dict(quantile=q, repeat=r, n_flipped=n)
    if best is None:
        raise ValueError(
            f"subpop target: no model of the grid reaches 0 % accuracy on {sub.name!r} (lowest {lowest:.3f}); "
            "use larger repeats"
        )
    return _describe(best, scenario, spec="subpop", subpopulation=sub.name, **best_info)


def load_target(path: str | os.PathLike, n_features: int, cached: bool = False) -> Model:
    """θ_p from an NPZ file with arrays ``w`` (n_features,) and ``b`` (a scalar)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"target file {str(path)!r} does not exist; expected an NPZ with arrays w and b")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files if k in ("w", "b", "info")}
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"target file {str(path)!r}: not a readable NPZ of plain arrays (no pickle) ({exc})") from None
    missing = {"w", "b"} - set(arrays)
    if missing:
        raise ValueError(f"target file {str(path)!r}: missing array(s) {sorted(missing)}; expected w and b")
    w, b = np.asarray(arrays["w"], dtype=np.float64), np.asarray(arrays["b"], dtype=np.float64)
    info = json.loads(str(arrays["info"])) if "info" in arrays else {}
    if w.shape != (n_features,):
        raise ValueError(f"target file {str(path)!r}: w has shape {w.shape}, expected ({n_features},)")
    if b.size != 1:
        raise ValueError(f"target file {str(path)!r}: b has shape {b.shape}, expected a scalar")
    info.update(source=str(path), cached=cached)
    return Model(w, float(b.reshape(-1)[0]), info=info)


def save_target(path: str | os.PathLike, model: Model) -> None:
    """Write ``w``, ``b`` and ``info`` (JSON text) as NPZ, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = json.dumps(model.info, sort_keys=True, default=str)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, w=model.w, b=np.float64(model.b), info=np.str_(info))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _code_fingerprint(learner: Any) -> str:
    """Hash of the source that makes a target (this module and the learner's package), so a
    cached target is never reused once the code that produced it has changed."""
    files = {Path(__file__)}
    source = inspect.getsourcefile(type(learner))
    if source is not None:
        files |= set(Path(source).parent.glob("*.py"))
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.read_bytes())
    return h.hexdigest()


def _cache_key(
    spec: str, scenario: Scenario, quantiles: Sequence[float], repeats: Sequence[int], flip_source: str
) -> str:
    data, learner = scenario.dataset, scenario.learner
    h = hashlib.sha256()
    for arr in (data.X_train, data.y_train, data.X_test, data.y_test):
        h.update(np.ascontiguousarray(arr).tobytes())
    sub = data.subpopulations.get(scenario.subpopulation) if scenario.subpopulation else None
    if sub is not None:
        h.update(sub.train_idx.tobytes() + b"|" + sub.test_idx.tobytes())
    meta = {
        "version": _CACHE_VERSION,
        "code": _code_fingerprint(learner),
        "spec": spec,
        "seed": scenario.seed,
        "subpopulation": scenario.subpopulation,
        "provenance": data.provenance,
        "learner": {
            "name": learner.name,
            "C_R": learner.C_R,
            "regularise_bias": learner.regularise_bias,
            "repr": repr(learner),
        },
        "quantiles": [float(q) for q in quantiles],
        "repeats": [int(r) for r in repeats],
        "flip_source": flip_source,
    }
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]
