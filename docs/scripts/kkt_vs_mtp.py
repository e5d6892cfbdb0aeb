"""MTP vs KKT at {0.2, 0.4, 0.6, 0.8, 1.0} × n_p and MTP vs subpopulation label flipping
(MTP paper Tables 1, 2 and 7) on the data shipped here; prints Markdown tables for
docs/baselines.md and writes every number to a JSON file.

For each case (an Adult subpopulation or an MNIST 1–7 error target):

1. run MTP (Algorithm 1) toward the target until ε-close (or ``--max-poisons``); n_p is the
   number of poisons it used; its accuracy at k poisons is read from its per-iteration
   diagnostics;
2. run KKT once per budget ⌊f · n_p⌋, f ∈ {0.2, …, 1.0}, toward the same target;
3. Adult only (Table 7): n_0 = the first MTP iteration with 0 % subpopulation accuracy; inject
   n_0 subpopulation label flips (``--flip-seeds`` seeds) and retrain.

Accuracy is on the subpopulation's test points (Adult) or on the whole test split (MNIST).

    python docs/scripts/kkt_vs_mtp.py --cases adult-svm adult-logistic mnist-svm mnist-logistic \\
        --out /tmp/kkt_vs_mtp.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from poisonbench.attack import Scenario
from poisonbench.dataset import Dataset
from poisonbench.plugins.attacks.kkt import KKTAttack
from poisonbench.plugins.attacks.label_flip import SubpopulationLabelFlip
from poisonbench.plugins.attacks.mtp import ModelTargetedPoisoning
from poisonbench.plugins.learners.linear import LinearSVM, LogisticRegression

FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
#: ε of the paper (section 5): Adult 0.01 SVM / 0.05 LR, MNIST 1–7 0.1.
EPSILON = {("adult", "svm"): 0.01, ("adult", "logistic"): 0.05, ("mnist", "svm"): 0.1, ("mnist", "logistic"): 0.1}
ERROR_TARGETS = ("error:0.05", "error:0.1", "error:0.15")


def log(*parts: Any) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def make_learner(name: str):
    return LinearSVM() if name == "svm" else LogisticRegression()


def cases(dataset: str, learner_name: str, n_subpops: int) -> tuple[Dataset, list[tuple[str, str | None]]]:
    """The dataset and its (target spec, subpopulation) cases."""
    if dataset == "adult":
        from poisonbench.plugins.datasets.adult import adult, top_subpopulations

        data = adult()
        clean = make_learner(learner_name).fit(data.X_train, data.y_train)
        return data, [("subpop", name) for name in top_subpopulations(data, clean, n_subpops)]
    from poisonbench.plugins.datasets.mnist import mnist

    return mnist(pair="1v7"), [(spec, None) for spec in ERROR_TARGETS]


def accuracy_of(diag: dict, subpopulation: str | None) -> float:
    return float(diag["subpop_accuracy"] if subpopulation is not None else diag["test_accuracy"])


def run_case(
    data: Dataset, dataset: str, learner_name: str, spec: str, subpopulation: str | None, args: argparse.Namespace
) -> dict:
    learner = make_learner(learner_name)
    eps = EPSILON[(dataset, learner_name)]
    scenario = Scenario(data, learner, seed=0, subpopulation=subpopulation)
    mtp = ModelTargetedPoisoning(
        target=spec,
        epsilon=eps,
        copies=args.copies,
        max_poisons=args.max_poisons,
        restarts=args.lr_restarts,
        max_steps=args.lr_steps,
    )
    target = mtp.target_model(scenario)
    t0 = time.perf_counter()
    trace = []
    for batch in mtp.poison(scenario):
        d = batch.diagnostics
        trace.append(
            {k: d[k] for k in ("n_poisons", "max_loss_diff", "param_distance", "test_accuracy", "subpop_accuracy")}
        )
        if len(trace) % 200 == 0:
            log(f"  mtp n={d['n_poisons']} mld={d['max_loss_diff']:.4g} acc={accuracy_of(d, subpopulation):.3f}")
    mtp_seconds = time.perf_counter() - t0
    n_p = trace[-1]["n_poisons"]
    closest = trace[-1]["max_loss_diff"] <= eps
    log(f"  mtp done: n_p={n_p} eps-close={closest} in {mtp_seconds:.0f}s")
    rows = []
    for frac in FRACTIONS:
        n = int(n_p * frac)
        at = [r for r in trace if r["n_poisons"] <= n][-1]
        t0 = time.perf_counter()
        kkt_attack = KKTAttack(target, split_step=args.split_step)
        kkt = next(iter(kkt_attack.poison(Scenario(data, learner, budget=n, seed=0, subpopulation=subpopulation))))
        kd = kkt.diagnostics
        rows.append(
            {
                "fraction": frac,
                "n": n,
                "mtp_accuracy": accuracy_of(at, subpopulation),
                "mtp_param_distance": at["param_distance"],
                "kkt_accuracy": accuracy_of(kd, subpopulation),
                "kkt_param_distance": kd["param_distance"],
                "kkt_objective": kd.get("kkt_objective"),
                "kkt_search_objective": kd.get("kkt_search_objective"),
                "kkt_split": kd.get("split"),
                "kkt_seconds": time.perf_counter() - t0,
            }
        )
        log(
            f"  f={frac} n={n} mtp={rows[-1]['mtp_accuracy']:.3f} kkt={rows[-1]['kkt_accuracy']:.3f} "
            f"kkt_obj={kd.get('kkt_objective', float('nan')):.3g} ({rows[-1]['kkt_seconds']:.0f}s)"
        )
    out = {
        "dataset": dataset,
        "learner": learner_name,
        "target": spec,
        "subpopulation": subpopulation,
        "epsilon": eps,
        "n_p": n_p,
        "epsilon_close": bool(closest),
        "mtp_seconds": mtp_seconds,
        "target_accuracy": (
            target.accuracy(
                data.X_test[data.subpopulation(subpopulation).test_idx],
                data.y_test[data.subpopulation(subpopulation).test_idx],
            )
            if subpopulation
            else target.accuracy(data.X_test, data.y_test)
        ),
        "clean_accuracy": accuracy_of(trace[0], subpopulation),
        "rows": rows,
    }
    if subpopulation is not None:
        out["label_flip"] = label_flip_comparison(data, learner, subpopulation, trace, args.flip_seeds)
    return out


def label_flip_comparison(data: Dataset, learner, subpopulation: str, trace: list[dict], seeds: int) -> dict:
    """Table 7: subpopulation label flipping with as many points as MTP needed for 0 % accuracy."""
    zero = [r for r in trace if r["subpop_accuracy"] == 0.0]
    if not zero:
        return {"n_0": None, "note": "MTP never reached 0 % subpopulation accuracy"}
    n_0 = zero[0]["n_poisons"]
    test_idx = data.subpopulation(subpopulation).test_idx
    accs = []
    for seed in range(seeds):
        scenario = Scenario(data, learner, budget=n_0, seed=seed, subpopulation=subpopulation)
        flips = list(SubpopulationLabelFlip(batch_size=max(n_0, 1)).poison(scenario))
        X = np.vstack([data.X_train, *[b.X for b in flips]])
        y = np.concatenate([data.y_train, *[b.y for b in flips]])
        model = learner.fit(X, y)
        accs.append(model.accuracy(data.X_test[test_idx], data.y_test[test_idx]))
    log(f"  label flip n_0={n_0}: subpop acc {np.mean(accs):.3f} ± {np.std(accs) / np.sqrt(len(accs)):.3f}")
    return {
        "n_0": n_0,
        "accuracies": accs,
        "mean": float(np.mean(accs)),
        "se": float(np.std(accs, ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else 0.0,
    }


def markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        name = r["subpopulation"] or r["target"]
        lines.append(
            f"\n**{r['dataset']} / {r['learner']} / {name}**: n_p = {r['n_p']} "
            f"(ε = {r['epsilon']}, ε-close: {'yes' if r['epsilon_close'] else 'no'}), "
            f"clean {100 * r['clean_accuracy']:.1f} %, target {100 * r['target_accuracy']:.1f} %\n"
        )
        lines.append("| poisons | " + " | ".join(f"{row['fraction']:g}·n_p = {row['n']}" for row in r["rows"]) + " |")
        lines.append("|---" * (len(r["rows"]) + 1) + "|")
        lines.append("| KKT | " + " | ".join(f"{100 * row['kkt_accuracy']:.1f}" for row in r["rows"]) + " |")
        lines.append("| MTP | " + " | ".join(f"{100 * row['mtp_accuracy']:.1f}" for row in r["rows"]) + " |")
        lines.append("| KKT ‖θ−θ_p‖ | " + " | ".join(f"{row['kkt_param_distance']:.3g}" for row in r["rows"]) + " |")
        lines.append("| MTP ‖θ−θ_p‖ | " + " | ".join(f"{row['mtp_param_distance']:.3g}" for row in r["rows"]) + " |")
    flips = [r for r in results if "label_flip" in r]
    if flips:
        lines.append("\n| dataset / learner / subpopulation | n_0 (MTP reaches 0 %) | MTP | subpop label flip |")
        lines.append("|---|---|---|---|")
        for r in flips:
            lf = r["label_flip"]
            if lf["n_0"] is None:
                lines.append(f"| {r['dataset']} / {r['learner']} / {r['subpopulation']} | not reached | – | – |")
            else:
                lines.append(
                    f"| {r['dataset']} / {r['learner']} / {r['subpopulation']} | {lf['n_0']} | 0.0 % | "
                    f"{100 * lf['mean']:.1f} ± {100 * lf['se']:.1f} % |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["adult-svm", "adult-logistic", "mnist-svm", "mnist-logistic"],
        choices=["adult-svm", "adult-logistic", "mnist-svm", "mnist-logistic"],
    )
    parser.add_argument("--subpops", type=int, default=3, help="Adult: the k most accurate clusters")
    parser.add_argument("--copies", type=int, default=1, help="MTP: copies per iteration")
    parser.add_argument("--max-poisons", type=int, default=None, help="MTP: cap on n_p")
    parser.add_argument("--split-step", type=float, default=0.005, help="KKT: grid step of n₊/n")
    parser.add_argument("--lr-restarts", type=int, default=10, help="MTP, logistic: Adam restarts")
    parser.add_argument("--lr-steps", type=int, default=20_000, help="MTP, logistic: Adam steps")
    parser.add_argument("--flip-seeds", type=int, default=4)
    parser.add_argument("--out", default="kkt_vs_mtp.json")
    args = parser.parse_args(argv)
    results = []
    for case in args.cases:
        dataset, learner_name = case.split("-")
        data, specs = cases(dataset, learner_name, args.subpops)
        for spec, sub in specs:
            log(f"{case} {spec} {sub or ''}")
            results.append(run_case(data, dataset, learner_name, spec, sub, args))
            with open(args.out, "w") as fh:
                json.dump({"args": vars(args), "results": results}, fh, indent=1)
    print(markdown(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
