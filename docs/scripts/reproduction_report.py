"""docs/reproduction.md from the committed store, so that no number in it is typed by hand.

Every value of ours is read from ``results/paper-repro`` (the rows of the ``campaigns/paper-*``
files), from ``results/np-spread.json`` / ``results/regeneration-spread.json`` (the measured
spreads) or ``results/paper-repro-provenance.json`` (which commit produced which campaign); the
papers' numbers are :data:`PAPER`, each with its table or figure. The prose is the template
``docs/templates/reproduction.md.j2``; where a verdict depends on a number ("reproduced" or not),
the template computes it from the number. ``tests/test_reproduction.py`` fails when the committed
page differs from what this script renders.

    python docs/scripts/reproduction_report.py            # writes docs/reproduction.md
    python docs/scripts/reproduction_report.py --check    # exit 1 if docs/reproduction.md is stale
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from derived_campaigns import first_zero  # noqa: E402
from fig1_convergence import SETTINGS, curve, slope  # noqa: E402

from poisonbench.leaderboards.store import Store  # noqa: E402

STORE = ROOT / "results" / "paper-repro"
TEMPLATE = ROOT / "docs" / "templates" / "reproduction.md.j2"
OUTPUT = ROOT / "docs" / "reproduction.md"
RATES = ("error:0.05", "error:0.1", "error:0.15")
#: MLP λ's: "later layers above the first" needs this margin; within AT_BOUND of λ_min is "collapsed"
LAYER_GAP, AT_BOUND = 0.1, 0.01

#: The papers' numbers (MTP: ../shared/papers/model-targeted-poisoning.md; RMD:
#: ../shared/papers/regularisation-mitigates-poisoning.md), by table or figure.
PAPER: dict[str, Any] = {
    # MTP Table 1 (Adult, subpopulation accuracy at x n_p, %; n_p; lower bound)
    "adult_svm_np": [1866, 2097, 2163],
    "adult_svm_bound": [1667, 1831, 1863],
    "adult_svm_mtp": [0.5, 0.0, 0.3],
    "adult_svm_kkt": [15.4, 6.9, 20.3],
    "adult_lr_np": [2005, 1630, 2428],
    "adult_lr_mtp": [0.4, 0.5, 0.6],
    "adult_lr_kkt": [24.3, 95.8, 60.2],
    # MTP Table 7 (Adult, subpopulation label flipping at MTP's first 0 % budget, %)
    "adult_flip_budget_svm": [1252, 1268, 1179],
    "adult_flip_budget_lr": [1575, 1336, 1649],
    "adult_flip_range": [2.8, 31.4],
    # MTP Table 2 (MNIST 1-7: n_p, lower bound, test accuracy at 0.2 ... 1.0 x n_p, KKT / ours)
    "mnist_svm_np": [1737, 5458, 6192],
    "mnist_svm_bound": [874, 3850, 4904],
    "mnist_svm_kkt": [[97.3, 96.4, 95.7, 94.9, 94.3], [95.8, 93.4, 92.7, 91.1, 90.2], [98.3, 96.3, 97.2, 98.3, 82.7]],
    "mnist_svm_mtp": [[97.1, 96.1, 95.7, 94.9, 94.6], [95.5, 92.1, 90.9, 90.7, 90.2], [97.8, 98.1, 97.3, 92.7, 85.9]],
    "mnist_lr_np": [756, 2113, 3907],
    "mnist_lr_kkt": [[97.5, 97.4, 97.2, 96.9, 96.9], [97.0, 96.9, 96.8, 96.2, 96.4], [96.9, 97.0, 97.1, 97.1, 97.1]],
    "mnist_lr_mtp": [[96.9, 96.5, 96.0, 95.7, 95.2], [95.7, 93.8, 92.3, 91.4, 90.4], [95.4, 93.3, 90.7, 88.3, 87.1]],
    # MTP Table 3 (MNIST 1-7 SVM: KKT's poisons and the bound for the KKT-induced model)
    "table3_kkt": [1737, 5458, 6192],
    "table3_bound": [856, 4058, 5031],
    # MTP appendix D.3 (improved target generation, 0.1-close poisons)
    "improved_from": [2170, 5810, 6762],
    "improved_to": [1340, 2432, 3206],
    # MTP Table 5 (Koh et al. label flipping vs MTP, poisons to reach 5 / 10 / 15 % error)
    "koh": [6510, 8648, 10825],
    # MTP Section 5 / Fig. 1: MTP's distances at the largest n, relative to KKT's
    "fig1_ratio": 2.0,
    # MTP appendix (two copies per iteration)
    "copies_change": 0.7,
    # MTP Table 6 (MNIST 1-7, test accuracy % after poisoning at 5 / 15 / 30 % of the training set)
    "table6": {
        "svm": {
            "min-max": [97.0, 93.9, 92.9],
            "biggio-svm": [98.7, 98.2, 96.8],
            "influence": [98.7, 98.0, 97.2],
            "mtp": [96.2, 88.6, 84.3],
        },
        "lr": {"gradient-lr": [98.2, 97.6, 95.7], "mtp": [96.5, 89.1, 83.1]},
    },
    # MTP appendix E: the Biggio et al. attack's run time on MNIST 1-7 with N = 100
    "table6_biggio_days": 3,
    # clean test accuracies (MTP Section 5)
    "clean": {"adult": {"svm": 78.5, "logistic": 79.9}, "mnist": {"svm": 98.9, "logistic": 99.1}},
}


class Rows:
    """The store's ok rows per campaign as DataFrames, with ``diag`` and ``hyper`` parsed."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @cache  # noqa: B019 - one report, one store
    def __call__(self, campaign: str) -> pd.DataFrame:
        df = self.store.read([campaign]).to_pandas()
        df = df[df.status == "ok"].copy()
        df["diag"] = [json.loads(d) if isinstance(d, str) else {} for d in df.diagnostics]
        df["hyper"] = [json.loads(h) if isinstance(h, str) else {} for h in df.hyperparameters]
        # Trace rows: the accuracies the attack reports for its own θ_t (a diagnostic; the paper
        # campaigns' trace rows are MTP's, undefended, so θ_t is the model a refit would give).
        trace = df.kind == "trace"
        for column in ("test_accuracy", "subpop_accuracy"):
            df.loc[trace, column] = [math.nan if d.get(column) is None else float(d[column]) for d in df.diag[trace]]
        df["error"] = 1.0 - df.test_accuracy
        return df

    def checkpoints(self, campaign: str) -> pd.DataFrame:
        df = self(campaign)
        return df[df.kind == "checkpoint"]

    def final(self, campaign: str, **where: Any) -> pd.Series:
        """The checkpoint row at the largest budget matching ``where``."""
        df = select(self.checkpoints(campaign), **where)
        return df.loc[df.budget.idxmax()]


def select(df: pd.DataFrame, **where: Any) -> pd.DataFrame:
    for key, value in where.items():
        df = df[df[key].isna()] if value is None else df[df[key] == value]
    return df


def mean_se(values: pd.Series | list[float]) -> dict[str, float]:
    """Mean and standard error (sample s.d. / √n) of ``values``."""
    a = np.asarray(values, dtype=float)
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0
    return {"mean": float(a.mean()), "se": se, "n": int(a.size)}


def with_defaults(factory: Any, params_json: str) -> dict[str, Any]:
    """A component's parameters as stored (the non-default ones) over its factory's defaults."""
    signature = inspect.signature(factory)
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    return defaults | json.loads(params_json)


def campaign_file(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "campaigns" / f"{name}.toml").read_text(encoding="utf-8"))


def trial_seconds(rows: Rows, campaign: str) -> float:
    """Sum over the campaign's trials of each trial's wall time (its last row's ``wall_seconds``)."""
    return float(rows.checkpoints(campaign).groupby("trial_id").wall_seconds.max().sum())


def header(rows: Rows, store: Store) -> dict[str, Any]:
    files = list(STORE.rglob("*.parquet"))
    campaigns = sorted(store.campaigns())
    return {
        "campaigns": campaigns,
        "n_files": len(files),
        "megabytes": sum(p.stat().st_size for p in files) / 1e6,
        "seconds": {c: trial_seconds(rows, c) for c in campaigns},
        "trials": {c: int(rows.checkpoints(c).trial_id.nunique()) for c in campaigns},
    }


def clean(rows: Rows) -> dict[str, dict[str, float]]:
    df = rows.checkpoints("paper-clean")
    return {ds: {r.learner: float(r.test_accuracy) for r in g.itertuples()} for ds, g in df.groupby("dataset")}


def mnist_sizes(rows: Rows) -> dict[str, int]:
    """Training / test sizes of the MNIST pairs, from the dataset plugin as the campaigns call it."""
    from poisonbench.plugins.datasets.mnist import mnist

    pair17, pair08 = mnist(seed=0, pair="1v7"), mnist(seed=0, pair="0v8", n_train=256, n_val=256)
    return {
        "train17": pair17.n_train,
        "test17": len(pair17.y_test),
        "train08": pair08.n_train,
        "val08": len(pair08.y_val),
        "test08": len(pair08.y_test),
    }


def mnist_targets(rows: Rows) -> dict[str, Any]:
    spread = json.loads((ROOT / "results" / "np-spread.json").read_text(encoding="utf-8"))["targets"]
    out: dict[str, Any] = {}
    for target in (*RATES, *(f"{t}:improved" for t in RATES)):
        r = rows.final("paper-mnist-targets", target=target)
        n_p = spread[f'mtp(target="{target}")']["n_p"]
        out[target] = {
            "n_p": int(r.n_poisons),
            "close": bool(r.stopped_early),
            "acc": float(r.test_accuracy),
            "target_acc": float(r.diag["target_test_accuracy"]),
            "bound": int(r.lower_bound_induced),
            "z": float(r.diag["lower_bound_induced_value"]),
            "bound_target": float(r.lower_bound),
            "bound_seconds": float(r.diag["lower_bound_induced_seconds"]),
            "np_min": int(min(n_p)),
            "np_max": int(max(n_p)),
        }
    return out


def koh(rows: Rows, targets: dict[str, Any]) -> dict[str, Any]:
    df = rows.checkpoints("paper-mnist-kohflip")
    out = {}
    for target in RATES:
        g = select(df, target=target)
        top = g.loc[g.budget.idxmax()]
        n = int(top.diag["koh_poisons"])
        at = g[g.n_poisons == n].iloc[0]
        out[target] = {
            "poisons": n,
            "flipped": int(top.diag["n_flipped"]),
            "repeat": int(top.diag["repeat"]),
            "acc": float(at.test_accuracy),
            "target_acc": float(top.diag["target_test_accuracy"]),
            "ratio": n / targets[target]["n_p"],
        }
    return out


def random_flip(rows: Rows) -> dict[str, Any]:
    df = rows.checkpoints("paper-mnist-labelflip")
    by = {int(b): mean_se(g.test_accuracy) for b, g in df.groupby("budget")}
    reach = {}
    for target in RATES:
        rate = float(target.split(":")[1])
        reach[target] = min(b for b, s in by.items() if 1 - s["mean"] >= rate - 1e-12)
    return {"by_budget": by, "reach": reach, "seeds": int(df.seed.nunique()), "n_train": int(df.n_train.iloc[0])}


def copies(rows: Rows) -> dict[str, Any]:
    df = rows.checkpoints("paper-copies")
    df = df.assign(copies=[json.loads(p).get("copies", 1) for p in df.attack_params])
    equal, own = [], []
    for target, g in df.groupby("target"):
        one, two = select(g, copies=1), select(g, copies=2)
        base1, base2 = (float(select(x, budget=50).wall_seconds.iloc[0]) for x in (one, two))
        for b in sorted(set(one.budget) & set(two.budget)):
            r1, r2 = select(one, budget=b).iloc[0], select(two, budget=b).iloc[0]
            if b > 50 and r1.n_poisons == b and r2.n_poisons == b:
                t1, t2 = float(r1.wall_seconds) - base1, float(r2.wall_seconds) - base2
                equal.append(
                    {"target": target, "poisons": int(b), "acc1": r1.test_accuracy, "acc2": r2.test_accuracy}
                    | {"t1": t1, "t2": t2, "ratio": t2 / t1}
                )
        for c, x in ((1, one), (2, two)):
            top = x.loc[x.budget.idxmax()]
            own.append(
                {"target": target, "copies": c, "n_p": int(top.n_poisons), "acc": float(top.test_accuracy)}
                | {"iterations": int(top.n_poisons) // c}
            )
    by_target = {o["target"]: {} for o in own}
    for o in own:
        by_target[o["target"]][o["copies"]] = o
    return {
        "equal": equal,
        "own": own,
        "max_change": max(abs(e["acc1"] - e["acc2"]) for e in equal),
        "ratios": [e["ratio"] for e in equal],
        "ratio_median": float(np.median([e["ratio"] for e in equal])),
        "np_ratio": [by_target[t][2]["n_p"] / by_target[t][1]["n_p"] for t in by_target],
        "it_ratio": [by_target[t][2]["iterations"] / by_target[t][1]["iterations"] for t in by_target],
    }


def nearest(df: pd.DataFrame, n: int) -> pd.Series:
    """The row whose ``n_poisons`` is nearest ``n`` (the smaller one on a tie)."""
    order = sorted(df.itertuples(index=False), key=lambda r: (abs(int(r.n_poisons) - n), int(r.n_poisons)))
    return pd.Series(order[0]._asdict())


def adult_cluster_sizes() -> dict[str, int]:
    """Training points per Adult subpopulation, from the dataset plugin as the campaigns call it."""
    from poisonbench.plugins.datasets.adult import adult as load_adult

    return {name: len(sp.train_idx) for name, sp in load_adult().subpopulations.items()}


def adult(rows: Rows) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sizes = adult_cluster_sizes()
    for short, learner in (("svm", "svm"), ("lr", "logistic")):
        campaign = f"paper-adult-{short}"
        clusters = campaign_file(campaign)["datasets"][0]["subpopulations"]
        mtp = select(rows(campaign), attack="mtp")
        flips = rows.checkpoints(f"paper-adult-labelflip-{short}")
        flip_budgets = campaign_file(f"paper-adult-labelflip-{short}")
        firsts = first_zero(rows.store, campaign)  # the rule that wrote the label-flipping budgets
        lines, equal = [], []
        for cluster in clusters:
            m = select(mtp, subpopulation=cluster)
            top = rows.final(campaign, attack="mtp", subpopulation=cluster)
            clean_row = select(m[m.kind == "checkpoint"], budget=0).iloc[0]
            budget = firsts.get(cluster, int(top.n_poisons))
            fl = select(flips, subpopulation=cluster, budget=budget)
            assert budget in flip_budgets["budgets"], (cluster, budget)
            lines.append(
                {
                    "cluster": cluster,
                    "clean": float(clean_row.subpop_accuracy),
                    "n_p": int(top.n_poisons),
                    "close": bool(top.stopped_early),
                    "acc": float(top.subpop_accuracy),
                    "test_acc": float(top.test_accuracy),
                    "bound": None if pd.isna(top.lower_bound_induced) else int(top.lower_bound_induced),
                    "bound_target": None if pd.isna(top.lower_bound) else float(top.lower_bound),
                    "first_zero": firsts.get(cluster),
                    "flip_budget": budget,
                    "flip": mean_se(fl.subpop_accuracy),
                    "n_train": sizes[cluster],
                }
            )
            kkt_campaign = rows.checkpoints(f"paper-adult-kkt-{short}-{cluster}")
            for b in sorted(set(kkt_campaign.budget) - {0}):
                k = select(kkt_campaign, attack="kkt", budget=b).iloc[0]
                f = select(kkt_campaign, attack="subpop-label-flip", budget=b).iloc[0]
                near = nearest(m, int(b))
                equal.append(
                    {
                        "cluster": cluster,
                        "poisons": int(b),
                        "kkt": float(k.subpop_accuracy),
                        "mtp": float(near.subpop_accuracy),
                        "mtp_at": int(near.n_poisons),
                        "flip": float(f.subpop_accuracy),
                        "bound": None if pd.isna(k.lower_bound_induced) else int(k.lower_bound_induced),
                    }
                )
        times = max(lines, key=lambda m: m["flip_budget"] / m["n_train"])
        at_np = [e for e in equal if e["poisons"] == next(x["n_p"] for x in lines if x["cluster"] == e["cluster"])]
        bounds = [e["bound"] / e["poisons"] for e in equal if e["bound"] is not None]
        out[short] = {
            "learner": learner,
            "clusters": clusters,
            "mtp": lines,
            "equal": equal,
            "at_np": at_np,
            "kkt_bound_share": (min(bounds), max(bounds)) if bounds else None,
            "flip_seeds": int(flips.seed.nunique()),
            "most_repeated": {"cluster": times["cluster"], "times": times["flip_budget"] / times["n_train"]},
            "epsilon": json.loads(top.attack_params)["epsilon"],
        }
    return out


def mnist_table2(rows: Rows) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for short in ("svm", "lr"):
        lines = []
        for target in RATES:
            top = rows.final(f"paper-mnist-mtp-{short}", target=target)
            mtp = select(rows(f"paper-mnist-mtp-{short}"), target=target)
            kkt = rows.checkpoints(f"paper-mnist-kkt-{short}-{target.replace(':', '-')}")
            cells = []
            for b in sorted(set(kkt.budget) - {0}):
                k = select(kkt, budget=b).iloc[0]
                near = nearest(mtp, int(b))
                cells.append(
                    {
                        "poisons": int(b),
                        "kkt": float(k.test_accuracy),
                        "mtp": float(near.test_accuracy),
                        "mtp_at": int(near.n_poisons),
                        "bound": None if pd.isna(k.lower_bound_induced) else int(k.lower_bound_induced),
                    }
                )
            lines.append(
                {
                    "target": target,
                    "n_p": int(top.n_poisons),
                    "close": bool(top.stopped_early),
                    "acc": float(top.test_accuracy),
                    "target_acc": float(top.diag["target_test_accuracy"]),
                    "bound": None if pd.isna(top.lower_bound_induced) else int(top.lower_bound_induced),
                    "cells": cells,
                }
            )
        out[short] = lines
        paper_kkt, paper_mtp = PAPER[f"mnist_{short}_kkt"], PAPER[f"mnist_{short}_mtp"]
        out[f"{short}_kkt_reaches"] = sum(t["cells"][-1]["kkt"] <= t["target_acc"] + 1e-9 for t in lines)
        out[f"{short}_paper_not_worse"] = sum(m[-1] <= k[-1] for k, m in zip(paper_kkt, paper_mtp))
    return out


def fig1(rows: Rows) -> dict[str, Any]:
    out = {}
    for title, (mtp_campaign, kkt_campaign, subpop) in SETTINGS.items():
        entry: dict[str, Any] = {"title": title}
        for metric in ("max_loss_diff", "param_distance"):
            n_m, d_m = curve(rows.store, mtp_campaign, "mtp", subpop, metric)
            n_k, d_k = curve(rows.store, kkt_campaign, "kkt", subpop, metric)
            k = int(n_k[n_k <= n_m[-1]][-1])
            m = float(np.interp(k, n_m, d_m))
            entry[metric] = {
                "slope": slope(n_m, d_m),
                "at": k,
                "mtp": m,
                "kkt": float(d_k[n_k == k][0]),
                "ratio": m / float(d_k[n_k == k][0]),
                "kkt_min": float(d_k.min()),
                "kkt_exact_from": int(n_k[d_k < 1e-8].min()) if (d_k < 1e-8).any() else None,
                "kkt_range": (float(d_k.min()), float(d_k.max())),
            }
        out[subpop or "mnist"] = entry
    return out


def fraction(n: int, n_train: int) -> float:
    return n / (n_train + n)


def rmd(rows: Rows) -> dict[str, Any]:
    fixed = rows.checkpoints("paper-rmd-fig2-fixed")
    n_train = int(fixed.n_train.iloc[0])
    lines = {}
    for _, g in fixed.groupby("defence_label"):
        lam = float(g["lambda"].iloc[0])
        lines[lam] = {int(b): float(x.error.iloc[0]) for b, x in g.groupby("budget")}
    learned = rows.checkpoints("paper-rmd-fig2-learned")
    by = {}
    for b, g in learned.groupby("budget"):
        attacker = [d["lambda"] for d in g.diag if "lambda" in d]
        by[int(b)] = {
            "error": mean_se(g.error),
            "lambda": mean_se(g["lambda"]),
            "attacker": mean_se(attacker) if attacker and b > 0 else None,
        }
    from poisonbench.plugins.attacks.rmd import RMDAttack
    from poisonbench.plugins.defences.l2 import LearnedL2

    params = with_defaults(RMDAttack, learned.attack_params.iloc[0])
    rises = []
    for _, g in learned.groupby("seed"):
        lam = g.sort_values("budget")["lambda"].to_numpy()
        rises.append(bool(np.all(np.diff(lam) > 0)))
    budgets = sorted(by)
    return {
        "n_train": n_train,
        "fixed": lines,
        "budgets_fixed": sorted(next(iter(lines.values()))),
        "fixed_params": with_defaults(RMDAttack, fixed.attack_params.iloc[0]),
        "learned": by,
        "budgets": budgets,
        "seeds": int(learned.seed.nunique()),
        "params": params,
        "defence": with_defaults(LearnedL2, learned.defence_params.iloc[0]),
        "every_seed_rises": all(rises),
        "rise": by[budgets[-1]]["lambda"]["mean"] - by[0]["lambda"]["mean"],
    }


def mlp(rows: Rows) -> dict[str, Any]:
    df = rows.checkpoints("paper-rmd-mlp")
    fixed = rows.checkpoints("paper-rmd-mlp-fixed")
    n_train = int(df.n_train.iloc[0])
    from poisonbench.plugins.attacks.rmd import RMDAttack
    from poisonbench.plugins.learners.torch_l2 import TorchMLP

    params = with_defaults(RMDAttack, df.attack_params.iloc[0])
    scales, seeds = {}, {}
    for scale, g in df.groupby(lambda i: json.loads(df.attack_params[i])["beta_scale"]):
        by = {}
        for b, x in g.groupby("budget"):
            defender = [[h[f"lambda_{k}"] for k in range(3)] for h in x.hyper]
            attacker = [d["lambda_layers"] for d in x.diag if d.get("lambda_layers")]
            by[int(b)] = {
                "error": mean_se(x.error),
                "defender": [mean_se([v[k] for v in defender]) for k in range(3)],
                "attacker": [mean_se([v[k] for v in attacker]) for k in range(3)] if attacker else None,
            }
        top = g[g.budget == g.budget.max()].sort_values("seed")
        per_seed = [(int(r.seed), list(r.diag["lambda_layers"])) for r in top.itertuples()]
        scales[scale] = by
        seeds[scale] = {
            "last": per_seed,
            "ordered": sum(min(lam[1], lam[2]) - lam[0] > LAYER_GAP for _, lam in per_seed),
            "collapsed": sum(max(lam) - params["lam_min"] < AT_BOUND for _, lam in per_seed),
            "moved": max(abs(x) for _, lam in per_seed for x in lam),
        }
    fixed_by = {int(b): mean_se(x.error) for b, x in fixed.groupby("budget")}
    defender = [abs(v) for h in df.hyper for k, v in h.items() if k.startswith("lambda_")]
    return {
        "per_seed": seeds,
        "defender_moved": max(defender),
        "n_train": n_train,
        "scales": scales,
        "fixed": fixed_by,
        "budgets": sorted(fixed_by),
        "seeds": int(df.seed.nunique()),
        "params": params,
        "learner": with_defaults(TorchMLP, df.learner_params.iloc[0]),
        "lam_max": params["lam_max"],
        "seconds": trial_seconds(rows, "paper-rmd-mlp") + trial_seconds(rows, "paper-rmd-mlp-fixed"),
    }


def learned_l2(rows: Rows) -> dict[str, Any]:
    df = rows.checkpoints("paper-learned-l2")
    out: dict[str, Any] = {}
    for (attack, defence), g in df.groupby(["attack", "defence"]):
        out.setdefault(attack, {})[defence] = {
            int(b): {
                "error": float(x.error.iloc[0]),
                "lambda": float(x["lambda"].iloc[0]),
                "n": int(x.n_poisons.iloc[0]),
            }
            for b, x in g.groupby("budget")
        }
    budgets = sorted(out["mtp"]["none"])
    return {"rows": out, "budgets": budgets, "n_p": out["mtp"]["none"][budgets[-1]]["n"]}


def error_and_caught(r: Any) -> dict[str, float]:
    """A checkpoint row's test error and, when its defence reports removed rows, the share of the
    poisons it removed (``caught``)."""
    entry = {"error": 1.0 - float(r.test_accuracy)}
    if not pd.isna(r.n_removed_poisons) and r.n_poisons:
        entry["caught"] = float(r.n_removed_poisons) / float(r.n_poisons)
    return entry


def sanitisers(rows: Rows) -> dict[str, Any]:
    """Test error and the share of poisons each sanitiser removed, per attack, defence and budget."""
    df = rows.checkpoints("paper-sanitisers-mnist")
    budgets = sorted(int(b) for b in set(df.budget) - {0})
    cells: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    for r in df.itertuples():
        if r.budget == 0 and r.attack != "label-flip":
            continue
        entry = {**error_and_caught(r), "n": int(r.n_poisons)}
        if not pd.isna(r.n_removed_clean):
            entry["clean"] = int(r.n_removed_clean)
            entry["removed"] = int(r.n_removed)
        cells.setdefault(r.attack, {}).setdefault(r.defence_label, {})[int(r.budget)] = entry
    defences = sorted({d for a in cells.values() for d in a}, key=lambda d: (d != "none", d))
    clean = {d: cells["label-flip"][d][0]["error"] for d in defences}
    top = budgets[-1]
    best = {a: min(defences, key=lambda d: cells[a][d][top]["error"]) for a in cells}
    return {
        "best": best,
        "top": top,
        "cells": cells,
        "budgets": budgets,
        "defences": defences,
        "clean": clean,
        "attacks": ("label-flip", "kkt", "mtp"),
    }


#: Table 6's rows per learner: (attack label, the paper's name); labels the paper lacks are ours
TABLE6_ROWS = {
    "svm": (
        ("min-max", "Min-max (Steinhardt et al. 2017), no defence"),
        ("biggio-svm", "Biggio et al. (2011), N = 6"),
        ("biggio-svm-n1", "Biggio et al. (2011), N = 1"),
        ("influence", "Koh & Liang (2017): the influence attack"),
        ("mtp", "MTP (improved 15 % target)"),
    ),
    "lr": (
        ("gradient-lr", "Demontis et al. (2019), N = 1"),
        ("gradient-lr-n10", "Demontis et al. (2019), N = 10"),
        ("influence", "Koh & Liang (2017): the influence attack"),
        ("mtp", "MTP (improved 15 % target)"),
    ),
}


def table6(rows: Rows) -> dict[str, Any]:
    """Per learner: the clean accuracy and, per attack, the test accuracy at each budget, the
    wall time of the trial that made the largest budget's row and of all its trials."""
    out: dict[str, Any] = {}
    for short, entries in TABLE6_ROWS.items():
        df = rows.checkpoints(f"paper-table6-{short}")
        budgets = sorted(int(b) for b in set(df.budget) - {0})
        attacks = []
        for label, title in entries:
            g = df[df.attack_label == label]
            top = g[g.budget == budgets[-1]]
            attacks.append(
                {
                    "label": label,
                    "title": title,
                    "paper": PAPER["table6"][short].get(label),
                    "acc": [float(g[g.budget == b].test_accuracy.iloc[0]) for b in budgets],
                    "top_seconds": float(g[g.trial_id == top.trial_id.iloc[0]].wall_seconds.max()),
                    "seconds": float(g.groupby("trial_id").wall_seconds.max().sum()),
                    "params": json.loads(g.attack_params.iloc[0]),
                    "diag": top.diag.iloc[0],
                }
            )
        n_train = int(df.n_train.iloc[0])
        mtp = next(a for a in attacks if a["label"] == "mtp")
        others = [a for a in attacks if a["label"] != "mtp"]
        gaps = [min(a["acc"][i] for a in others) - mtp["acc"][i] for i in range(len(budgets))]
        out[short] = {
            "mtp_best": all(g > 0 for g in gaps),
            "gaps": gaps,
            "gap_grows": all(b > a for a, b in zip(gaps, gaps[1:])),
            "budgets": budgets,
            "ratios": [b / n_train for b in budgets],
            "clean": float(df[df.budget == 0].test_accuracy.iloc[0]),
            "attacks": attacks,
            "by_label": {a["label"]: a for a in attacks},
        }
    return out


def transfer(rows: Rows) -> dict[str, Any]:
    """Test error (and the share of poisons a sanitiser removed) of each replayed poison set on
    each victim learner and defence; the victims' clean errors."""
    cells: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
    clean: dict[tuple[str, str], float] = {}
    for campaign in ("paper-transfer-mnist", "paper-transfer-mnist-mlp"):
        for r in rows.checkpoints(campaign).itertuples():
            victim = (r.learner, r.defence)
            if r.budget == 0:
                clean[victim] = 1.0 - float(r.test_accuracy)
                continue
            entry = error_and_caught(r)
            cells.setdefault(r.attack_label, {})[victim] = entry
    sources = [a["label"] for a in campaign_file("paper-transfer-mnist")["attacks"]]
    defences = ("none", "sphere", "slab", "loss", "knn", "svd", "trim")
    return {"cells": cells, "clean": clean, "sources": sources, "defences": defences}


#: the attacks of the combined matrix: (campaign, attack), unaware then aware
MATRIX_ATTACKS = (
    ("paper-sanitisers-mnist", "label-flip"),
    ("paper-sanitisers-mnist", "kkt"),
    ("paper-sanitisers-mnist", "mtp"),
    ("paper-sanitisers-aware-mnist", "kkt-defence-aware"),
    ("paper-sanitisers-aware-mnist", "mtp-defence-aware"),
    ("paper-sanitisers-aware-mnist", "min-max"),
)
#: the same six attacks on Adult, all in one campaign
ADULT_MATRIX_ATTACKS = tuple(("paper-sanitisers-adult", attack) for _, attack in MATRIX_ATTACKS)
SPHERE_SLAB = tuple(f'{d}(reference="{r}")' for d in ("sphere", "slab") for r in ("oracle", "empirical"))


AWARE = ("kkt-defence-aware", "mtp-defence-aware", "min-max")


def matrix(rows: Rows, columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Attacks that ignore the defence beside those that know sphere and slab, at the largest
    budget: error, caught share and clean hinge loss per defence, and each defence's error and
    clean loss without poisons (the first column's budget-0 rows); the largest error of any
    cell; the share sphere / slab remove at most; and per
    budget, min-max's certified upper bound on the clean objective beside the clean objective
    the harness measured for each aware attack's undefended victim."""
    cells: dict[str, dict[str, dict[str, float]]] = {}
    first_campaign, first_attack = columns[0]
    first = rows.checkpoints(first_campaign)
    unpoisoned = first[(first.attack == first_attack) & (first.budget == 0)]
    clean = {
        r.defence_label: {"error": 1.0 - float(r.test_accuracy), "loss": float(r.clean_loss)}
        for r in unpoisoned.itertuples()
    }
    top = 0
    for campaign, attack in columns:
        df = rows.checkpoints(campaign)
        top = int(df.budget.max())
        for r in df[(df.attack == attack) & (df.budget == top)].itertuples():
            entry = {**error_and_caught(r), "loss": float(r.clean_loss)}
            cells.setdefault(attack, {})[r.defence_label] = entry
    attacks = [a for _, a in columns]
    defences = sorted(cells["kkt"], key=lambda d: (d != "none", d))
    caught = {a: [cells[a][d]["caught"] for d in SPHERE_SLAB if d in cells[a]] for a in attacks}
    aware_caught_max = max(max(caught[a]) for a in AWARE)
    unaware_caught_max = {a: max(caught[a]) for a in ("kkt", "mtp")}
    aware_campaign = {a: c for c, a in columns}["min-max"]
    df = rows.checkpoints(aware_campaign)
    df = df[(df.defence == "none") & (df.budget > 0)]
    bound: dict[int, dict[str, float]] = {}
    for r in df[df.attack == "min-max"].itertuples():
        bound[int(r.budget)] = {"upper": r.diag["upper_bound"]}
    for r in df[df.attack.isin(AWARE)].itertuples():
        bound[int(r.budget)][r.attack] = float(r.clean_objective)
    return {
        "top": top,
        "n_train": int(first.n_train.iloc[0]),
        "clean": clean,
        "cells": cells,
        "attacks": attacks,
        "defences": defences,
        "caught_range": {a: (min(c), max(c)) for a, c in caught.items()},
        "aware_caught_max": aware_caught_max,
        "unaware_caught_max": max(unaware_caught_max.values()),
        "aware_evade": aware_caught_max < min(unaware_caught_max.values()),
        "clean_error_range": (min(c["error"] for c in clean.values()), max(c["error"] for c in clean.values())),
        "worst": max(((a, d) for a in attacks for d in defences), key=lambda k: cells[k[0]][k[1]]["error"]),
        "budgets": sorted(int(b) for b in set(first.budget) - {0}),
        "bound": dict(sorted(bound.items())),
        "aware": AWARE,
        "bound_holds": all(v[a] <= v["upper"] for v in bound.values() for a in AWARE),
    }


def regeneration() -> dict[str, Any]:
    data = json.loads((ROOT / "results" / "regeneration-spread.json").read_text(encoding="utf-8"))
    return {"cells": data["cells"], "runs": data["runs"]}


def context() -> dict[str, Any]:
    store = Store(STORE)
    rows = Rows(store)
    targets = mnist_targets(rows)
    return {
        "paper": PAPER,
        "header": header(rows, store),
        "provenance": json.loads((ROOT / "results" / "paper-repro-provenance.json").read_text(encoding="utf-8")),
        "sizes": mnist_sizes(rows),
        "clean": clean(rows),
        "targets": targets,
        "koh": koh(rows, targets),
        "flip": random_flip(rows),
        "copies": copies(rows),
        "adult": adult(rows),
        "table2": mnist_table2(rows),
        "fig1": fig1(rows),
        "rmd": rmd(rows),
        "mlp": mlp(rows),
        "learned_l2": learned_l2(rows),
        "sanitisers": sanitisers(rows),
        "aware": matrix(rows, MATRIX_ATTACKS),
        "adult_matrix": matrix(rows, ADULT_MATRIX_ATTACKS),
        "table6": table6(rows),
        "transfer": transfer(rows),
        "regen": regeneration(),
        "rates": RATES,
    }


def pct(x: float | None, digits: int = 1) -> str:
    """0.945 -> '94.5 %'."""
    return "–" if x is None else f"{100 * x:.{digits}f} %"


def num(x: float | None) -> str:
    """1737 -> '1,737'; a float is rounded first."""
    return "–" if x is None else f"{round(x):,}"


def sig(x: float, digits: int = 2) -> str:
    """Fixed point with ``digits`` decimals and a real minus sign."""
    return f"{x:.{digits}f}".replace("-", "−")


def rate(target: str) -> str:
    """'error:0.1' -> '10 %'."""
    return f"{float(target.split(':')[1]) * 100:g} %"


def render() -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=pct, num=num, sig=sig, rate=rate, frac=fraction, extract=lambda key, d: d[key])
    env.globals.update(pct=pct)
    env.tests.update(
        improved_helps=lambda t, targets: targets[t]["n_p"] > targets[f"{t}:improved"]["n_p"],
        koh_reproduced=lambda t, koh: koh[t]["ratio"] > 1,
        mtp_not_worse=lambda cell: cell["mtp"] <= cell["kkt"],
        kkt_above_mtp=lambda e: e["kkt"] > e["mtp"],
    )
    return env.get_template(TEMPLATE.name).render(**context())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/reproduction.md is not the rendering")
    args = parser.parse_args()
    text = render()
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            raise SystemExit(f"{OUTPUT.relative_to(ROOT)} is stale: run python docs/scripts/reproduction_report.py")
        return
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
