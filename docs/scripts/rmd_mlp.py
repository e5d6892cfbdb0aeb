"""RMD paper §5.2 / Fig. 3 trend, reduced: per-layer λ of an MLP learned under the RMD attack, MNIST 0 vs 8.

Reduced from the paper (ImageNet dog vs fish, 2048 × 128 × 32 × 1, T = 600, 10 seeds): MNIST 0 vs 8
(``mnist``, ``pair="0v8", n_train=256, n_val=256``) downsampled 2 × 2 to 14 × 14 = 196 pixels
(averages, so the box stays [0, 1]); MLP 196 × 128 × 32 × 1 (leaky ReLU) trained by T = 100 GD
steps with η = 0.2 in float32; a fresh random w⁽⁰⁾ per hypergradient (paper §5.2); α = 0.99, β = 0.05 and
λ ∈ [−8, log 60] (paper Table 2, DNN); ``--batches`` × ``--batch`` poisons with ``--hyper``
hyperiterations per batch. Defenders: λ = −8 (fixed, every layer) and λ_RMD (learned per layer).

    python docs/scripts/rmd_mlp.py [--seeds 1] [--batches 4] [--batch 10] [--hyper 8]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def downsample(X: np.ndarray) -> np.ndarray:
    return X.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 196)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--hyper", type=int, default=8)
    ap.add_argument("--clean-hyper", type=int, default=10)
    ap.add_argument("--json", default="/tmp/rmd_mlp.json")
    ap.add_argument("--out", default="docs/img/rmd-mlp.png")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from poisonbench.attack import Scenario
    from poisonbench.dataset import Dataset, FeasibleSet
    from poisonbench.plugins.attacks.rmd import RMDAttack
    from poisonbench.plugins.datasets.mnist import mnist
    from poisonbench.plugins.learners.torch_l2 import TorchMLP

    t0 = time.time()
    runs = []
    for seed in range(args.seeds):
        full = mnist(seed=seed, pair="0v8", n_train=256, n_val=256)
        ds = Dataset(
            "mnist-0v8-14x14",
            downsample(full.X_train),
            full.y_train,
            downsample(full.X_test),
            full.y_test,
            FeasibleSet.box(196, 0.0, 1.0),
            downsample(full.X_val),
            full.y_val,
        )
        learner = TorchMLP(lam=-8.0, hidden=[128, 32], steps=100, lr=0.2, seed=seed, dtype="float32")
        run = {}
        for mode, learn in (("λ = −8", False), ("λ_RMD", True)):
            attack = RMDAttack(
                batch_size=args.batch,
                n_batches=args.batches,
                learn_lambda=learn,
                lam0=-8.0 if not learn else 0.0,
                lam_min=-8.0,
                lam_max=float(np.log(60.0)),
                hyperiterations=args.hyper,
                clean_iterations=args.clean_hyper,
                alpha=0.99,
                beta=0.05,
                dtype="float32",
            )
            Xp, yp, rows = np.zeros((0, 196)), np.zeros(0), []
            for batch in attack.poison(Scenario(ds, learner, budget=args.batch * args.batches, seed=seed)):
                Xp, yp = np.r_[Xp, batch.X], np.r_[yp, batch.y]
                lam = batch.diagnostics["lambda_layers"]
                model = learner.with_lambda(lam).fit(np.r_[ds.X_train, Xp], np.r_[ds.y_train, yp])
                sizes = [W.size for W in model.weights]
                rows.append(
                    {
                        "fraction": len(yp) / (ds.n_train + len(yp)),
                        "lambda_layers": lam,
                        "test_error": 1 - model.accuracy(ds.X_test, ds.y_test),
                        "w_sq_norm_per_param": [float((W**2).sum()) / n for W, n in zip(model.weights, sizes)],
                    }
                )
                print(
                    f"seed {seed} {mode} {rows[-1]['fraction']:.3f} err {rows[-1]['test_error']:.3f} "
                    f"λ {np.round(lam, 3).tolist()}  [{time.time() - t0:.0f}s]",
                    flush=True,
                )
            run[mode] = rows
        runs.append(run)
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "runs": runs}, fh)
    plot(runs, args.out)
    print(f"seconds: {time.time() - t0:.0f}")


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    f = 100 * np.array([r["fraction"] for r in runs[0]["λ_RMD"]])
    for mode in ("λ = −8", "λ_RMD"):
        err = np.mean([[r["test_error"] for r in run[mode]] for run in runs], axis=0)
        axes[0].plot(f, err, "o-", label=mode)
    lam = np.mean([[r["lambda_layers"] for r in run["λ_RMD"]] for run in runs], axis=0)
    w2 = np.mean([[r["w_sq_norm_per_param"] for r in run["λ_RMD"]] for run in runs], axis=0)
    for k, name in enumerate(("hidden 1", "hidden 2", "output")):
        axes[1].plot(f, lam[:, k], "o-", label=name)
        axes[2].plot(f, w2[:, k], "o-", label=name)
    axes[0].set_ylabel("test error"), axes[1].set_ylabel("λ (RMD)"), axes[2].set_ylabel("‖W_layer‖² / #params")
    axes[0].set_title(f"MLP, MNIST 0 vs 8 at 14×14 ({len(runs)} seed(s))")
    for ax in axes:
        ax.set_xlabel("poisons / training points (%)"), ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
