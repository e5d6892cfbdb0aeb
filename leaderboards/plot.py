"""Figures from the store (matplotlib, Agg backend; PNG, SVG or PDF by the file suffix).

- ``accuracy``: a metric (test accuracy by default) against the number of poisons, one line
  per attack, one panel per (dataset, learner, defence, subpopulation); mean ± s.e. over seeds
  (the MTP paper's accuracy-vs-poisons figures).
- ``convergence``: the loss-based distance ``max_loss_diff`` (MTP Definition 1) against the
  number of poisons, from the trace rows (``record_every``) or else the checkpoint rows.
- ``lambda``: the defence's λ against the poison fraction ``n_poisons / n_train`` (RMD paper
  Fig. 2), one line per (defence, attack).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from poisonbench.leaderboards.query import GROUP, METRICS

KINDS = ("accuracy", "convergence", "lambda")
SUFFIXES = (".png", ".svg", ".pdf")


def plot(table: pa.Table, kind: str, output: str | Path, metric: str = "test_accuracy") -> Path:
    """Draw figure ``kind`` from the store rows ``table`` into ``output``; return its path."""
    output = Path(output)
    if kind not in KINDS:
        raise ValueError(f"plot kind {kind!r}: expected one of {', '.join(KINDS)}")
    if output.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{output}: expected a file name ending in {', '.join(SUFFIXES)}")
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r}: expected one of {', '.join(METRICS)}")
    ok = table.filter(pc.equal(table["status"], "ok"))
    if kind == "accuracy":
        series = _series(_kind(ok, "checkpoint"), GROUP[1:], ("attack_label",), "n_poisons", metric)
        labels = ("number of poisons", metric.replace("_", " "))
    elif kind == "convergence":
        rows = _kind(ok, "trace")
        if _count(rows, "max_loss_diff") == 0:
            rows = _kind(ok, "checkpoint")
        series = _series(rows, GROUP[1:], ("attack_label",), "n_poisons", "max_loss_diff")
        labels = ("number of poisons", "max loss difference (loss-based distance)")
    else:
        series = _series(
            _kind(ok, "checkpoint"),
            ("dataset_label", "learner_label"),
            ("defence_label", "attack_label"),
            "poison_fraction",
            "lambda",
        )
        labels = ("poison fraction n_p / n_train", "λ (log L2 strength)")
    if not series:
        raise ValueError(f"plot {kind}: no successful rows with values to plot in the selected campaigns")
    _draw(series, labels, output, log_y=kind == "convergence")
    return output


def _kind(table: pa.Table, kind: str) -> pa.Table:
    return table.filter(pc.equal(table["kind"], kind))


def _count(table: pa.Table, column: str) -> int:
    return table.num_rows - table[column].null_count


def _series(
    table: pa.Table, panel_keys: tuple[str, ...], line_keys: tuple[str, ...], x: str, y: str
) -> dict[tuple[Any, ...], dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """panel -> line -> (x, mean y, s.e. y), averaged over seeds at equal x."""
    table = table.filter(pc.is_valid(table[y]))
    if table.num_rows == 0:
        return {}
    agg = table.group_by([*panel_keys, *line_keys, x], use_threads=False).aggregate(
        [(y, "mean"), (y, "stddev", pc.VarianceOptions(ddof=1)), (y, "count")]
    )
    out: dict[tuple[Any, ...], dict[tuple[Any, ...], list[tuple[float, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in agg.to_pylist():
        sd, n = r[f"{y}_stddev"], r[f"{y}_count"]
        se = sd / np.sqrt(n) if sd is not None and n > 1 else 0.0
        out[tuple(r[k] for k in panel_keys)][tuple(r[k] for k in line_keys)].append((r[x], r[f"{y}_mean"], se))
    return {
        panel: {line: tuple(np.array(v) for v in zip(*sorted(points))) for line, points in lines.items()}
        for panel, lines in out.items()
    }


def _draw(series: dict[Any, Any], labels: tuple[str, str], output: Path, log_y: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(series, key=lambda k: tuple(str(v) for v in k))
    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for line in sorted(series[panel], key=lambda k: tuple(str(v) for v in k)):
            xs, ys, se = series[panel][line]
            ax.errorbar(xs, ys, yerr=se, marker="o", markersize=3, capsize=2, label=" / ".join(map(str, line)))
        ax.set_title(" / ".join(str(v) for v in panel if v is not None), fontsize=9)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        if log_y:
            values = np.concatenate([series[panel][line][1] for line in series[panel]])
            if (values > 0).all():
                ax.set_yscale("log")
            else:
                ax.set_yscale("symlog", linthresh=max(1e-6, float(np.min(np.abs(values[values != 0]), initial=1.0))))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
