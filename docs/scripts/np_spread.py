"""n_p of the MNIST 1–7 MTP targets under perturbations far below any real signal.

MTP's path is chaotic in near-ties of its argmax, so the number of poisons it needs (n_p) moves
when the data move by rounding-sized amounts, as they do between BLAS builds and CPUs. This runs
every MTP trial of ``campaigns/paper-mnist-targets.toml`` unperturbed and with every feature
multiplied by ``1 + rel·N(0, 1)`` (``rel = 1e-12``) under several noise seeds, and writes n_p and
the lower bound of each run to ``results/np-spread.json`` (docs/reproduction.md, "Sensitivity").

    python docs/scripts/np_spread.py [--seeds 1 2 3 4] [--rel 1e-12]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from poisonbench.campaign import ComponentSpec, load_campaign  # noqa: E402
from poisonbench.trial import host_for, run_trial  # noqa: E402

OUT = ROOT / "results" / "np-spread.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--rel", type=float, default=1e-12)
    args = parser.parse_args()
    campaign = load_campaign(ROOT / "campaigns" / "paper-mnist-targets.toml")
    host = host_for(("plugins_for_tests.perturbed",))
    (dataset,) = campaign.components["datasets"]
    out: dict[str, dict[str, list[float]]] = {}
    for noise in [None, *args.seeds]:
        spec = dataset
        if noise is not None:
            params = {"inner": dataset.name, "inner_params": dataset.params, "rel": args.rel, "noise_seed": noise}
            spec = ComponentSpec("datasets", "perturbed", params, dataset.label)
        variant = dataclasses.replace(campaign, components={**campaign.components, "datasets": (spec,)})
        for trial in variant.trials(host.registry):
            last = [r for r in run_trial(trial, host) if r["kind"] == "checkpoint"][-1]
            entry = out.setdefault(trial.attack.label, {"n_p": [], "lower_bound": [], "noise_seed": []})
            entry["n_p"].append(last["n_poisons"])
            entry["lower_bound"].append(last["lower_bound"])
            entry["noise_seed"].append(noise)
            print(
                f"{trial.attack.label:34} noise {noise!s:5} n_p {last['n_poisons']:5} "
                f"bound {last['lower_bound']:.1f} {last['status']}",
                flush=True,
            )
    OUT.write_text(
        json.dumps(
            {"command": "python docs/scripts/np_spread.py " + " ".join(sys.argv[1:]), "rel": args.rel, "targets": out},
            indent=2,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
