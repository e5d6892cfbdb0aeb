"""RMD paper Fig. 2 (a, d) on MNIST 0 vs 8, logistic regression: test error and learned λ vs poison fraction.

Four defenders, each attacked by the ``rmd`` attack that knows it: λ = −8 and λ = log 200 fixed,
λ_CLEAN (``cv-l2``, 5-fold CV on the clean training set, then fixed) and λ_RMD (learned: the
minimax of eq. 3, λ descends on the validation loss while the poisons ascend). Data: the
``mnist`` dataset, ``pair="0v8", n_train=256, n_val=256`` (128 per class each; the rest, 488
points, is test). Poisons are added in cumulative batches of ``--batch`` up to ``--batches``
batches (5 × 10 = 50 poisons = 16.3 % of the poisoned training set). Learner: ``torch-logistic``
(T GD steps, η = 0.1), used both inside the attack and to evaluate it (the test error is of
the model trained on clean + poisons with the defender's λ at that point).

    python docs/scripts/rmd_fig2.py [--seeds 3] [--hyper 20] [--clean-hyper 20] [--T 150] [--beta 0.99]
    python docs/scripts/rmd_fig2.py --plot-only --json runs.json   # re-plot saved runs
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    from poisonbench.attack import Scenario
    from poisonbench.plugins.attacks.rmd import RMDAttack
    from poisonbench.plugins.datasets.mnist import mnist
    from poisonbench.plugins.defences.l2 import LOG_200, CrossValidatedL2
    from poisonbench.plugins.learners.torch_l2 import TorchLogisticRegression

    ds = mnist(seed=seed, pair="0v8", n_train=256, n_val=256)
    base = TorchLogisticRegression(steps=args.T, lr=0.1)
    lam_clean = CrossValidatedL2(folds=5, n_grid=14).fit(base, ds.X_train, ds.y_train).hyperparameters["lambda"]
    modes = {
        "λ = −8": (-8.0, False),
        "λ = log 200": (LOG_200, False),
        "λ_CLEAN": (lam_clean, False),
        "λ_RMD": (0.0, True),
    }
    out: dict = {"lambda_clean": lam_clean, "n_train": ds.n_train, "n_test": len(ds.y_test)}
    for name, (lam0, learn) in modes.items():
        if name not in args.modes:
            continue
        t0 = time.time()
        attack = RMDAttack(
            batch_size=args.batch,
            n_batches=args.batches,
            learn_lambda=learn,
            lam0=lam0,
            hyperiterations=args.hyper,
            clean_iterations=args.clean_hyper,
            alpha=0.99,
            beta=args.beta,
        )
        Xp, yp, rows = np.zeros((0, ds.n_features)), np.zeros(0), []
        for batch in attack.poison(Scenario(ds, base.with_lambda(lam0), budget=args.batch * args.batches, seed=seed)):
            Xp, yp = np.r_[Xp, batch.X], np.r_[yp, batch.y]
            lam = batch.diagnostics["lambda"]
            model = base.with_lambda(lam).fit(np.r_[ds.X_train, Xp], np.r_[ds.y_train, yp])
            rows.append(
                {
                    "n_poisons": len(yp),
                    "fraction": len(yp) / (ds.n_train + len(yp)),
                    "lambda": lam,
                    "test_error": 1 - model.accuracy(ds.X_test, ds.y_test),
                    "w_sq_norm": float(model.w @ model.w),
                    "validation_loss": batch.diagnostics["validation_loss"],
                }
            )
        out[name] = rows
        print(
            f"seed {seed} {name}: "
            + " ".join(f"{r['fraction']:.3f}:{r['test_error']:.3f}(λ={r['lambda']:.2f})" for r in rows)
            + f"  [{time.time() - t0:.0f}s]",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--hyper", type=int, default=20, help="hyperiterations per batch (paper: T_mult = T_Dp = 100)")
    ap.add_argument("--clean-hyper", type=int, default=20, help="λ steps on clean data (paper: T_λ = 50)")
    ap.add_argument("--T", type=int, default=150, help="inner GD steps (paper: 150)")
    ap.add_argument("--beta", type=float, default=0.99, help="step on λ (paper: 0.99)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), help="defenders to run (default: all four)")
    ap.add_argument("--plot-only", action="store_true", help="re-plot the runs saved in --json")
    ap.add_argument("--json", default="/tmp/rmd_fig2.json")
    ap.add_argument("--out", default="docs/img/rmd-fig2.png")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    if args.plot_only:
        with open(args.json) as fh:
            runs = json.load(fh)["runs"]
        plot(runs, args.out)
        print(json.dumps(summary(runs), ensure_ascii=False))
        return
    runs = []
    for s in range(args.seeds):
        runs.append(run_seed(s, args))
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "runs": runs}, fh)
    plot(runs, args.out)
    print(json.dumps(summary(runs), ensure_ascii=False))
    print(f"seconds: {time.time() - t0:.0f}")


MODES = ("λ = −8", "λ = log 200", "λ_CLEAN", "λ_RMD")


def modes_of(runs: list[dict]) -> list[str]:
    """The defenders recorded in ``runs`` (keys holding per-checkpoint rows), in recorded order."""
    return [k for k, v in runs[0].items() if isinstance(v, list)]


def summary(runs: list[dict]) -> dict:
    """Mean (± s.e.) over seeds of test error and λ per mode and poison count."""
    out = {}
    for mode in modes_of(runs):
        err = np.array([[r["test_error"] for r in run[mode]] for run in runs])
        lam = np.array([[r["lambda"] for r in run[mode]] for run in runs])
        se = err.std(0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros(err.shape[1])
        out[mode] = {
            "fraction": [round(r["fraction"], 4) for r in runs[0][mode]],
            "test_error": err.mean(0).round(4).tolist(),
            "test_error_se": se.round(4).tolist(),
            "lambda": lam.mean(0).round(3).tolist(),
        }
    return out


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(runs)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in s:
        f = 100 * np.array(s[mode]["fraction"])
        a.errorbar(f, s[mode]["test_error"], yerr=s[mode]["test_error_se"], marker="o", capsize=3, label=mode)
    a.set_xlabel("poisons / training points (%)"), a.set_ylabel("test error")
    a.set_title(f"MNIST 0 vs 8, LR: test error ({len(runs)} seeds)"), a.legend()
    rmd_modes = [m for m in s if m.startswith("λ_RMD")]
    for mode in rmd_modes:
        b.plot(100 * np.array(s[mode]["fraction"]), s[mode]["lambda"], "o-", label=mode)
    f = 100 * np.array(s[rmd_modes[0]]["fraction"])
    b.axhline(np.mean([r["lambda_clean"] for r in runs]), ls="--", color="tab:green", label="λ_CLEAN (5-fold CV)")
    w2 = np.mean([[r["w_sq_norm"] for r in run[rmd_modes[0]]] for run in runs], axis=0)
    b2 = b.twinx()
    b2.plot(f, w2, "s:", color="tab:grey", label=f"‖w‖² ({rmd_modes[0]})")
    b2.set_ylabel("‖w‖²")
    b.set_xlabel("poisons / training points (%)"), b.set_ylabel("λ")
    b.set_title("learned λ and ‖w‖² vs poison fraction"), b.legend(loc="upper left"), b2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
