"""Speed of one RMD hyperiteration on the MLP (RMD paper §5.2), CPU vs CUDA.

One hyperiteration of Algorithm 1 = a reverse-mode hypergradient (Algorithm 2, autograd through
T stored GD steps) with respect to a batch of 10 poisons, an ascent step on them, a second
hypergradient with respect to the 3 per-layer λ's and a descent step on λ.

Problem: MNIST 0 vs 8 of the shipped 5k subset (``mnist``, ``pair="0v8", n_train=256,
n_val=256``), 784 × 128 × 32 × 1 leaky-ReLU MLP, float32 on both devices. Default T = 10 (CI
runs this file once with ``--benchmark-disable``); ``POISONBENCH_BENCH_FULL=1``: T = 600 (the
paper's DNN setting) and 3 timed rounds. The CUDA case is skipped, with the reason, where torch
sees no GPU.

Run: ``POISONBENCH_BENCH_FULL=1 python -m pytest benchmarks/bench_rmd.py -s --benchmark-enable``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the RMD benchmark needs torch: pip install poisonbench[torch]")

from poisonbench.plugins.bilevel.hypergrad import rmd
from poisonbench.plugins.bilevel.inner import Architecture, InnerProblem
from poisonbench.plugins.datasets.mnist import mnist

FULL = os.environ.get("POISONBENCH_BENCH_FULL") == "1"
T = 600 if FULL else 10
ROUNDS = 3 if FULL else 1
N_POISON = 10


def setup(device: str):
    ds = mnist(seed=0, pair="0v8", n_train=256, n_val=256)
    arch = Architecture.mlp(ds.n_features, (128, 32))
    dev = torch.device(device)
    problem = InnerProblem.from_numpy(
        arch,
        ds.X_train,
        ds.y_train,
        ds.X_val,
        ds.y_val,
        y_p=-ds.y_val[:N_POISON],
        lr=0.01,
        steps=T,
        device=dev,
        dtype=torch.float32,
    )
    X_p = problem.tensor(ds.X_val[:N_POISON])
    lam = problem.tensor(np.full(3, -2.0))
    return arch, problem, X_p, lam, dev


def hyperiteration(arch, problem, X_p, lam, dev, seed: int = 0):
    g = rmd(problem, arch.init(torch.float32, dev, seed), X_p, lam, wrt=("X_p",)).X_p
    X_p = torch.clamp(X_p + 0.99 * g, 0.0, 1.0)
    g_lam = rmd(problem, arch.init(torch.float32, dev, seed + 1), X_p, lam, wrt=("lam",)).lam
    lam = torch.clamp(lam - 0.05 * g_lam, -8.0, float(np.log(60.0)))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return X_p, lam


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_rmd_hyperiteration_mlp(benchmark, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch on this machine (torch.cuda.is_available() is False)")
    arch, problem, X_p, lam, dev = setup(device)
    if device == "cuda" or FULL:
        hyperiteration(arch, problem, X_p, lam, dev)  # warm-up (CUDA context, kernels)
    t0 = time.perf_counter()
    X_new, lam_new = benchmark.pedantic(
        hyperiteration, args=(arch, problem, X_p, lam, dev), rounds=ROUNDS, iterations=1
    )
    print(f"\nRMD hyperiteration, MLP 784x128x32x1, T={T}, {device}: {(time.perf_counter() - t0) / ROUNDS:.3f} s/round")
    assert X_new.shape == X_p.shape and bool(((X_new >= 0) & (X_new <= 1)).all())
    assert bool(torch.isfinite(lam_new).all()) and not torch.equal(X_new, X_p)
