"""Write the campaigns whose budgets come from MTP's rows in the committed store (no number typed by hand).

n_p is ``n_poisons`` of MTP's checkpoint at the campaign's largest budget (ε-close, or the
budget when MTP did not get there: each file says which).

- ``paper-adult-kkt-<svm|lr>-<cluster>``: for each subpopulation of ``paper-adult-<svm|lr>``,
  KKT (one trial per budget) and subpopulation label flipping at 0.2 / 0.4 / 0.6 / 0.8 / 1.0 ×
  n_p (floored): the MTP paper's Table 1 comparison.
- ``paper-mnist-kkt-<svm|lr>-<target>``: for each target of ``paper-mnist-mtp-<svm|lr>``, KKT
  at the same fractions of n_p: Table 2's KKT half (SVM: with Table 3's bound for the
  KKT-induced model).
- ``paper-adult-labelflip-<svm|lr>``: subpopulation label flipping over 4 seeds at the paper's
  Table 7 budget, the first number of poisons at which MTP's model has 0 % accuracy on the
  cluster (from MTP's checkpoint and trace rows; n_p where it never does).
- ``paper-transfer-mnist`` / ``paper-transfer-mnist-mlp``: the poison sets of Table 6's attacks
  at 30 % (``paper-table6-<svm|lr>``, trial ids and content hashes read from the store)
  replayed against the other learners and the sanitisers: the transfer matrix.

    python docs/scripts/derived_campaigns.py        # writes those files under campaigns/
"""

from __future__ import annotations

import json
from pathlib import Path

from poisonbench.leaderboards.store import Store

ROOT = Path(__file__).resolve().parents[2]
FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
#: short name -> (learner, title, MTP's ε, extra KKT parameters)
LEARNERS = {"svm": ("svm", "SVM", 0.01, ", bound_induced = true"), "lr": ("logistic", "LR", 0.05, "")}
MNIST_EPSILON = 0.1
LABELFLIP_SEEDS = (0, 1, 2, 3)

HEADER = """#
# Written by docs/scripts/derived_campaigns.py from results/paper-repro: budgets are
# 0.2 / 0.4 / 0.6 / 0.8 / 1.0 x n_p (floored), n_p = {n_p} = `n_poisons` of MTP's last checkpoint
# in campaigns/{source}.toml ({how}). KKT is a budgeted attack: one trial per budget.
#
#   poisonbench run campaigns/{name}.toml --store results/paper-repro
"""

ADULT_KKT = (
    """# MTP paper Table 1 ("MTP vs KKT, Adult subpopulations, {title}"), KKT half for {cluster}, plus
# subpopulation label flipping at the same budgets ("MTP vs subpopulation label flipping, same
# budget"). Target: the same "subpop" target model as MTP's.
"""
    + HEADER
    + """name = "{name}"
description = "Adult {cluster}, {title}: KKT and subpopulation label flipping at fractions of MTP's n_p = {n_p}"
seeds = [0]
budgets = [0, {budgets}]
timeout = 3000

[[datasets]]
name = "adult"
subpopulations = ["{cluster}"]

[[learners]]
name = "{learner}"

[[defences]]
name = "none"

[[attacks]]
name = "kkt"
params = {{ target = "subpop"{bound} }}

[[attacks]]
name = "subpop-label-flip"
params = {{ batch_size = 50 }}
"""
)

MNIST_KKT = (
    """# MTP paper Table 2 ("indiscriminate attack on MNIST 1-7", {title}), KKT half for the {target}
# target: the same target model as MTP's (the reference grid).{table3}
"""
    + HEADER
    + """name = "{name}"
description = "MNIST 1v7, {title}: KKT toward the {target} target at fractions of MTP's n_p = {n_p}"
seeds = [0]
budgets = [0, {budgets}]
timeout = 3000

[[datasets]]
name = "mnist"
params = {{ pair = "1v7" }}

[[learners]]
name = "{learner}"

[[defences]]
name = "none"

[[attacks]]
name = "kkt"
params = {{ target = "{target}"{bound} }}
"""
)

LABELFLIP = """# MTP paper Table 7 ("comparison of our attack to the label-flipping based subpopulation
# attack", {title}): subpopulation label flipping (Jagielski et al. 2019, randomly sampled points
# of the cluster with flipped labels) at the number of poisons at which MTP first reaches 0 %
# accuracy on the cluster, as the paper does; 4 seeds (the flipped points are drawn at random).
#
# Written by docs/scripts/derived_campaigns.py from results/paper-repro: the budgets are, per
# cluster, the first `n_poisons` of MTP's checkpoint and trace rows in campaigns/{source}.toml
# with subpopulation accuracy 0, or n_p where MTP never reached 0 % ({firsts}).
#
#   poisonbench run campaigns/{name}.toml --store results/paper-repro
name = "{name}"
description = "Adult, {title}: subpopulation label flipping at MTP's first 0 % budget per cluster, 4 seeds"
seeds = [{seeds}]
budgets = [0, {budgets}]
timeout = 3000

[[datasets]]
name = "adult"
subpopulations = [{clusters}]

[[learners]]
name = "{learner}"

[[defences]]
name = "none"

[[attacks]]
name = "subpop-label-flip"
params = {{ batch_size = 50 }}
"""


TRANSFER_SOURCES = {
    "paper-table6-svm": ("svm", ("mtp", "min-max", "biggio-svm", "influence")),
    "paper-table6-lr": ("lr", ("mtp", "gradient-lr", "influence")),
}
TRANSFER_BUDGET = 240

TRANSFER = """# Transfer matrix (issue #16): the poisons Table 6's attacks crafted at 30 % (240 of 800 points)
# against one learner, replayed by the `replay` attack against
# {victims}.
# Each source is pinned by its trial id and its poison set's content hash; the label says which
# attack crafted it against which learner (`mtp@svm`: MTP against the SVM). Budget 0 is each
# victim's clean model.{note}
#
# Written by docs/scripts/derived_campaigns.py from results/paper-repro (campaigns
# paper-table6-svm and paper-table6-lr).
#
#   poisonbench run campaigns/{name}.toml --store results/paper-repro
name = "{name}"
description = "MNIST 1v7: Table 6's 30 % poison sets replayed against {short_victims}"
seeds = [0]
budgets = [0, {budget}]
timeout = 3000
store_poisons = false              # the replayed sets are the sources' (paper-table6-*/_poisons)

[[datasets]]
name = "mnist"
params = {{ pair = "1v7" }}
{learners}{defences}{attacks}"""

TRANSFER_VICTIMS = {
    "paper-transfer-mnist": (
        "the linear SVM and logistic regression, each undefended and behind the six sanitisers\n"
        "# (5 % of each class, empirical statistics: the data a defender sees)",
        "SVM and LR x none and six sanitisers",
        "",
        ("svm", "logistic"),
        ("none", "sphere", "slab", "loss", "knn", "svd", "trim"),
    ),
    "paper-transfer-mnist-mlp": (
        "an MLP (torch-mlp, d x 128 x 32 x 1), undefended",
        "an MLP",
        "\n# The MLP: 600 full-batch gradient steps in float32 (torch-mlp's defaults otherwise).",
        ("torch-mlp",),
        ("none",),
    ),
}


def transfer_sources(store: Store) -> list[tuple[str, str, str, str]]:
    """(label, campaign, trial id, poisons_sha256) of each Table 6 poison set at the transfer budget."""
    out = []
    for campaign, (short, attacks) in TRANSFER_SOURCES.items():
        rows = [
            r
            for r in store.read([campaign]).to_pylist()
            if r["kind"] == "checkpoint" and r["status"] == "ok" and r["budget"] == TRANSFER_BUDGET
        ]
        for attack in attacks:
            (row,) = [r for r in rows if r["attack_label"] == attack]
            out.append((f"{attack}@{short}", campaign, row["trial_id"], row["poisons_sha256"]))
    return out


def transfer_campaign(name: str, sources: list[tuple[str, str, str, str]]) -> str:
    victims, short_victims, note, learners, defences = TRANSFER_VICTIMS[name]
    learner_params = {"torch-mlp": '\nparams = { dtype = "float32" }'}
    return TRANSFER.format(
        name=name,
        victims=victims,
        short_victims=short_victims,
        note=note,
        budget=TRANSFER_BUDGET,
        learners="".join(f'\n[[learners]]\nname = "{lr}"{learner_params.get(lr, "")}\n' for lr in learners),
        defences="".join(
            f'\n[[defences]]\nname = "{d}"' + ("" if d == "none" else '\nparams = { reference = "empirical" }') + "\n"
            for d in defences
        ),
        attacks="".join(
            f'\n[[attacks]]\nname = "replay"\nlabel = "{label}"\n'
            f'params = {{ store = "../results/paper-repro", campaign = "{campaign}", trial = "{trial}", '
            f'sha256 = "{sha}" }}\n'
            for label, campaign, trial, sha in sources
        ),
    )


def mtp_rows(store: Store, campaign: str) -> list[dict]:
    return [r for r in store.read([campaign]).to_pylist() if r["attack"] == "mtp" and r["status"] == "ok"]


def mtp_np(store: Store, campaign: str, key: str) -> dict[str, tuple[int, bool]]:
    """``key`` value (subpopulation or target) -> (n_poisons at the largest budget, ε-close) of MTP."""
    rows = [r for r in mtp_rows(store, campaign) if r["kind"] == "checkpoint"]
    top = max(r["budget"] for r in rows)
    return {r[key]: (int(r["n_poisons"]), bool(r["stopped_early"])) for r in rows if r["budget"] == top}


def first_zero(store: Store, campaign: str) -> dict[str, int]:
    """cluster -> the fewest poisons at which MTP's model has 0 % subpopulation accuracy: measured
    on a checkpoint row, MTP's own θ_t (diagnostic ``subpop_accuracy``) on a trace row."""
    out: dict[str, int] = {}
    for r in mtp_rows(store, campaign):
        accuracy = (
            r["subpop_accuracy"] if r["kind"] == "checkpoint" else json.loads(r["diagnostics"]).get("subpop_accuracy")
        )
        if accuracy is not None and accuracy == 0.0:
            out[r["subpopulation"]] = min(out.get(r["subpopulation"], 1 << 30), int(r["n_poisons"]))
    return out


def fractions(n_p: int) -> str:
    return ", ".join(str(int(f * n_p)) for f in FRACTIONS)


def write(name: str, text: str, note: str) -> None:
    path = ROOT / "campaigns" / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}: {note}")


def main() -> None:
    store = Store(ROOT / "results" / "paper-repro")
    for short, (learner, title, epsilon, bound) in LEARNERS.items():
        source = f"paper-adult-{short}"
        for cluster, (n_p, close) in sorted(mtp_np(store, source, "subpopulation").items()):
            how = f"{epsilon}-close" if close else f"the budget: MTP was not {epsilon}-close within {n_p} poisons"
            name = f"paper-adult-kkt-{short}-{cluster}"
            fields = dict(title=title, cluster=cluster, n_p=n_p, source=source, how=how, name=name)
            text = ADULT_KKT.format(**fields, budgets=fractions(n_p), learner=learner, bound=bound)
            write(name, text, f"n_p = {n_p}, budgets {fractions(n_p)}")

        final = mtp_np(store, source, "subpopulation")
        firsts = first_zero(store, source)
        clusters = sorted(final)
        never = {c: final[c][0] for c in clusters if c not in firsts}
        name = f"paper-adult-labelflip-{short}"
        budgets = ", ".join(str(b) for b in sorted(set(firsts.values()) | set(never.values())))
        text = LABELFLIP.format(
            title=title,
            source=source,
            name=name,
            firsts=", ".join(
                f"{c}: {firsts[c]}" if c in firsts else f"{c}: never, so n_p = {never[c]}" for c in clusters
            ),
            seeds=", ".join(str(s) for s in LABELFLIP_SEEDS),
            budgets=budgets,
            clusters=", ".join(f'"{c}"' for c in clusters),
            learner=learner,
        )
        write(name, text, f"budgets {budgets}")

        source = f"paper-mnist-mtp-{short}"
        if source not in store.campaigns():
            print(f"skipped the MNIST KKT campaigns of {short}: run campaigns/{source}.toml first")
            continue
        table3 = "\n# With Table 3's certified bound for the KKT-induced model (`bound_induced`)." if bound else ""
        for target, (n_p, close) in sorted(mtp_np(store, source, "target").items()):
            how = (
                f"{MNIST_EPSILON}-close"
                if close
                else f"the budget: MTP was not {MNIST_EPSILON}-close within {n_p} poisons"
            )
            name = f"paper-mnist-kkt-{short}-{target.replace(':', '-')}"
            fields = dict(title=title, target=target, n_p=n_p, source=source, how=how, name=name)
            text = MNIST_KKT.format(**fields, table3=table3, budgets=fractions(n_p), learner=learner, bound=bound)
            write(name, text, f"n_p = {n_p}, budgets {fractions(n_p)}")

    if not set(TRANSFER_SOURCES) <= set(store.campaigns()):
        print("skipped the transfer campaigns: run campaigns/paper-table6-{svm,lr}.toml first")
        return
    sources = transfer_sources(store)
    for name in TRANSFER_VICTIMS:
        write(name, transfer_campaign(name, sources), f"{len(sources)} poison sets")


if __name__ == "__main__":
    main()
