"""``poisonbench poisons export``: a trial's poisoned training set, for use in any other tool.

The clean training split is rebuilt from the trial's stored configuration exactly as the harness
built it (dataset, parameters, seed, the campaign file's folder for file parameters) and checked
against the dataset digest the poison set records; the poison set is checked against the content
hash the trial's rows record. The rows are the training set the defence saw at that checkpoint:
the clean points in their order, then the poisons in the order the attack yielded them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from poisonbench.campaign import resolve_budget
from poisonbench.cli.common import STORE_OPTION, UserError, get_host, warnings_to_stderr
from poisonbench.dataset import Dataset
from poisonbench.leaderboards.store import Store
from poisonbench.results import PoisonSet
from poisonbench.trial import create_component

FORMATS = ("npz", "parquet", "csv")


@click.group("poisons")
def poisons() -> None:
    """The poison sets trials stored: export them as data."""


@poisons.command("export")
@click.argument("campaign")
@click.argument("trial_id")
@click.option(
    "--checkpoint", type=int, default=None, help="Only the poisons of this checkpoint's training set (0, 1, …)."
)
@click.option("--budget", default=None, metavar="B", help="Only the first B poisons (100, or 0.05 of n_train).")
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), required=True, help="npz arrays, or a parquet / csv table."
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write.")
@STORE_OPTION
@click.pass_context
def export(
    ctx: click.Context,
    campaign: str,
    trial_id: str,
    checkpoint: int | None,
    budget: str | None,
    fmt: str,
    output: str,
    store_dir: str,
) -> None:
    """Write the poisoned training set of trial TRIAL_ID of CAMPAIGN: the clean training data ∪
    its poisons (all of them, or those of --checkpoint K / the first --budget B), with a `poison`
    column marking the poisons (also `order`, `step`, `checkpoint`: -1 on clean rows)."""
    if checkpoint is not None and budget is not None:
        raise click.UsageError("--checkpoint and --budget are exclusive")
    store = Store(store_dir)
    with warnings_to_stderr():
        poison_set = store.read_poisons(campaign, trial_id)
        table = store.read([campaign], ["trial_id", "config"])
    configs = table.filter(pc.equal(table["trial_id"], trial_id))["config"].to_pylist()
    config = json.loads(configs[0])
    data = _rebuild(ctx, config, poison_set)
    keep = np.ones(len(poison_set.y), dtype=bool)
    if checkpoint is not None:
        if not 0 <= checkpoint < len(config["budgets"]):
            raise UserError(
                f"--checkpoint {checkpoint}: trial {trial_id} has checkpoints 0..{len(config['budgets']) - 1}"
            )
        keep = poison_set.checkpoint <= checkpoint
    elif budget is not None:
        keep = np.arange(len(poison_set.y)) < resolve_budget(_budget(budget), data.n_train)
    columns = _training_set(data, poison_set, keep)
    path = Path(output)
    if fmt == "npz":
        with open(path, "wb") as f:
            np.savez(f, **columns)  # type: ignore[arg-type]  # (the stubs read a key as allow_pickle)
    else:
        d = columns["X"].shape[1]
        flat = {k: v for k, v in columns.items() if k != "X"}
        flat.update({f"x{j}": columns["X"][:, j] for j in range(d)})
        out = pa.table({k: pa.array(v) for k, v in flat.items()})
        if fmt == "parquet":
            pq.write_table(out, path, compression="zstd")
        else:
            pa_csv.write_csv(out, path)
    click.echo(f"{path}: {data.n_train} clean + {int(keep.sum())} poison rows ({fmt})", err=True)


def _budget(text: str) -> int | float:
    """A budget as written in a campaign: an integer count or a fraction of n_train."""
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        raise UserError(f"--budget {text!r}: expected a number of poisons (100) or a fraction (0.05)") from None


def _rebuild(ctx: click.Context, config: dict[str, Any], poison_set: PoisonSet) -> Dataset:
    """The trial's dataset, built as the harness built it, checked against the poison set's digest."""
    spec = config["dataset"]
    data = create_component(
        get_host(ctx), "dataset", spec["name"], spec["params"], config["seed"], config.get("base_dir")
    )
    if not isinstance(data, Dataset) or data.digest() != poison_set.dataset_digest:
        raise UserError(
            f"dataset {spec['name']!r} rebuilt from the trial's config differs from the data its poisons were "
            f"crafted on (a changed data file or dataset plugin)"
        )
    return data


def _training_set(data: Dataset, poison_set: PoisonSet, keep: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of clean ∪ the kept poisons, clean rows first (the harness's order)."""
    n, k = data.n_train, int(keep.sum())
    clean = np.full(n, -1)
    return {
        "poison": np.concatenate([np.zeros(n, bool), np.ones(k, bool)]),
        "X": np.vstack([data.X_train, poison_set.X[keep]]).astype(np.float64),
        "y": np.concatenate([data.y_train, poison_set.y[keep]]).astype(np.float64),
        "order": np.concatenate([clean, np.flatnonzero(keep)]).astype(np.int64),
        "step": np.concatenate([clean, poison_set.step[keep]]).astype(np.int64),
        "checkpoint": np.concatenate([clean, poison_set.checkpoint[keep]]).astype(np.int32),
    }
