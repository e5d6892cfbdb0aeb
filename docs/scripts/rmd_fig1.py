"""RMD paper Fig. 1: one optimal poison against logistic regression, without and with L2 (λ = log 20).

Data: the ``gaussians`` dataset (appendix D.1: 32 train, 64 validation, box [−9.5, 9.5]²). Learner:
``torch-logistic`` (T = 500 GD steps, η = 0.2). Attack: ``rmd`` with fixed λ, one poison,
α = 0.4, T_Dp = 50 hyperiterations, best of ``--starts`` starting validation points. λ = −8 stands
for "no regularisation". Panels: validation error vs the position of a poison with the label the attack
gave it (left: λ = −8, centre: λ = log 20) with the clean (dashed white) and poisoned (red) boundaries; right: the λ that
minimises the validation loss (grid search over λ, eq. 1) vs the poison's position.

    python docs/scripts/rmd_fig1.py [--starts 5] [--grid 41] [--out docs/img/rmd-fig1.png]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

LAMS = {"no regularisation (λ = −8)": -8.0, "λ = log 20": float(np.log(20.0))}
T, ETA, ALPHA, T_DP = 500, 0.2, 0.4, 50


def batched_gd(
    X: np.ndarray, y: np.ndarray, Xp: np.ndarray, yp: float, lam: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """T GD steps of the eq.-6 logistic learner (as ``torch-logistic``) for many poison positions
    ``Xp`` (G, d) and strengths ``lam`` (L,) at once; returns w (L, G, d), b (L, G)."""
    from scipy.special import expit

    G, d = Xp.shape
    Xa = np.concatenate([np.broadcast_to(X, (G, *X.shape)), Xp[:, None, :]], axis=1)  # (G, n+1, d)
    ya = np.r_[y, yp]
    N = ya.size
    c = np.exp(lam)[:, None, None]
    w = np.zeros((lam.size, G, d))
    b = np.zeros((lam.size, G))
    for _ in range(T):
        f = np.einsum("gnd,lgd->lgn", Xa, w) + b[..., None]
        r = -ya * expit(-ya * f)  # dl/df
        gw = (np.einsum("lgn,gnd->lgd", r, Xa) + c * w) / N
        gb = r.sum(-1) / N
        w, b = w - ETA * gw, b - ETA * gb
    return w, b


def val_metrics(w: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.einsum("nd,...d->...n", X, w) + b[..., None]
    return (np.sign(f + (f == 0)) != y).mean(-1), np.logaddexp(0, -y * f).mean(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--grid", type=int, default=41)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/img/rmd-fig1.png")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(1)
    from poisonbench.attack import Scenario
    from poisonbench.plugins.attacks.rmd import RMDAttack
    from poisonbench.plugins.datasets.gaussians import gaussians
    from poisonbench.plugins.learners.torch_l2 import TorchLogisticRegression

    ds = gaussians(seed=args.seed)
    t0 = time.time()
    results = {}
    for label, lam in LAMS.items():
        learner = TorchLogisticRegression(lam=lam, steps=T, lr=ETA)
        best = None
        for start in range(args.starts):
            attack = RMDAttack(batch_size=1, learn_lambda=False, lam0=lam, hyperiterations=T_DP, alpha=ALPHA)
            batch = list(attack.poison(Scenario(ds, learner, budget=1, seed=start)))[1]
            if best is None or batch.diagnostics["validation_loss"] > best.diagnostics["validation_loss"]:
                best = batch
        clean = learner.fit(ds.X_train, ds.y_train)
        pois = learner.fit(np.r_[ds.X_train, best.X], np.r_[ds.y_train, best.y])
        cos = clean.w @ pois.w / np.linalg.norm(clean.w) / np.linalg.norm(pois.w)
        results[label] = {
            "lambda": lam,
            "poison": best.X[0].tolist(),
            "poison_label": float(best.y[0]),
            "val_error_clean": 1 - clean.accuracy(ds.X_val, ds.y_val),
            "val_error_poisoned": 1 - pois.accuracy(ds.X_val, ds.y_val),
            "test_error_clean": 1 - clean.accuracy(ds.X_test, ds.y_test),
            "test_error_poisoned": 1 - pois.accuracy(ds.X_test, ds.y_test),
            "boundary_rotation_deg": float(np.degrees(np.arccos(np.clip(cos, -1, 1)))),
            "boundary_shift_at_y0": float(-pois.b / pois.w[0] + clean.b / clean.w[0]),
            "clean": (clean.w.tolist(), clean.b),
            "poisoned": (pois.w.tolist(), pois.b),
        }
        print(
            label, json.dumps({k: v for k, v in results[label].items() if k not in ("clean", "poisoned")}), flush=True
        )

    g = np.linspace(-9.5, 9.5, args.grid)
    GX, GY = np.meshgrid(g, g)
    P = np.c_[GX.ravel(), GY.ravel()]
    yp = results["λ = log 20"]["poison_label"]
    maps = {}
    for label, lam in LAMS.items():
        w, b = batched_gd(ds.X_train, ds.y_train, P, results[label]["poison_label"], np.array([lam]))
        maps[label] = val_metrics(w[0], b[0], ds.X_val, ds.y_val)[0].reshape(GX.shape)
    lam_grid = np.linspace(-8, np.log(200), 27)
    w, b = batched_gd(ds.X_train, ds.y_train, P, yp, lam_grid)
    best_lam = lam_grid[np.argmin(val_metrics(w, b, ds.X_val, ds.y_val)[1], axis=0)].reshape(GX.shape)
    # cross-check the batched numpy GD against the torch learner at one grid cell
    k = len(P) // 3
    ref = TorchLogisticRegression(lam=lam_grid[5], steps=T, lr=ETA).fit(
        np.r_[ds.X_train, P[k : k + 1]], np.r_[ds.y_train, yp]
    )
    assert np.allclose(np.r_[w[5, k], b[5, k]], ref.theta, atol=1e-8), "batched GD differs from torch-logistic"

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, (label, _lam) in zip(axes[:2], LAMS.items()):
        im = ax.pcolormesh(
            GX, GY, maps[label], cmap="viridis", vmin=0, vmax=max(m.max() for m in maps.values()), shading="auto"
        )
        fig.colorbar(im, ax=ax, label="validation error")
        _points(ax, ds)
        r = results[label]
        for (wv, bv), style in ((r["clean"], dict(color="white", ls="--")), (r["poisoned"], dict(color="red", ls="-"))):
            xs = np.linspace(-9.5, 9.5, 2)
            ax.plot(xs, -(bv + np.array(wv)[0] * xs) / np.array(wv)[1], lw=2, **style) if abs(
                wv[1]
            ) > 1e-9 else ax.axvline(-bv / wv[0], lw=2, **style)
        ax.scatter(*r["poison"], c="red", s=120, edgecolor="k", zorder=5, label="poison")
        ax.set_title(
            f"{label}, poison label {r['poison_label']:+.0f}:\nval. error {r['val_error_clean']:.3f} → "
            f"{r['val_error_poisoned']:.3f}, boundary turned {r['boundary_rotation_deg']:.1f}°"
        )
    im = axes[2].pcolormesh(GX, GY, best_lam, cmap="magma", shading="auto")
    fig.colorbar(im, ax=axes[2], label="λ minimising validation loss")
    _points(axes[2], ds)
    axes[2].set_title(f"learned λ vs poison position (poison label {yp:+.0f})")
    for ax in axes:
        ax.set_xlim(-10, 10), ax.set_ylim(-10, 10)
        ax.plot([-9.5, 9.5, 9.5, -9.5, -9.5], [-9.5, -9.5, 9.5, 9.5, -9.5], color="grey", ls="-.")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(
        json.dumps(
            {
                "learned_lambda_range": [float(best_lam.min()), float(best_lam.max())],
                "seconds": round(time.time() - t0, 1),
                "out": args.out,
            }
        )
    )


def _points(ax, ds) -> None:
    for c, col in ((-1.0, "tab:blue"), (1.0, "tab:green")):
        m = ds.y_train == c
        ax.scatter(ds.X_train[m, 0], ds.X_train[m, 1], c=col, s=18, edgecolor="k", lw=0.3)


if __name__ == "__main__":
    main()
