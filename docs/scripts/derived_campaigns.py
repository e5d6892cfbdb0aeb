"""Write the Adult KKT campaigns from MTP's n_p in the committed store (no number typed by hand).

For each learner (``svm``, ``logistic``) and each subpopulation of ``paper-adult-<svm|lr>``,
n_p is ``n_poisons`` of MTP's checkpoint at the largest budget (ε-close, or the budget when MTP
did not get there: the file says which). The KKT campaign of that cluster runs KKT (one trial per
budget) and subpopulation label flipping at 0.2 / 0.4 / 0.6 / 0.8 / 1.0 × n_p (floored): the
MTP paper's Table 1 comparison and "MTP vs subpopulation label flipping at the same budget".

    python docs/scripts/adult_kkt_campaigns.py        # writes campaigns/paper-adult-kkt-*-cluster-*.toml
"""

from __future__ import annotations

from pathlib import Path

from poisonbench.leaderboards.store import Store

ROOT = Path(__file__).resolve().parents[2]
FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
LEARNERS = {"svm": ("svm", "SVM", 0.01, ", bound_induced = true"), "lr": ("logistic", "LR", 0.05, "")}

TEMPLATE = """# MTP paper Table 1 ("MTP vs KKT, Adult subpopulations, {title}"), KKT half for {cluster}, plus
# subpopulation label flipping at the same budgets ("MTP vs subpopulation label flipping, same
# budget"). Target: the same "subpop" target model as MTP's.
#
# Written by docs/scripts/adult_kkt_campaigns.py from results/paper-repro: budgets are
# 0.2 / 0.4 / 0.6 / 0.8 / 1.0 x n_p (floored), n_p = {n_p} = `n_poisons` of MTP's last checkpoint
# in campaigns/paper-adult-{short}.toml ({how}). KKT is a budgeted attack: one trial per budget.
#
#   poisonbench run campaigns/paper-adult-kkt-{short}-{cluster}.toml --store results/paper-repro
name = "paper-adult-kkt-{short}-{cluster}"
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


def mtp_np(store: Store, campaign: str) -> dict[str, tuple[int, bool]]:
    """cluster -> (n_poisons at the largest budget, ε-close) of MTP in ``campaign``."""
    rows = [r for r in store.read([campaign]).to_pylist() if r["kind"] == "checkpoint" and r["attack"] == "mtp"]
    top = max(r["budget"] for r in rows)
    return {r["subpopulation"]: (int(r["n_poisons"]), bool(r["stopped_early"])) for r in rows if r["budget"] == top}


def main() -> None:
    store = Store(ROOT / "results" / "paper-repro")
    for short, (learner, title, epsilon, bound) in LEARNERS.items():
        for cluster, (n_p, close) in sorted(mtp_np(store, f"paper-adult-{short}").items()):
            how = f"{epsilon}-close" if close else f"the budget: MTP was not {epsilon}-close within {n_p} poisons"
            budgets = ", ".join(str(int(f * n_p)) for f in FRACTIONS)
            text = TEMPLATE.format(
                title=title,
                cluster=cluster,
                n_p=n_p,
                short=short,
                how=how,
                budgets=budgets,
                learner=learner,
                bound=bound,
            )
            path = ROOT / "campaigns" / f"paper-adult-kkt-{short}-{cluster}.toml"
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}: n_p = {n_p}, budgets {budgets}")


if __name__ == "__main__":
    main()
