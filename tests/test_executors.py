"""Executors and the campaign driver: skipping finished trials, failure isolation, timeouts,
worker crashes, lifecycle hooks, and the Ray executor giving the same rows as the local one."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from poisonbench.campaign import load_campaign
from poisonbench.executors import make_executor, run_campaign
from poisonbench.executors.local import LocalExecutor
from poisonbench.executors.ray_executor import RayExecutor, check_resources
from poisonbench.host import load_host
from poisonbench.leaderboards.store import Store
from poisonbench.results import METRIC_COLUMNS

TESTS = Path(__file__).parent
PLUGINS = ("plugins_for_tests.toy", "plugins_for_tests.faulty")
METRICS = (
    "trial_id",
    "kind",
    "checkpoint",
    "step",
    "budget",
    "n_poisons",
    "status",
    *METRIC_COLUMNS,
    "diagnostics",
)


@pytest.fixture(scope="module")
def host():
    return load_host(PLUGINS, load_external=False)


def make_campaign(
    tmp_path: Path, attacks: str, top: str = "", name: str = "c", seeds: str = "[0, 1]", tables: str = ""
) -> Path:
    text = f'name = "{name}"\nseeds = {seeds}\nbudgets = [0, 2, 4]\n{top}\n{tables}\n'
    text += '[[datasets]]\nname = "tiny"\n[[learners]]\nname = "toy-ridge"\n' + textwrap.dedent(attacks)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def run(path, host, store, executor=None, **kw):
    campaign = load_campaign(path)
    trials = campaign.trials(host.registry)
    executor = executor or LocalExecutor(host, PLUGINS)
    return run_campaign(campaign.name, trials, executor, store, host, **kw)


def metric_rows(table):
    rows = [{k: r[k] for k in METRICS} for r in table.to_pylist()]
    return sorted(rows, key=lambda r: (r["trial_id"], r["kind"], r["step"], r["checkpoint"]))


def test_failures_are_isolated_and_reruns_skip_finished_trials(tmp_path, host):
    from plugins_for_tests import toy

    path = make_campaign(
        tmp_path,
        """
        [[attacks]]
        name = "toy-flip"
        [[attacks]]
        name = "fault-raise"
        params = { after = 1 }
    """,
    )
    store = Store(tmp_path / "store")
    toy.EVENTS.clear()
    report = run(path, host, store)
    assert (report.total, report.ok, len(report.failed)) == (4, 2, 2)
    assert all(o.error.startswith("attack 'fault-raise': RuntimeError: boom") for o in report.failed)
    assert [e[0] for e in toy.EVENTS] == ["started", "finished"] * 4
    assert {e[1] for e in toy.EVENTS} == {o.trial.trial_id for o in report.outcomes}
    assert sorted(store.finished("c").values()) == ["failed", "failed", "ok", "ok"]

    again = run(path, host, store)
    assert (again.skipped_ok, again.skipped_failed, len(again.outcomes)) == (2, 2, 0)
    retried = run(path, host, store, retry_failed=True)
    assert (retried.skipped_ok, len(retried.outcomes), len(retried.failed)) == (2, 2, 2)
    assert store.read().num_rows == sum(len(o.rows) for o in report.outcomes)  # replaced, not duplicated


def test_observer_that_raises_is_a_warning_not_a_crash(tmp_path):
    from poisonbench import hookimpl

    class Broken:
        @hookimpl
        def trial_started(self, trial):
            raise RuntimeError("observer bug")

    hooked = load_host(PLUGINS, load_external=False)
    hooked.pm.register(Broken())
    path = make_campaign(tmp_path, '[[attacks]]\nname = "toy-flip"\n')
    with pytest.warns(RuntimeWarning, match="trial_started hook raised RuntimeError: observer bug"):
        report = run(path, hooked, Store(tmp_path / "s"), LocalExecutor(hooked, PLUGINS))
    assert report.ok == 2


def test_child_process_timeout_crash_retry_and_same_rows_as_in_process(tmp_path, host):
    attacks = """
        [[attacks]]
        name = "fault-hang"
        [[attacks]]
        name = "toy-flip"
        [[attacks]]
        name = "fault-crash"
    """
    log = tmp_path / "crash.log"
    attacks += f'params = {{ log = "{log}" }}\n'
    isolated = make_campaign(tmp_path, attacks, "timeout = 8.0", name="iso", seeds="[0]")  # generous: a loaded CI box
    store = Store(tmp_path / "store")
    executor = LocalExecutor(host, PLUGINS)
    report = run(isolated, host, store, executor)
    by_attack = {o.trial.attack.name: o for o in report.outcomes}
    assert by_attack["fault-hang"].error == "timeout: trial did not finish within 8 s and was killed"
    assert by_attack["toy-flip"].status == "ok"
    assert by_attack["fault-crash"].error.startswith("worker process died (exit code 3) in 2 attempt(s)")
    assert log.read_text() == "run\nrun\n"
    assert executor._child is None  # closed by run_campaign

    in_process = make_campaign(
        tmp_path, '[[attacks]]\nname = "toy-flip"\n', 'isolation = "none"', name="inproc", seeds="[0]"
    )
    run(in_process, host, store)
    child_rows = [r for r in metric_rows(store.read(["iso"])) if r["trial_id"] == by_attack["toy-flip"].trial.trial_id]
    assert child_rows == metric_rows(store.read(["inproc"]))


def test_make_executor_and_resource_checks(host):
    assert make_executor("local", host).name == "local"
    assert make_executor("ray", host).name == "ray"
    with pytest.raises(ValueError, match="only the ray executor connects"):
        make_executor("local", host, address="ray://x:10001")
    with pytest.raises(ValueError, match="expected one of local, ray"):
        make_executor("dask", host)


def test_gpu_trial_on_a_cluster_without_gpus_fails_fast(tmp_path, host):
    path = make_campaign(tmp_path, '[[attacks]]\nname = "toy-flip"\n', tables="[resources]\nnum_gpus = 1")
    trials = load_campaign(path).trials(host.registry)
    with pytest.raises(ValueError, match=r"num_gpus=1 but the local Ray instance has 0 GPU\(s\).*cluster_resources"):
        check_resources(trials, {"CPU": 2.0, "memory": 1e9})
    check_resources(trials, {"CPU": 2.0, "GPU": 1.0})


# --- Ray ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (2 CPUs) for this module; the executor reuses it and leaves it running."""
    ray = pytest.importorskip("ray")
    env = {
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "POISONBENCH_LOAD_PLUGINS": "",
    }
    ray.init(
        address="local",  # never a cluster another test or 'ray start' left behind
        num_cpus=2,
        object_store_memory=100 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_rows_as_local(tmp_path, host, ray_local):
    path = make_campaign(
        tmp_path,
        """
        [[attacks]]
        name = "toy-flip"
        grid = { copies = [1, 2] }
        [[attacks]]
        name = "toy-budgeted"
    """,
        "record_every = 1",
    )
    local, remote = Store(tmp_path / "local"), Store(tmp_path / "ray")
    run(path, host, local)
    report = run(path, host, remote, RayExecutor(PLUGINS))
    assert report.ok == report.total == 10
    rows = remote.read()
    assert set(rows["executor"].to_pylist()) == {"ray"}
    assert metric_rows(rows) == metric_rows(local.read())
    assert ray_local.is_initialized()  # the executor did not shut down a Ray it did not start


def test_ray_timeout_cancels_and_plugin_errors_are_not_retried(tmp_path, host, ray_local):
    log = tmp_path / "raise.log"
    path = make_campaign(
        tmp_path,
        f"""
        [[attacks]]
        name = "fault-hang"
        [[attacks]]
        name = "fault-raise"
        params = {{ log = "{log}" }}
        [[attacks]]
        name = "toy-flip"
    """,
        "timeout = 3.0\nmax_retries = 1",
        seeds="[0]",
    )
    report = run(path, host, Store(tmp_path / "s"), RayExecutor(PLUGINS))
    errors = {o.trial.attack.name: o.error for o in report.outcomes}
    assert errors["fault-hang"].startswith("timeout: trial did not finish within 3 s and was cancelled")
    assert errors["fault-raise"] == "attack 'fault-raise': RuntimeError: boom"
    assert log.read_text() == "run\n"  # a plugin exception is never retried
    assert errors["toy-flip"] is None and len(report.outcomes) == 3
    names = [o.trial.attack.name for o in report.outcomes]
    assert names.index("toy-flip") < names.index("fault-hang")  # completion order, not submission order


def test_ray_retries_a_crashed_worker_then_reports_it(tmp_path, host, ray_local):
    log = tmp_path / "crash.log"
    path = make_campaign(
        tmp_path, f'[[attacks]]\nname = "fault-crash"\nparams = {{ log = "{log}" }}\n', "max_retries = 1", seeds="[0]"
    )
    (outcome,) = run(path, host, Store(tmp_path / "s"), RayExecutor(PLUGINS)).outcomes
    assert log.read_text() == "run\nrun\n"  # first attempt + one retry
    assert outcome.status == "failed"
    assert outcome.error.startswith("ray: ") and "died" in outcome.error.lower()


def test_ray_carries_progress_reports_and_rows_do_not_change(tmp_path, host, ray_local):
    from test_progress import Recorder, assert_advancing

    path = make_campaign(tmp_path, '[[attacks]]\nname = "toy-flip"\nparams = { sleep = 0.2 }\n', "record_every = 1")
    local, remote, recorder = Store(tmp_path / "local"), Store(tmp_path / "ray"), Recorder()
    run(path, host, local)
    report = run(path, host, remote, RayExecutor(PLUGINS), progress=recorder)
    assert report.ok == report.total == 2
    assert sorted(recorder.reports) == sorted(o.trial.trial_id for o in report.outcomes)
    for reports in recorder.reports.values():
        assert_advancing(reports, budget=4)
    assert metric_rows(remote.read()) == metric_rows(local.read())
