"""Built-in attack ``rmd``: the bilevel poisoning attack of Carnerero-Cano et al. (RMD paper, Algorithm 1).

The attacker solves eq. 3, ``min_Λ max_{X_p} A(w_T)`` with ``A`` the summed validation loss and
``w_T`` the result of T gradient-descent steps on ``Σ l_i + Σ_k (e^{λ_k}/2)‖W_k‖²`` over the
clean training data plus the poisons (eq. 6; :mod:`poisonbench.plugins.bilevel.inner`). Per batch of
poisons (Algorithm 1 with ``initXp`` of appendix B)::

    X_p ← validation points (sampled without replacement), labels flipped and kept fixed,
          projected onto the feasible box
    repeat hyperiterations times:
        X_p ← Π_box(X_p + α ∇_{X_p} A)          (reverse mode through the T steps, Algorithm 2)
        Λ   ← Π_[lam_min, lam_max](Λ − β ∇_Λ Ā)  (skipped when learn_lambda = false)

**The scale of β.** ``A`` is the summed validation loss and ``Ā = A / n_val`` its mean
(``beta_scale = "mean"``, the default): eq. 5 does not say which, but only the mean lets the
paper's Table 2 setting β = 0.99 work. With the sum, each λ step is n_val (256) times larger: λ
climbs to its upper bound log 200 within three steps, the next gradient throws it to −8, where
∂A/∂λ ∝ e^λ ≈ 0 holds it (measured; ``beta_scale = "sum"`` keeps that behaviour). The poison
step α stays on the summed scale, where the paper's α = 0.99 moves MNIST pixels visibly
(module :mod:`poisonbench.plugins.bilevel.inner`).

Batches are cumulative: earlier poisons stay fixed in the training set and Λ carries over.
Before the first batch, ``clean_iterations`` descent steps on Λ with no poison give the
defender's clean λ (T_λ in Table 2); that state is yielded as an empty batch. With
``learn_lambda = false`` Λ stays at ``lam0`` throughout: the fixed-λ attack the paper criticises.

Deviations from the paper: poisons are *added* to the training set (the harness measures
``|D_p| / (|D_tr| + |D_p|)``) rather than substituted for clean points; the feasible set is
used as a box only (integer and one-hot constraints are not enforced). For the MLP, a fresh
random ``w⁽⁰⁾`` is drawn for every hypergradient when ``resample_w0`` (paper §5.2).

Works against ``torch-logistic``, ``torch-mlp`` (architecture, T and η from the learner) and the
convex ``logistic`` learner (a logistic surrogate trained by T = ``inner_steps`` GD steps with
η = ``inner_lr``, starting from ``λ = log(C_R · N)``; its bias penalty is not modelled).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from poisonbench import Param, hookimpl
from poisonbench.attack import PoisonBatch, Scenario
from poisonbench.capabilities import CapabilityError, LinearModelLearner, has
from poisonbench.params import declare
from poisonbench.plugins.l2_strength import LOG_200, is_lambda_native, lambda_of


@declare(
    {
        "batch_size": Param(int, "poisons optimised together per batch", low=1),
        "n_batches": Param(int, "batches to craft (default: until the budget)", low=1, optional=True),
        "learn_lambda": Param(bool, "the defender learns λ on validation data between batches (Alg. 1)"),
        "lam0": Param(
            (float, list), "initial λ (one, or one per layer); default: the defence's or learner's", optional=True
        ),
        "lam_min": Param(float, "lower bound of λ"),
        "lam_max": Param(float, "upper bound of λ (paper: log 200)"),
        "hyperiterations": Param(int, "hypergradient steps on each batch's poisons", low=1),
        "clean_iterations": Param(int, "λ steps on the clean data before the first batch", low=0),
        "alpha": Param(float, "poison step size α (eq. 3)", low=0, low_open=True),
        "beta": Param(float, "λ step size β (eq. 5)", low=0, low_open=True),
        "beta_scale": Param(
            str, "β multiplies the gradient of the mean (default) or summed validation loss", choices=("mean", "sum")
        ),
        "inner_steps": Param(int, "T, gradient steps of the surrogate (convex learners)", low=1),
        "inner_lr": Param(float, "η, step size of the surrogate (convex learners)", low=0, low_open=True),
        "resample_w0": Param(bool, "a new initialisation per hyperiteration (default: for networks)", optional=True),
        "device": Param(str, "torch device: auto, cpu, cuda, cuda:<k>"),
        "dtype": Param(str, "torch dtype", choices=("auto", "float32", "float64")),
    }
)
class RMDAttack:
    """Bilevel RMD attack (RMD paper Alg. 1): poisons by hypergradient ascent, λ by descent, batch by batch."""

    name = "rmd"
    needs_budget = False

    def __init__(
        self,
        batch_size: int = 10,
        n_batches: int | None = None,
        learn_lambda: bool = True,
        lam0: Any = None,
        lam_min: float = -8.0,
        lam_max: float = LOG_200,
        hyperiterations: int = 100,
        clean_iterations: int = 50,
        alpha: float = 0.99,
        beta: float = 0.99,
        beta_scale: str = "mean",
        inner_steps: int = 150,
        inner_lr: float = 0.1,
        resample_w0: bool | None = None,
        device: str = "auto",
        dtype: str = "auto",
    ):
        if not lam_min < lam_max:
            raise ValueError(f"λ bounds: expected lam_min < lam_max, got [{lam_min}, {lam_max}]")
        self.batch_size, self.n_batches = int(batch_size), None if n_batches is None else int(n_batches)
        self.learn_lambda, self.lam0 = bool(learn_lambda), lam0
        self.lam_min, self.lam_max = float(lam_min), float(lam_max)
        self.hyperiterations, self.clean_iterations = int(hyperiterations), int(clean_iterations)
        self.alpha, self.beta, self.beta_scale = float(alpha), float(beta), beta_scale
        self.inner_steps, self.inner_lr = int(inner_steps), float(inner_lr)
        self.resample_w0, self.device, self.dtype = resample_w0, device, dtype

    def _surrogate(self, scenario: Scenario) -> tuple[Any, int, float, int, np.ndarray]:
        """``(architecture, T, η, seed, λ0)`` of the model the attacker differentiates through."""
        from poisonbench.plugins.bilevel.inner import Architecture

        learner, d = scenario.learner, scenario.dataset.n_features
        n = scenario.dataset.n_train
        if is_lambda_native(learner):
            arch, T, eta, seed = learner.architecture(d), learner.steps, learner.lr, learner.seed
        elif has(learner, LinearModelLearner) and learner.loss_kind == "logistic":
            arch, T, eta, seed = Architecture.logistic(d), self.inner_steps, self.inner_lr, 0
        else:
            raise CapabilityError(
                f"rmd: learner {getattr(learner, 'name', learner)!r} is neither an UnrolledLearner nor a "
                f"LinearModelLearner with loss_kind 'logistic' (the attack differentiates through a smooth loss)"
            )
        if self.lam0 is not None:
            lam = np.atleast_1d(np.asarray(self.lam0, dtype=np.float64))
        elif hasattr(scenario.defence, "lam"):
            lam = np.atleast_1d(np.asarray(scenario.defence.lam, dtype=np.float64))
        else:
            lam = lambda_of(learner, n)
        if lam.size not in (1, arch.n_layers) or not np.isfinite(lam).all():
            raise ValueError(f"lam0: expected one value or {arch.n_layers} (one per layer), got {lam.tolist()}")
        lam = np.broadcast_to(lam, (arch.n_layers,)).astype(np.float64)
        if self.learn_lambda:
            lam = np.clip(lam, self.lam_min, self.lam_max)
        return arch, T, eta, seed, lam

    def poison(self, scenario: Scenario) -> Iterator[PoisonBatch]:
        """Yield the clean-λ state (an empty batch), then one optimised batch of poisons at a time."""
        from poisonbench.plugins.bilevel import require_torch, resolve_device, resolve_dtype
        from poisonbench.plugins.bilevel.hypergrad import rmd
        from poisonbench.plugins.bilevel.inner import InnerProblem, weight_norms

        torch = require_torch()
        ds = scenario.dataset
        if ds.X_val is None or len(ds.y_val) == 0:
            raise ValueError("rmd: the dataset needs a validation split (X_val, y_val): the attack maximises its loss")
        if scenario.budget is None and self.n_batches is None:
            raise ValueError("rmd: give scenario.budget or the attack's n_batches, else the attack never stops")
        arch, T, eta, seed, lam_np = self._surrogate(scenario)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        P = InnerProblem.from_numpy(
            arch, ds.X_train, ds.y_train, ds.X_val, ds.y_val, lr=eta, steps=T, device=device, dtype=dtype
        )
        lo, hi = P.tensor(scenario.feasible.lo), P.tensor(scenario.feasible.hi)
        lam = P.tensor(lam_np)
        resample = arch.n_layers > 1 if self.resample_w0 is None else bool(self.resample_w0)
        rng = scenario.rng(7)
        counter = [seed]

        def w0() -> list:
            if resample:
                counter[0] += 1
            return arch.init(dtype, device, counter[0])

        def descend_lambda(X_p: Any, lam: Any) -> Any:
            g = rmd(P, w0(), X_p, lam, wrt=("lam",)).lam
            if self.beta_scale == "mean":
                g = g / len(ds.y_val)
            return torch.clamp(lam - self.beta * g, self.lam_min, self.lam_max)

        def diagnostics(X_p: Any, lam: Any, started: float, iterations: int) -> dict[str, Any]:
            with torch.no_grad():
                params = P.train(arch.init(dtype, device, seed), X_p, lam)
                A = float(P.outer(params)) / len(ds.y_val)
                scores = arch.forward(params, P.tensor(ds.X_test))
                acc = float(((scores >= 0).to(dtype) * 2 - 1 == P.tensor(ds.y_test)).to(dtype).mean())
            lam_list = lam.detach().cpu().numpy().astype(float).tolist()
            return {
                "lambda": float(np.mean(lam_list)),
                "lambda_layers": lam_list,
                "validation_loss": A,  # mean over the validation set
                "test_accuracy": acc,
                "weight_sq_norms": weight_norms(arch, params),
                "hyperiterations": iterations,
                "wall_seconds": time.perf_counter() - started,
            }

        started = time.perf_counter()
        X_p = P.tensor(np.zeros((0, ds.n_features)))
        if self.learn_lambda:
            for _ in range(self.clean_iterations):
                lam = descend_lambda(X_p, lam)
        yield PoisonBatch(
            np.zeros((0, ds.n_features)),
            np.zeros(0),
            diagnostics(X_p, lam, started, self.clean_iterations if self.learn_lambda else 0),
        )

        unused = list(rng.permutation(len(ds.y_val)))
        total, batch = 0, 0
        while self.n_batches is None or batch < self.n_batches:
            n_new = self.batch_size if scenario.budget is None else min(self.batch_size, scenario.budget - total)
            if n_new <= 0:
                return
            started = time.perf_counter()
            if len(unused) < n_new:
                unused += list(rng.permutation(len(ds.y_val)))
            idx, unused = unused[:n_new], unused[n_new:]
            X_new = torch.clamp(P.tensor(ds.X_val[idx]), lo, hi)
            y_new = -np.asarray(ds.y_val[idx], dtype=np.float64)
            P.y_p = torch.cat([P.y_p, P.tensor(y_new)])
            for _ in range(self.hyperiterations):
                g = rmd(P, w0(), torch.cat([X_p, X_new]), lam, wrt=("X_p",)).X_p[-n_new:]
                X_new = torch.clamp(X_new + self.alpha * g, lo, hi)
                if self.learn_lambda:
                    lam = descend_lambda(torch.cat([X_p, X_new]), lam)
            X_p = torch.cat([X_p, X_new.detach()])
            total += n_new
            batch += 1
            yield PoisonBatch(
                X_new.detach().cpu().numpy().astype(np.float64),
                y_new,
                diagnostics(X_p, lam, started, self.hyperiterations),
            )


@hookimpl
def register_attacks(register):
    register(RMDAttack)
