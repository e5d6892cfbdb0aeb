"""A real two-node Ray cluster on this machine: a head node and a worker node started with
``ray start --block`` (each in its own process group, so a node can be killed whole), and
campaigns run through the CLI with ``--executor ray --address``.

- the rows equal those of the local executor;
- killing the worker node mid-campaign loses nothing: its trials are retried on the head;
- the worker node alone advertises a GPU (``--num-gpus 1``): a campaign asking for
  ``num_gpus = 1`` runs there, and its torch, which finds no CUDA, fails with a clear row;
- an unreachable address is one error line within the probe's seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from poisonbench.leaderboards.store import Store

TESTS = Path(__file__).parent
PLUGINS = ["--plugin", "plugins_for_tests.toy", "--plugin", "plugins_for_tests.gpu_probe"]
IGNORED = {"executor", "hostname", "started_at", "finished_at", "wall_seconds", "device", "pid"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Head + worker node; ``env`` is what the driver needs (token, PYTHONPATH)."""

    def __init__(self, tmp: Path):
        self.temp_dir = tempfile.mkdtemp(prefix="pbray-", dir="/tmp")  # short: Ray's socket paths are limited
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_failure_threshold": "4",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "POISONBENCH_LOAD_PLUGINS": "",
        }
        common = ["--block", "--disable-usage-stats", "--object-store-memory", str(80 * 1024**2)]
        self.head = self._start(
            tmp / "head.log",
            ["--head", "--port", str(self.port), "--num-cpus", "1", "--num-gpus", "0", "--include-dashboard=false"]
            + ["--temp-dir", self.temp_dir],  # keeps ray_current_cluster out of /tmp/ray, where ray.init() looks
            common,
        )
        self._wait_for(1)
        self.worker = self._start(
            tmp / "worker.log",
            ["--address", self.address, "--num-cpus", "1", "--num-gpus", "1", "--resources", '{"pb_worker_node": 1}'],
            common,
        )
        self._wait_for(2)

    def _start(self, log: Path, args: list[str], common: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            ["ray", "start", *args, *common],
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def nodes(self) -> list[dict]:
        code = "import json, ray; ray.init(address=%r, log_to_driver=False); print(json.dumps(ray.nodes()))"
        out = subprocess.run(
            [sys.executable, "-c", code % self.address], env=self.env, capture_output=True, text=True, timeout=60
        )
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else []

    def _wait_for(self, n: int, deadline: float = 60.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < deadline:
            if sum(node["Alive"] for node in self.nodes()) >= n:
                return
            time.sleep(1.0)
        raise RuntimeError(f"the Ray test cluster did not reach {n} live node(s) within {deadline:g} s")

    @staticmethod
    def kill(node: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=30)

    def stop(self) -> None:
        for node in (self.worker, self.head):
            self.kill(node)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ray-cluster"))
    yield c
    c.stop()


def poisonbench(cluster: Cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poisonbench", *PLUGINS, *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def campaign(tmp_path: Path, name: str, body: str, top: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nbudgets = [0, 2, 4]\nmax_retries = 2\n{top}\n'
        '[[datasets]]\nname = "tiny"\n[[learners]]\nname = "toy-ridge"\n' + body
    )
    return path


def values(store: Path) -> list[dict]:
    rows = Store(store).read().to_pylist()
    return sorted(
        ({k: v for k, v in r.items() if k not in IGNORED} for r in rows),
        key=lambda r: (r["trial_id"], r["kind"], r["step"], r["checkpoint"]),
    )


def test_gpu_trials_go_to_the_gpu_node_and_fail_clearly_without_cuda(cluster, tmp_path):
    worker_node = next(n["NodeID"] for n in cluster.nodes() if n["Alive"] and n["Resources"].get("GPU"))
    path = campaign(tmp_path, "gpu", '[[attacks]]\nname = "cuda-probe"\n', "[resources]\nnum_gpus = 1")
    result = poisonbench(
        cluster, "run", str(path), "--executor", "ray", "--address", cluster.address, "--store", str(tmp_path)
    )
    assert result.returncode == 1, result.stderr
    rows = Store(tmp_path).read().to_pylist()
    assert {r["status"] for r in rows} == {"failed"}
    error = rows[-1]["error"]
    assert error.startswith("attack 'cuda-probe'") and "CUDA is not available on this machine" in error
    diagnostics = json.loads(rows[-1]["diagnostics"])
    assert diagnostics["node_id"] == worker_node and len(diagnostics["gpu_ids"]) == 1


def test_a_cluster_gives_the_rows_of_local_and_survives_a_killed_worker_node(cluster, tmp_path):
    path = campaign(
        tmp_path, "two-nodes", '[[attacks]]\nname = "toy-flip"\nparams = { sleep = 1.5 }\n', "seeds = [0, 1, 2, 3]"
    )
    local = poisonbench(cluster, "run", str(path), "--store", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    run = subprocess.Popen(
        [sys.executable, "-m", "poisonbench", *PLUGINS, "run", str(path), "--executor", "ray"]
        + ["--address", cluster.address, "--store", str(tmp_path / "ray")],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8.0)  # connected, and a trial runs on each node (each trial sleeps 6 s)
    cluster.kill(cluster.worker)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert sorted(n["Alive"] for n in cluster.nodes()) == [False, True]  # the kill landed: the worker node is dead
    assert "4 trial(s): 4 ok, 0 failed" in out
    assert values(tmp_path / "ray") == values(tmp_path / "local")
    assert set(Store(tmp_path / "ray").read()["executor"].to_pylist()) == {"ray"}


def test_an_unreachable_address_is_one_line_within_seconds(tmp_path):
    path = campaign(tmp_path, "nowhere", '[[attacks]]\nname = "toy-flip"\n')
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "poisonbench", *PLUGINS, "run", str(path), "--executor", "ray"]
        + ["--address", f"127.0.0.1:{free_port()}", "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert time.monotonic() - t0 < 30
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot reach a Ray cluster there" in errors[0], result.stderr
