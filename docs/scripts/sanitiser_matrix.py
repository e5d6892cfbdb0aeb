"""The attack × sanitiser matrix as a figure, from the committed store: on MNIST 1–7,
``paper-sanitisers-mnist`` (attacks that ignore the sanitiser) beside
``paper-sanitisers-aware-mnist`` (attacks that know it); on Adult, ``paper-sanitisers-adult``
(both kinds in one campaign).

Left: test error of the defended SVM at the largest budget, per attack (columns) and defence
(rows). Right: the share of the poisons each sanitiser removed (``n_removed_poisons / n_poisons``).
A campaign missing from the store leaves its columns empty.

    python docs/scripts/sanitiser_matrix.py [--dataset mnist|adult] [--store results/paper-repro] [-o PNG]

(default output: ``docs/img/sanitisers.png`` for MNIST, ``docs/img/sanitisers-adult.png`` for Adult).
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
#: the attacks (attack, column title), unaware then aware
ATTACKS = (
    ("label-flip", "label flip"),
    ("kkt", "KKT"),
    ("mtp", "MTP"),
    ("kkt-defence-aware", "KKT, aware"),
    ("mtp-defence-aware", "MTP, aware"),
    ("min-max", "min-max, aware"),
)
#: per dataset: (campaign, attack, column title) of each column, and the figure's title
FIGURES = {
    "mnist": (
        tuple((f"paper-sanitisers{'-aware' if i >= 3 else ''}-mnist", a, t) for i, (a, t) in enumerate(ATTACKS)),
        "MNIST 1–7",
    ),
    "adult": (tuple(("paper-sanitisers-adult", a, t) for a, t in ATTACKS), "Adult"),
}


def matrices(store: Store, columns: tuple[tuple[str, str, str], ...]) -> tuple[list[str], int, np.ndarray, np.ndarray]:
    """Defence labels, the budget, and the (defence × attack) error and caught-share matrices of
    the ``columns`` (campaign, attack, title)."""
    fields = ["kind", "status", "attack", "defence_label", "budget", "n_poisons", "test_accuracy", "n_removed_poisons"]
    present = set(store.campaigns())
    rows = [
        {**r, "campaign": campaign}
        for campaign in dict.fromkeys(c for c, _, _ in columns)
        if campaign in present
        for r in store.read([campaign], columns=fields).to_pylist()
        if r["kind"] == "checkpoint"
    ]
    budget = max(r["budget"] for r in rows)
    defences = sorted({r["defence_label"] for r in rows}, key=lambda d: (d != "none", d))
    keys = [(c, a) for c, a, _ in columns]
    error = np.full((len(defences), len(columns)), np.nan)
    caught = np.full_like(error, np.nan)
    for r in rows:
        if r["budget"] != budget or r["status"] != "ok" or (r["campaign"], r["attack"]) not in keys:
            continue
        i, j = defences.index(r["defence_label"]), keys.index((r["campaign"], r["attack"]))
        error[i, j] = 1.0 - r["test_accuracy"]
        if r["n_removed_poisons"] is not None and r["n_poisons"]:
            caught[i, j] = r["n_removed_poisons"] / r["n_poisons"]
    return defences, int(budget), error, caught


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(FIGURES), default="mnist")
    parser.add_argument("--store", default=str(ROOT / "results" / "paper-repro"))
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args()
    columns, dataset_title = FIGURES[args.dataset]
    suffix = "" if args.dataset == "mnist" else f"-{args.dataset}"
    output = args.output or str(ROOT / "docs" / "img" / f"sanitisers{suffix}.png")
    defences, budget, error, caught = matrices(Store(args.store), columns)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.5), dpi=150)
    for ax, values, title, cmap in (
        (axes[0], error, f"test error at {budget} poisons", "Reds"),
        (axes[1], caught, "share of the poisons removed", "Blues"),
    ):
        percent = 100 * values
        im = ax.imshow(percent, cmap=cmap, vmin=0.0, vmax=np.nanmax(percent) if title.startswith("test") else 100.0)
        ax.set_xticks(range(len(columns)), [title for _, _, title in columns], rotation=30)
        ax.set_yticks(range(len(defences)), defences, fontsize=8)
        ax.set_title(title, fontsize=10)
        for (i, j), v in np.ndenumerate(percent):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(f"{dataset_title}, linear SVM: attacks that ignore or know (aware) the sanitiser (%)", fontsize=11)
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
