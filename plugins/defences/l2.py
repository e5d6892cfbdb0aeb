"""Built-in defences ``fixed-l2``, ``cv-l2`` and ``learned-l2``: choose the L2 strength λ (RMD paper eq. 6).

Every defence works in the paper's parametrisation: the learner minimises
``Σ_i s_i l_i + (e^λ/2)‖w‖²`` (``L`` summed, eq. 6). It wraps any learner with an L2 strength:

- **torch learners** (``torch-logistic``, ``torch-mlp``: they have ``with_lambda``) take λ as is,
  one per layer for the MLP.
- **convex learners** (``svm``, ``logistic``: ``J = (1/N)Σ s_i l_i + C_R R(θ)``, ``N = Σ s_i``)
  get ``C_R = e^λ / N``, which makes ``N·J`` equal eq. 6 — except that these learners also
  penalise the bias when ``regularise_bias`` (their default, as liblinear): then the penalty is
  ``(e^λ/2)(‖w‖² + b²)``. ``N`` is the total weight of the (possibly poisoned) training set at
  fit time, so a fixed λ means a fixed penalty against the summed loss, whatever ``N``.

``DefendedFit.hyperparameters`` holds ``"lambda"`` (the mean over layers for the MLP, each layer
as ``"lambda_<k>"`` too) and ``"C_R"`` for convex learners.

- ``fixed-l2``: λ given.
- ``cv-l2``: λ on a grid minimising the k-fold cross-validated loss on the training data itself
  (poisons included: the defender cannot tell them apart; ``λ_CLEAN`` of the paper when the data
  are clean). A scalar λ shared by every layer for the MLP.
- ``learned-l2``: λ minimising the loss on the trusted validation set (eq. 1) by projected
  hypergradient descent, eq. 5: ``λ ← Π(λ − β ∇_λ A)``, with β grown ×1.5 after each accepted
  step and halved (step rejected) whenever ``A`` would rise (the paper uses a fixed β). Hypergradient: reverse mode through the T training steps (Algorithm 2) for torch
  learners; the exact implicit one (eq. 4) for smooth convex learners (``logistic``), with
  ``∇²J v`` by central differences of the learner's own gradient and conjugate gradient. The
  hinge loss has no Hessian, so for ``svm`` (``method="auto"``) the λ is found by a 1-D search
  on the validation loss instead — a 9-point grid over the bounds, then bounded Brent between the
  best point's neighbours; that is not hypergradient descent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.sparse.linalg import LinearOperator, cg

from poisonbench import Param, hookimpl
from poisonbench.capabilities import LinearModelLearner, has, require
from poisonbench.defence import DefendedFit
from poisonbench.learner import Learner, Model, require_certified
from poisonbench.params import declare
from poisonbench.plugins.l2_strength import LOG_200, hyperparameters, is_lambda_native, lambda_of, with_lambda
from poisonbench.validation import check_binary_labels, check_matrix, check_weights

SMOOTH_LOSSES = ("logistic",)
SEARCH_GRID = 9  # coarse grid before the bounded Brent search (the validation loss need not be unimodal)


def _check_data(X: Any, y: Any, sample_weight: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = check_matrix(X, "X")
    if X.shape[0] == 0:
        raise ValueError("X: expected at least one training point, got 0 rows")
    return X, check_binary_labels(y, "y", X.shape[0]), check_weights(sample_weight, X.shape[0])


def _check_bounds(lam_min: float, lam_max: float) -> tuple[float, float]:
    lo, hi = float(lam_min), float(lam_max)
    if not lo < hi:
        raise ValueError(f"λ bounds: expected finite lam_min < lam_max, got [{lam_min}, {lam_max}]")
    return lo, hi


def _check_lam(lam: Any) -> None:
    arr = np.asarray(lam, dtype=np.float64)
    if arr.ndim > 1 or arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"expected a finite number (or one per layer), got {lam!r}")


LAMBDA_BOUNDS = {
    "lam_min": Param(float, "lower bound of λ"),
    "lam_max": Param(float, "upper bound of λ (paper: log 200)"),
}


@declare({"lam": Param((float, list), "λ (one, or one per layer for a network)", check=_check_lam)})
class FixedL2:
    """Fixed L2 strength λ of eq. 6 (C_R = e^λ / N for the convex learners)."""

    name = "fixed-l2"

    def __init__(self, lam: Any = 0.0):
        arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        self.lam = arr if arr.size > 1 else arr[:1]

    def fit(
        self,
        learner: Learner,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DefendedFit:
        X, y, s = _check_data(X, y, sample_weight)
        lam = self.lam if self.lam.size > 1 else float(self.lam[0])
        fitted = with_lambda(learner, lam, s.sum())
        return DefendedFit(fitted.fit(X, y, s), hyperparameters(learner, lambda_of(fitted, s.sum()), s.sum()))


@declare(
    {
        "folds": Param(int, "cross-validation folds", low=2),
        **LAMBDA_BOUNDS,
        "n_grid": Param(int, "λ grid points", low=2),
        "criterion": Param(str, "held-out loss or held-out error", choices=("loss", "error")),
        "seed": Param(int, "fold shuffling seed", low=0),
    }
)
class CrossValidatedL2:
    """L2 strength λ by k-fold cross-validation on the (possibly poisoned) training data (λ_CLEAN)."""

    name = "cv-l2"

    def __init__(
        self,
        folds: int = 5,
        lam_min: float = -8.0,
        lam_max: float = LOG_200,
        n_grid: int = 14,
        criterion: str = "loss",
        seed: int = 0,
    ):
        self.folds, self.n_grid, self.criterion, self.seed = int(folds), int(n_grid), criterion, int(seed)
        self.lam_min, self.lam_max = _check_bounds(lam_min, lam_max)

    @property
    def grid(self) -> np.ndarray:
        return np.linspace(self.lam_min, self.lam_max, self.n_grid)

    def scores(self, learner: Learner, X: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Held-out criterion per grid λ, averaged over folds (weighted by ``s``); a fold fit that
        reports no certificate raises."""
        from sklearn.model_selection import StratifiedKFold

        counts = [int((y == c).sum()) for c in (-1.0, 1.0)]
        if min(counts) < self.folds:
            raise ValueError(f"cv-l2: each class needs at least folds={self.folds} points, got {counts}")
        splitter = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        out = np.zeros(self.n_grid)
        for tr, te in splitter.split(X, y):
            for i, lam in enumerate(self.grid):
                model = with_lambda(learner, lam, s[tr].sum()).fit(X[tr], y[tr], s[tr])
                require_certified(model, f"cv-l2: the fold fit at λ = {lam:.6g}")
                if self.criterion == "loss":
                    per_point = learner.loss(model, X[te], y[te])
                else:
                    per_point = (model.predict(X[te]) != y[te]).astype(float)
                out[i] += (s[te] @ per_point) / s[te].sum() / self.folds
        return out

    def fit(
        self,
        learner: Learner,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DefendedFit:
        X, y, s = _check_data(X, y, sample_weight)
        scores = self.scores(learner, X, y, s)
        lam = float(self.grid[int(np.argmin(scores))])
        hp = hyperparameters(learner, np.full(lambda_of(learner, s.sum()).size, lam), s.sum())
        hp["cv_" + self.criterion] = float(scores.min())
        return DefendedFit(with_lambda(learner, lam, s.sum()).fit(X, y, s), hp)


@declare(
    {
        "lam0": Param(float, "initial λ"),
        **LAMBDA_BOUNDS,
        "step": Param(float, "initial hypergradient step size β", low=0, low_open=True),
        "iterations": Param(int, "hypergradient steps at most", low=1),
        "tol": Param(float, "stop when |Δλ| < tol", low=0, low_open=True),
        "method": Param(
            str,
            "hypergradient, 1-D search, or auto (search for the hinge loss)",
            choices=("auto", "hypergradient", "search"),
        ),
    }
)
class LearnedL2:
    """L2 strength λ learned by hypergradient descent on the trusted validation loss (RMD paper eq. 1, 5)."""

    name = "learned-l2"

    def __init__(
        self,
        lam0: float = 0.0,
        lam_min: float = -8.0,
        lam_max: float = LOG_200,
        step: float = 1.0,
        iterations: int = 50,
        tol: float = 1e-4,
        method: str = "auto",
    ):
        self.lam_min, self.lam_max = _check_bounds(lam_min, lam_max)
        self.lam0 = float(np.clip(lam0, self.lam_min, self.lam_max))
        self.step, self.iterations, self.tol, self.method = float(step), int(iterations), float(tol), method

    def fit(
        self,
        learner: Learner,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DefendedFit:
        X, y, s = _check_data(X, y, sample_weight)
        if X_val is None or y_val is None or len(y_val) == 0:
            raise ValueError("learned-l2: needs a trusted validation set (the dataset's X_val, y_val); got none")
        X_val = check_matrix(X_val, "X_val", X.shape[1])
        y_val = check_binary_labels(y_val, "y_val", X_val.shape[0])
        method = self.method
        if method == "auto":
            smooth = has(learner, LinearModelLearner) and learner.loss_kind in SMOOTH_LOSSES
            method = "hypergradient" if is_lambda_native(learner) or smooth else "search"
        if method == "search":
            if is_lambda_native(learner) and np.size(learner.lam) > 1:
                raise ValueError("learned-l2: method='search' is 1-D; use 'hypergradient' for per-layer λ")
            lam, A, its = self._search(learner, X, y, s, X_val, y_val)
        elif is_lambda_native(learner):
            lam, A, its = self._descend(self._rmd_oracle(learner, X, y, s, X_val, y_val), np.size(learner.lam))
        else:
            require(learner, LinearModelLearner, "learned-l2 (implicit hypergradient)", SMOOTH_LOSSES)
            lam, A, its = self._descend(self._implicit_oracle(learner, X, y, s, X_val, y_val), 1)
        hp = hyperparameters(learner, lam, s.sum())
        hp.update(validation_loss=float(A), iterations=float(its))
        fitted = with_lambda(learner, lam if lam.size > 1 else float(lam[0]), s.sum())
        return DefendedFit(fitted.fit(X, y, s), hp)

    def _descend(self, oracle: Any, n_lambda: int) -> tuple[np.ndarray, float, int]:
        """Projected descent ``λ ← Π(λ − β g)`` (eq. 5) with a "bold driver" step: β × 1.5 after an
        accepted step, × 0.5 (step rejected) when ``A`` would rise; stops when ``|Δλ| < tol``."""
        lam = np.full(n_lambda, self.lam0)
        A, g = oracle(lam)
        beta, it = self.step, 0
        for it in range(1, self.iterations + 1):  # noqa: B007 - the count is returned
            new = np.clip(lam - beta * g, self.lam_min, self.lam_max)
            if np.max(np.abs(new - lam)) < self.tol:
                break
            A_new, g_new = oracle(new)
            if A_new > A:
                beta *= 0.5
                continue
            lam, A, g = new, A_new, g_new
            beta *= 1.5
        return lam, A, it

    def _search(self, learner: Learner, X, y, s, X_val, y_val) -> tuple[np.ndarray, float, int]:
        """A grid of ``SEARCH_GRID`` λ's, then Brent's method between the best one's neighbours,
        each evaluation a cold fit (a fit warm-started from the previous λ's was slower:
        ``benchmarks/bench_learned_l2.py``). A fit that reports no certificate
        (``converged = False``) raises: its validation loss is not A(λ)."""

        def A(lam: float) -> float:
            model = with_lambda(learner, lam, s.sum()).fit(X, y, s)
            require_certified(model, f"learned-l2: the search's fit at λ = {lam:.6g}")
            return float(np.mean(learner.loss(model, X_val, y_val)))

        grid = np.linspace(self.lam_min, self.lam_max, SEARCH_GRID)
        values = [A(lam) for lam in grid]
        i = int(np.argmin(values))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, SEARCH_GRID - 1)]
        res = minimize_scalar(
            A, bounds=(lo, hi), method="bounded", options={"xatol": self.tol, "maxiter": self.iterations}
        )
        if res.fun > values[i]:
            return np.array([grid[i]]), float(values[i]), SEARCH_GRID + int(res.nfev)
        return np.array([res.x]), float(res.fun), SEARCH_GRID + int(res.nfev)

    def _rmd_oracle(self, learner: Any, X, y, s, X_val, y_val) -> Any:
        """``λ ↦ (A(w_T), ∇_λ A)`` by reverse mode through the learner's T GD steps (Algorithm 2)."""
        from poisonbench.plugins.bilevel.hypergrad import rmd
        from poisonbench.plugins.bilevel.inner import InnerProblem

        device, dtype = learner.torch_setup()
        arch = learner.architecture(X.shape[1])
        problem = InnerProblem.from_numpy(
            arch, X, y, X_val, y_val, s_tr=s, lr=learner.lr, steps=learner.steps, device=device, dtype=dtype
        )
        w0 = arch.init(dtype, device, learner.seed)
        X_p = problem.tensor(np.zeros((0, X.shape[1])))

        def oracle(lam: np.ndarray) -> tuple[float, np.ndarray]:
            out = rmd(problem, w0, X_p, problem.tensor(lam), wrt=("lam",))
            n_val = len(y_val)  # report the mean validation loss (the problem's A is summed)
            return out.value / n_val, out.lam.detach().cpu().numpy().astype(np.float64) / n_val

        return oracle

    def _implicit_oracle(self, learner: Learner, X, y, s, X_val, y_val) -> Any:
        """``λ ↦ (A(θ*), ∇_λ A)`` by eq. 4 for a convex learner: ``−(C_R ∇R(θ*))ᵀ (∇²J)⁻¹ ∇A(θ*)``
        (``∂_λ ∇J = C_R ∇R`` since ``C_R = e^λ/N``); ``∇²J v`` by central differences of ``∇J``."""
        N = s.sum()
        state: dict[str, Model | None] = {"model": None}

        def oracle(lam: np.ndarray) -> tuple[float, np.ndarray]:
            lrn = with_lambda(learner, float(lam[0]), N)
            model = require_certified(
                lrn.fit(X, y, s, warm_start=state["model"]), f"learned-l2: the fit at λ = {float(lam[0]):.6g}"
            )
            state["model"] = model
            theta = model.theta

            def grad_J(t: np.ndarray) -> np.ndarray:
                m = Model.from_theta(t)
                return (s @ lrn.loss_grad(m, X, y)) / N + lrn.C_R * lrn.regulariser_grad(m)

            def hvp(v: np.ndarray) -> np.ndarray:
                nv = float(np.linalg.norm(v))
                if nv == 0.0:
                    return np.zeros_like(v)
                eps = 1e-5 * max(1.0, float(np.linalg.norm(theta)))
                u = v / nv
                return nv * (grad_J(theta + eps * u) - grad_J(theta - eps * u)) / (2 * eps)

            dA = lrn.loss_grad(model, X_val, y_val).mean(axis=0)
            op = LinearOperator((theta.size, theta.size), matvec=hvp, dtype=np.float64)
            v, _info = cg(op, dA, rtol=1e-10, atol=0.0, maxiter=10 * theta.size)
            g = -float(lrn.C_R * lrn.regulariser_grad(model) @ v)
            return float(np.mean(lrn.loss(model, X_val, y_val))), np.array([g])

        return oracle


@hookimpl
def register_defences(register):
    register(FixedL2)
    register(CrossValidatedL2)
    register(LearnedL2)
