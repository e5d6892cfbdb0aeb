"""MTP paper Figure 1 from the committed store: max loss difference to θ_p vs poisons.

Reads ``paper-mnist-convergence`` from ``results/paper-repro``: MTP's trace and checkpoint rows
(``max_loss_diff`` of θ_t, the model trained with ``n_poisons`` poisons) and KKT's checkpoint
rows (one trial per budget: the exact max loss difference of the KKT-induced model). Draws both
on log-log axes with Theorem 1's O(1/√n) rate, anchored at MTP's first positive point, and
prints the fitted slope of log distance on log n for each attack.

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


def curves(store: Store) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """attack -> (poisons, max loss difference), sorted by poisons, positive counts only."""
    rows = store.read(["paper-mnist-convergence"], columns=["attack", "status", "n_poisons", "max_loss_diff"])
    out: dict[str, dict[int, float]] = {}
    for r in rows.to_pylist():
        if r["status"] == "ok" and r["max_loss_diff"] is not None and r["n_poisons"]:
            out.setdefault(r["attack"], {})[int(r["n_poisons"])] = float(r["max_loss_diff"])
    return {a: (np.array(sorted(p)), np.array([p[n] for n in sorted(p)])) for a, p in out.items()}


def slope(n: np.ndarray, d: np.ndarray) -> float:
    """Least-squares slope of log d on log n (Theorem 1 predicts at most −1/2 for MTP)."""
    keep = d > 0
    return float(np.polyfit(np.log(n[keep]), np.log(d[keep]), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(ROOT / "results" / "paper-repro"))
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "img" / "fig1-convergence.png"))
    args = parser.parse_args()
    data = curves(Store(args.store))
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=150)
    styles = {"mtp": ("tab:blue", "-", "MTP"), "kkt": ("tab:orange", "o", "KKT")}
    for attack, (n, d) in sorted(data.items()):
        colour, style, label = styles.get(attack, ("tab:gray", "-", attack))
        ax.plot(n, d, style, color=colour, label=f"{label} (slope {slope(n, d):.2f})", markersize=5)
        print(
            f"{attack}: {len(n)} points, n = {n[0]}..{n[-1]}, distance {d[0]:.3g} -> {d[-1]:.3g}, slope {slope(n, d):.3f}"
        )
    n0, d0 = data["mtp"][0][0], data["mtp"][1][0]
    grid = np.geomspace(n0, max(n[-1] for n, _ in data.values()), 50)
    ax.plot(grid, d0 * np.sqrt(n0 / grid), "k--", linewidth=1, label="O(1/√n) (Theorem 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of poisons n")
    ax.set_ylabel("max loss difference to θ_p (Definition 1)")
    ax.set_title("MNIST 1–7, SVM, 10 %-error target")
    ax.legend()
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
