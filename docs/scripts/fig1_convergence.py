"""MTP paper Figure 1 from the committed store: distance to θ_p vs poisons, MTP and KKT.

Two settings, two distances (rows: max loss difference, MTP Definition 1; Euclidean ‖θ − θ_p‖):

- **Adult, SVM, cluster-7** (the paper's Fig. 1 is Adult, SVM, its first cluster): MTP's trace
  and checkpoint rows of ``paper-adult-svm`` (θ_t with ``n_poisons`` poisons; a trace row every
  50 iterations) and KKT's checkpoint rows of ``paper-adult-kkt-svm-cluster-7`` (one trial per
  budget: the KKT-induced model's distances).
- **MNIST 1–7, SVM, 10 %-error target** (the paper's appendix D, indiscriminate):
  ``paper-mnist-convergence``, MTP with a trace row every 5 iterations, KKT at 7 budgets.

Log-log axes with Theorem 1's O(1/√n) rate anchored at MTP's first positive point; prints the
least-squares slope of log distance on log n for MTP and, at MTP's largest n, the ratio of MTP's
distances to KKT's (the paper: below 2 %).

    python docs/scripts/fig1_convergence.py [--store results/paper-repro] [-o docs/img/fig1-convergence.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from poisonbench.leaderboards.store import Store

ROOT = Path(__file__).resolve().parents[2]
#: panel title -> (MTP campaign, KKT campaign, subpopulation)
SETTINGS = {
    "Adult cluster-7, SVM (paper Fig. 1)": ("paper-adult-svm", "paper-adult-kkt-svm-cluster-7", "cluster-7"),
    "MNIST 1–7, SVM, 10 % target (App. D)": ("paper-mnist-convergence", "paper-mnist-convergence", None),
}
METRICS = {"max_loss_diff": "max loss difference", "param_distance": "‖θ − θ_p‖₂"}


def curve(store: Store, campaign: str, attack: str, subpop: str | None, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(poisons, distance) of ``attack`` in ``campaign``, sorted by poisons, positive counts only."""
    columns = ["attack", "subpopulation", "status", "n_poisons", metric]
    points: dict[int, float] = {}
    for r in store.read([campaign], columns=columns).to_pylist():
        wanted = r["attack"] == attack and r["subpopulation"] == subpop and r["status"] == "ok"
        if wanted and r[metric] is not None and r["n_poisons"]:
            points[int(r["n_poisons"])] = float(r[metric])
    n = np.array(sorted(points))
    return n, np.array([points[k] for k in n])


def slope(n: np.ndarray, d: np.ndarray) -> float:
    """Least-squares slope of log d on log n (Theorem 1: at most −1/2 for MTP's max loss difference)."""
    keep = d > 0
    return float(np.polyfit(np.log(n[keep]), np.log(d[keep]), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(ROOT / "results" / "paper-repro"))
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "img" / "fig1-convergence.png"))
    args = parser.parse_args()
    store = Store(args.store)
    fig, axes = plt.subplots(len(METRICS), len(SETTINGS), figsize=(11, 7.5), dpi=130, squeeze=False)
    for col, (title, (mtp_campaign, kkt_campaign, subpop)) in enumerate(SETTINGS.items()):
        for row, (metric, ylabel) in enumerate(METRICS.items()):
            ax = axes[row][col]
            n_m, d_m = curve(store, mtp_campaign, "mtp", subpop, metric)
            n_k, d_k = curve(store, kkt_campaign, "kkt", subpop, metric)
            ax.plot(n_m, d_m, "-", color="tab:blue", label=f"MTP (slope {slope(n_m, d_m):.2f})")
            ax.plot(n_k, np.maximum(d_k, 1e-12), "o", color="tab:orange", label="KKT (a trial per budget)")
            grid = np.geomspace(n_m[0], max(n_m[-1], n_k[-1]), 50)
            ax.plot(grid, d_m[0] * np.sqrt(n_m[0] / grid), "k--", linewidth=1, label="O(1/√n)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("number of poisons n")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8)
            last = n_k[n_k <= n_m[-1]]
            ratio = ""
            if last.size:
                k = int(last[-1])
                m = d_m[np.searchsorted(n_m, k)] if k in n_m else np.interp(k, n_m, d_m)
                ratio = f", at n = {k}: MTP {m:.3g} vs KKT {d_k[n_k == k][0]:.3g}"
            print(f"{title} / {metric}: MTP slope {slope(n_m, d_m):.3f} over n = {n_m[0]}..{n_m[-1]}{ratio}")
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
