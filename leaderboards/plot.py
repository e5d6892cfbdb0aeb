"""Paper-grade figures from the store (matplotlib; PNG at 300 dpi, SVG or PDF by the file suffix).

- ``accuracy``: a metric (test accuracy by default; any numeric column of the table) against
  the number of poisons, mean ± s.e. over seeds as a line with an error band (the MTP paper's
  accuracy-vs-poisons figures).
- ``convergence``: the loss-based distance ``max_loss_diff`` (MTP Definition 1) against the
  number of poisons on log-log axes, from the trace rows (``record_every``) or else the
  checkpoint rows.
- ``lambda``: the defence's λ against the poison fraction ``n_poisons / n_train`` (RMD paper
  Fig. 2), one line per (attack, defence).
- ``bound``: the certified lower bound on the poisons needed (``lower_bound_induced``, else
  ``lower_bound``; MTP Theorem 2) against the poisons used, with the diagonal ``y = x``.

Every panel shows one campaign (rows of two campaigns never share a line) and one (dataset,
learner, defence, subpopulation); ``lambda`` panels hold every defence, told apart by the line
style. An attack label has the same colour and marker in every figure (:func:`attack_style`),
and one legend below the panels, outside the data area, names them all. Figures are 3.5 in
(one panel) or 7 in wide (a row of two or three) with 8 pt text.
"""

from __future__ import annotations

import hashlib
import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from poisonbench.leaderboards.query import GROUP

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with the CLI
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

KINDS = ("accuracy", "convergence", "lambda", "bound")
SUFFIXES = (".png", ".svg", ".pdf")
DPI = 300
#: Matplotlib's tab10 colours, fixed here so that no style sheet changes an attack's colour.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LineStyle = Literal["-", "--", ":", "-."]
DASHES: tuple[LineStyle, ...] = ("-", "--", ":", "-.")
#: Text and line sizes of every figure (points).
PAPER_STYLE: dict[RcKeyType, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "svg.hashsalt": "poisonbench",
    "svg.fonttype": "path",
}
NARROW, WIDE = 3.5, 7.0
PANEL_HEIGHT = 2.3
LEGEND_ROW_HEIGHT = 0.17
#: Approximate width of one character of 8 pt legend text, in inches.
CHAR_WIDTH = 8 * 0.62 / 72
#: Width of a legend entry's line sample and spacing, in characters.
LEGEND_HANDLE_CHARS = 6


@dataclass(frozen=True)
class KindSpec:
    """How one figure kind is drawn: the row kinds to read (first with values wins), the panel
    key, the axes and their scales."""

    row_kinds: tuple[str, ...]
    panel: tuple[str, ...]
    x: str
    xlabel: str
    log_x: bool = False
    log_y: bool = False
    diagonal: bool = False


SPECS = {
    "accuracy": KindSpec(("checkpoint", "trace"), GROUP, "n_poisons", "number of poisons"),
    "convergence": KindSpec(("trace", "checkpoint"), GROUP, "n_poisons", "number of poisons", log_x=True, log_y=True),
    "lambda": KindSpec(
        ("checkpoint",),
        ("campaign", "dataset_label", "learner_label", "subpopulation"),
        "poison_fraction",
        "poison fraction n_p / n_train",
    ),
    "bound": KindSpec(("checkpoint",), GROUP, "n_poisons", "poisons used", diagonal=True),
}


@dataclass(frozen=True)
class Line:
    """One attack's (and defence's) mean ± s.e. of ``y`` over seeds, at increasing ``x``."""

    attack: str
    defence: str | None
    x: np.ndarray
    mean: np.ndarray
    se: np.ndarray


@dataclass(frozen=True)
class Panel:
    """The lines of one campaign and (dataset, learner, defence, subpopulation)."""

    key: tuple[Any, ...]
    lines: tuple[Line, ...]


def attack_style(label: str) -> dict[str, str]:
    """The colour (hex) and marker of attack ``label``, the same in every figure and process: a
    SHA-256 of the label picks them from :data:`PALETTE` and :data:`MARKERS` (two labels that
    share a colour mostly differ in the marker)."""
    digest = hashlib.sha256(label.encode("utf-8")).digest()
    colour = int.from_bytes(digest[:4], "big") % len(PALETTE)
    marker = int.from_bytes(digest[4:8], "big") % len(MARKERS)
    return {"color": PALETTE[colour], "marker": MARKERS[marker]}


def plot(table: pa.Table, kind: str, output: str | Path, metric: str = "test_accuracy") -> Path:
    """Draw figure ``kind`` from the store rows ``table`` into ``output`` (PNG at 300 dpi, SVG or
    PDF by its suffix); return its path. ``metric`` is the y column of ``accuracy`` figures."""
    output = Path(output)
    if output.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{output}: expected a file name ending in {', '.join(SUFFIXES)}")
    fig = figure(table, kind, metric)
    output.parent.mkdir(parents=True, exist_ok=True)
    save(fig, output, output.suffix.lower()[1:])
    return output


def svg(table: pa.Table, kind: str, metric: str = "test_accuracy") -> str:
    """Figure ``kind`` as an SVG document (a string), e.g. to inline in an HTML page."""
    buffer = io.BytesIO()
    save(figure(table, kind, metric), buffer, "svg")
    return buffer.getvalue().decode("utf-8")


def save(fig: Figure, target: str | Path | IO[bytes], fmt: str) -> None:
    """Write ``fig`` to a path or binary file as ``fmt`` (png, svg, pdf), without timestamps."""
    metadata: dict[str, Any] = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    fig.savefig(target, format=fmt, dpi=DPI, metadata=metadata)


def figure(table: pa.Table, kind: str, metric: str = "test_accuracy") -> Figure:
    """The matplotlib figure of kind ``kind`` from the successful rows of ``table``."""
    if kind not in KINDS:
        raise ValueError(f"plot kind {kind!r}: expected one of {', '.join(KINDS)}")
    spec = SPECS[kind]
    y = y_column(table, kind, metric)
    panels = panels_of(table, spec, y)
    if not panels:
        raise ValueError(f"plot {kind}: no successful rows with values of {y!r} to plot in the selected campaigns")
    return _draw(panels, spec, y_label(kind, y))


def y_column(table: pa.Table, kind: str, metric: str) -> str:
    """The column plotted on the y axis of ``kind``; ValueError unless it is a numeric column."""
    if kind == "accuracy":
        column = metric
    elif kind == "convergence":
        column = "max_loss_diff"
    elif kind == "lambda":
        column = "lambda"
    else:
        induced = "lower_bound_induced" in table.column_names and table["lower_bound_induced"].null_count < len(table)
        column = "lower_bound_induced" if induced else "lower_bound"
    numeric = numeric_columns(table)
    if column not in numeric:
        problem = "is not a column of the table" if column not in table.column_names else "is not numeric"
        raise ValueError(f"plot {kind}: {column!r} {problem}; numeric columns: {', '.join(numeric) or '(none)'}")
    return column


def numeric_columns(table: pa.Table) -> list[str]:
    """Names of the integer and floating-point columns of ``table``."""
    return [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def y_label(kind: str, column: str) -> str:
    """The y axis title of figure ``kind`` plotting ``column``."""
    return {
        "convergence": "max loss difference",
        "lambda": "λ (log L2 strength)",
        "bound": "certified bound on poisons"
        if column == "lower_bound_induced"
        else "lower bound: poisons to reach θ_p",
    }.get(kind, column.replace("_", " "))


def panels_of(table: pa.Table, spec: KindSpec, y: str) -> list[Panel]:
    """The panels of ``spec`` over the ok rows of ``table`` that have ``y``: per panel key and
    (attack, defence), mean and s.e. of ``y`` over seeds per budget (checkpoint rows) or per
    number of poisons (trace rows), at the mean ``x``."""
    rows = _rows_with_values(table, spec.row_kinds, y)
    if spec.log_x:
        rows = rows.filter(pc.greater(rows[spec.x], 0))
    if rows.num_rows == 0:
        return []
    lines = ("attack_label", "defence_label")
    bins = "budget_spec" if rows["kind"][0].as_py() == "checkpoint" else spec.x
    keys = list(dict.fromkeys([*spec.panel, *lines, bins]))
    agg = rows.group_by(keys, use_threads=False).aggregate(
        [(y, "mean"), (y, "stddev", pc.VarianceOptions(ddof=1)), (y, "count"), (spec.x, "mean")]
    )
    points: dict[tuple[Any, ...], dict[tuple[Any, ...], list[tuple[float, float, float]]]] = {}
    for r in agg.to_pylist():
        sd, n = r[f"{y}_stddev"], r[f"{y}_count"]
        se = sd / np.sqrt(n) if sd is not None and n > 1 else 0.0
        panel = points.setdefault(tuple(r[k] for k in spec.panel), {})
        panel.setdefault((r["attack_label"], r["defence_label"]), []).append((r[f"{spec.x}_mean"], r[f"{y}_mean"], se))
    return [
        Panel(key, tuple(_line(attack, defence, series[(attack, defence)]) for attack, defence in _sorted(series)))
        for key, series in sorted(points.items(), key=lambda kv: _text_key(kv[0]))
    ]


def _rows_with_values(table: pa.Table, row_kinds: Sequence[str], y: str) -> pa.Table:
    """The ok rows of the first kind in ``row_kinds`` that has values of ``y``."""
    ok = table.filter(pc.and_(pc.equal(table["status"], "ok"), pc.is_valid(table[y])))
    for kind in row_kinds:
        rows = ok.filter(pc.equal(ok["kind"], kind))
        if rows.num_rows:
            return rows
    return ok.slice(0, 0)


def _line(attack: str, defence: str | None, points: list[tuple[float, float, float]]) -> Line:
    x, mean, se = (np.array(v, dtype=float) for v in zip(*sorted(points)))
    return Line(attack, defence, x, mean, se)


def _sorted(series: dict[tuple[Any, ...], Any]) -> list[tuple[Any, ...]]:
    return sorted(series, key=_text_key)


def _text_key(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in key)


def _draw(panels: list[Panel], spec: KindSpec, ylabel: str) -> Figure:
    """One axes per panel in a 3.5 in or 7 in wide figure, one legend below them all."""
    import matplotlib
    from matplotlib.figure import Figure

    cols = 1 if len(panels) == 1 else 2 if len(panels) in (2, 4) else 3
    width = NARROW if cols == 1 else WIDE
    dashes = _dashes(panels) if spec.panel != GROUP else {}
    entries = _legend_entries(panels, dashes)
    ncol = _legend_columns(width, [label for label, _ in entries])
    legend_rows = -(-len(entries) // ncol)
    rows = -(-len(panels) // cols)
    height = rows * PANEL_HEIGHT + legend_rows * LEGEND_ROW_HEIGHT + 0.25
    with matplotlib.rc_context(PAPER_STYLE):
        fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, panel in zip(axes.flat, panels):
            _draw_panel(ax, panel, spec, ylabel, dashes, title_chars=int(width / cols / CHAR_WIDTH))
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        handles = [_legend_handle(line, dashes) for _, line in entries]
        fig.legend(handles, [label for label, _ in entries], loc="outside lower center", ncol=ncol, frameon=False)
    return fig


def _dashes(panels: list[Panel]) -> dict[str | None, LineStyle]:
    """A line style per defence of the figure (in the order of their labels)."""
    defences = sorted({line.defence for panel in panels for line in panel.lines}, key=lambda d: d or "")
    return {d: DASHES[i % len(DASHES)] for i, d in enumerate(defences)}


def _draw_panel(
    ax: Axes, panel: Panel, spec: KindSpec, ylabel: str, dashes: dict[str | None, LineStyle], title_chars: int
) -> None:
    """The lines and error bands of one panel, its title (wrapped at ``title_chars``), axes and
    scales."""
    from matplotlib.ticker import NullFormatter

    for line in panel.lines:
        style = attack_style(line.attack)
        lower, upper = line.mean - line.se, line.mean + line.se
        if spec.log_y:
            lower = np.where(lower > 0, lower, line.mean)
        ax.fill_between(line.x, lower, upper, color=style["color"], alpha=0.2, linewidth=0)
        ax.plot(
            line.x, line.mean, color=style["color"], marker=style["marker"], linestyle=dashes.get(line.defence, "-")
        )
    if spec.diagonal:
        ax.axline((0, 0), slope=1, color="0.4", linestyle=":", linewidth=0.8)
    campaign, *rest = panel.key
    detail = " / ".join(str(v) for v in rest if v is not None)
    ax.set_title("\n".join(textwrap.wrap(campaign, title_chars) + textwrap.wrap(detail, title_chars)))
    ax.set_xlabel(spec.xlabel)
    ax.set_ylabel(ylabel)
    if spec.log_x:
        ax.set_xscale("log")
    if spec.log_y:
        _log_y(ax, np.concatenate([line.mean for line in panel.lines]))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)


def _log_y(ax: Axes, values: np.ndarray) -> None:
    """A log y axis, or a symmetric log one when some value is not positive."""
    if (values > 0).all():
        ax.set_yscale("log")
    else:
        nonzero = np.abs(values[values != 0])
        ax.set_yscale("symlog", linthresh=max(1e-6, float(np.min(nonzero, initial=1.0))))


def _legend_entries(panels: list[Panel], dashes: dict[str | None, LineStyle]) -> list[tuple[str, Line]]:
    """(label, a line to take the style from) of every distinct attack, sorted; with the
    defence where defences are told apart by ``dashes``."""
    seen: dict[str, Line] = {}
    for panel in panels:
        for line in panel.lines:
            label = f"{line.attack} · {line.defence}" if dashes else line.attack
            seen.setdefault(label, line)
    return sorted(seen.items())


def _legend_handle(line: Line, dashes: dict[str | None, LineStyle]) -> Any:
    from matplotlib.lines import Line2D

    style = attack_style(line.attack)
    return Line2D([], [], color=style["color"], marker=style["marker"], linestyle=dashes.get(line.defence, "-"))


def _legend_columns(width: float, labels: list[str]) -> int:
    """As many legend columns as the longest label lets fit in ``width`` inches."""
    longest = max((len(label) for label in labels), default=1)
    fit = int(width // ((longest + LEGEND_HANDLE_CHARS) * CHAR_WIDTH))
    return max(1, min(len(labels), fit))
