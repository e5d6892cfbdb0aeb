"""Executor overhead and scaling: local (in-process) vs Ray with 1 and 2 worker CPUs.

Two workloads from the test plugins (``tests/plugins_for_tests/toy.py``: closed-form ridge
learner, random label-flip attack), run through ``executor.run`` without the store:

- ``short``: 40 trials of a few milliseconds (tiny data, 2 checkpoints): the per-trial cost
  of dispatching a trial (Ray task, streaming start signal, result transfer) dominates.
- ``cpu``: 8 CPU-bound trials (4,000 × 200 data, 20 checkpoints = 20 ridge fits): shows how
  wall time scales from 1 to 2 Ray workers.

BLAS is limited to one thread (``OMP_NUM_THREADS=1`` … set here before numpy loads, as Ray
does for its workers), so that local and Ray trials do the same work per core.

Each Ray configuration starts its own local Ray (``ray.init`` time reported apart), runs the
workload once cold (workers start and import the plugins) and once warm; the table gives
wall seconds and seconds per trial. The store's cost is measured apart (one Parquet file per
trial, temp file + fsync + rename).

    python benchmarks/bench_executors.py            # prints a Markdown table
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("POISONBENCH_LOAD_PLUGINS", "")

from poisonbench.campaign import parse_campaign
from poisonbench.executors.local import LocalExecutor
from poisonbench.executors.ray_executor import RayExecutor
from poisonbench.host import load_host
from poisonbench.leaderboards.store import Store

PLUGINS = ("plugins_for_tests.toy",)
WORKLOADS = {
    "short": {"seeds": list(range(40)), "budgets": [0, 2], "params": {"n": 40, "d": 3}},
    "cpu": {"seeds": list(range(8)), "budgets": list(range(0, 200, 10)), "params": {"n": 4000, "d": 200}},
}


def trials(host, workload: str):
    w = WORKLOADS[workload]
    campaign = parse_campaign(
        {
            "name": f"bench-{workload}",
            "seeds": w["seeds"],
            "budgets": w["budgets"],
            "datasets": [{"name": "tiny", "params": w["params"]}],
            "learners": [{"name": "toy-ridge"}],
            "attacks": [{"name": "toy-flip"}],
        }
    )
    return campaign.trials(host.registry)


def timed(executor, todo) -> float:
    t0 = time.perf_counter()
    outcomes = list(executor.run(todo))
    wall = time.perf_counter() - t0
    assert len(outcomes) == len(todo) and all(o.status == "ok" for o in outcomes), [o.error for o in outcomes]
    return wall


def main() -> None:
    import ray

    host = load_host(PLUGINS, load_external=False)
    work = {name: trials(host, name) for name in WORKLOADS}
    results: list[tuple[str, str, str, float, int]] = []
    local = LocalExecutor(host, PLUGINS)
    for name, todo in work.items():
        timed(local, todo[:1])  # imports / first fit
        results.append(("local (in-process)", name, "warm", timed(local, todo), len(todo)))
    env = {"PYTHONPATH": str(ROOT / "tests"), "POISONBENCH_LOAD_PLUGINS": ""}
    for cpus in (1, 2):
        t0 = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=cpus,
            object_store_memory=128 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env},
        )
        results.append((f"ray, {cpus} CPU", "ray.init", "", time.perf_counter() - t0, 0))
        executor = RayExecutor(PLUGINS)
        for name, todo in work.items():
            results.append(
                (f"ray, {cpus} CPU", name, "cold" if name == "short" else "warm", timed(executor, todo), len(todo))
            )
        results.append((f"ray, {cpus} CPU", "short", "warm", timed(executor, work["short"]), len(work["short"])))
        ray.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        outcomes = list(local.run(work["short"]))
        t0 = time.perf_counter()
        for o in outcomes:
            store.write_trial("bench", o.trial.trial_id, o.rows)
        results.append(("store write", "short", "", time.perf_counter() - t0, len(outcomes)))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"host: {platform.node()}, {os.cpu_count()} CPUs, load average {load}, python {platform.python_version()}, ray {ray.__version__}"
    )
    print("| executor | workload | state | trials | wall s | s / trial |")
    print("|---|---|---|---|---|---|")
    for executor_name, workload, state, wall, n in results:
        per = f"{wall / n:.4f}" if n else "-"
        print(f"| {executor_name} | {workload} | {state} | {n or '-'} | {wall:.2f} | {per} |")


if __name__ == "__main__":
    main()
