"""Figures (leaderboards/plot.py): one campaign per line, fixed attack styles, paper sizes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from poisonbench.leaderboards import plot
from poisonbench.results import rows_to_table


def _row(campaign, attack, budget, acc, seed=0, kind="checkpoint", **extra):
    return {
        "campaign": campaign,
        "trial_id": f"{campaign}-{attack}-{seed}",
        "kind": kind,
        "status": "ok",
        "dataset_label": "d",
        "learner_label": "l",
        "defence_label": "none",
        "attack_label": attack,
        "budget_spec": str(budget),
        "budget": budget,
        "n_poisons": budget,
        "n_train": 100,
        "poison_fraction": budget / 100,
        "test_accuracy": acc,
        "seed": seed,
        **extra,
    }


def _table(attacks, campaigns=("c",), budgets=(0, 10, 20), seeds=(0, 1)) -> pa.Table:
    rows = [
        _row(c, a, b, 0.9 - 0.01 * b - 0.002 * s - 0.01 * i, seed=s)
        for c in campaigns
        for i, a in enumerate(attacks)
        for b in budgets
        for s in seeds
    ]
    return rows_to_table(rows)


def _visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_two_campaigns_never_share_a_line():
    a = rows_to_table([_row("one", "x", b, 0.9 - 0.01 * b) for b in (0, 10, 20)])
    b = rows_to_table([_row("two", "x", b, 0.8 - 0.01 * b) for b in (5, 15, 25)])
    fig = plot.figure(pa.concat_tables([a, b]), "accuracy")
    axes = _visible_axes(fig)
    assert len(axes) == 2
    xs = sorted(tuple(line.get_xdata()) for ax in axes for line in ax.get_lines())
    assert xs == [(0, 10, 20), (5, 15, 25)]
    assert [ax.get_title().splitlines()[0] for ax in axes] == ["one", "two"]


def test_an_attack_keeps_its_colour_and_marker_in_every_figure():
    first = plot.figure(_table(["alpha", "beta"]), "accuracy")
    second = plot.figure(_table(["gamma", "delta", "beta"]), "accuracy")

    def style_of(fig, n):
        lines = _visible_axes(fig)[0].get_lines()
        return [(line.get_color(), line.get_marker()) for line in lines][n]

    # lines are drawn in label order: alpha, beta / beta, delta, gamma
    assert style_of(first, 1) == style_of(second, 0)
    beta = plot.attack_style("beta")
    assert style_of(first, 1) == (beta["color"], beta["marker"])


def test_attack_styles_do_not_depend_on_the_process():
    code = "from poisonbench.leaderboards.plot import attack_style; print(attack_style('mtp(copies=2)'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {str(plot.attack_style("mtp(copies=2)")) + "\n"}


def test_png_is_300_dpi_at_paper_width(tmp_path):
    single = plot.plot(_table(["alpha"]), "accuracy", tmp_path / "one.png")
    double = plot.plot(_table(["alpha"], campaigns=("c1", "c2")), "accuracy", tmp_path / "two.png")
    for path, inches in ((single, plot.NARROW), (double, plot.WIDE)):
        with Image.open(path) as image:
            assert image.info["dpi"] == pytest.approx((300, 300), abs=0.5)
            assert image.size[0] == round(inches * 300)


def test_the_legend_lies_outside_every_axes():
    fig = plot.figure(_table(["alpha", "beta", "gamma"]), "accuracy")
    FigureCanvasAgg(fig).draw()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    for ax in _visible_axes(fig):
        assert not box.overlaps(ax.get_window_extent())
    assert not any(ax.get_legend() for ax in fig.axes)


def test_accuracy_has_error_bands_and_paper_fonts():
    fig = plot.figure(_table(["alpha", "beta"]), "accuracy")
    (ax,) = _visible_axes(fig)
    assert len(ax.collections) == len(ax.get_lines()) == 2  # one fill_between band per line
    assert ax.title.get_fontsize() == 8 and ax.xaxis.label.get_fontsize() == 8


def test_convergence_is_on_log_axes():
    rows = [_row("c", "x", 0, 0.9, kind="trace", max_loss_diff=None)]
    rows += [_row("c", "x", n, None, kind="trace", max_loss_diff=1.0 / n, budget_spec=None) for n in (10, 100, 1000)]
    (ax,) = _visible_axes(plot.figure(rows_to_table(rows), "convergence"))
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert list(ax.get_lines()[0].get_xdata()) == [10, 100, 1000]


def test_any_numeric_column_can_be_plotted_and_others_are_refused(tmp_path):
    table = _table(["alpha"])
    table = table.append_column("attack.test_accuracy", pa.array(np.linspace(0.5, 0.9, table.num_rows)))
    assert plot.plot(table, "accuracy", tmp_path / "a.svg", "attack.test_accuracy").read_text().count("<svg") == 1
    with pytest.raises(ValueError, match=r"'attack_label' is not numeric; numeric columns: .*test_accuracy"):
        plot.figure(table, "accuracy", "attack_label")
    with pytest.raises(
        ValueError, match=r"'nope' is not a column of the table; numeric columns: .*attack.test_accuracy"
    ):
        plot.figure(table, "accuracy", "nope")


def test_svg_string_is_a_standalone_document():
    text = plot.svg(_table(["alpha"]), "accuracy")
    assert text.lstrip().startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")
