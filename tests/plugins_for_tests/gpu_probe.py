"""Test plugin for GPU scheduling: ``cuda-probe`` reports the Ray node it runs on, then asks
the built-in torch device resolution for CUDA (which fails clearly on a machine without it)."""

from __future__ import annotations

import numpy as np

from poisonbench import PoisonBatch, hookimpl


class CudaProbe:
    name = "cuda-probe"
    needs_budget = False

    def poison(self, scenario):
        import ray

        from poisonbench.plugins.bilevel import resolve_device

        ds = scenario.dataset
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        yield PoisonBatch(ds.X_train[:1].copy(), -ds.y_train[:1], {"node_id": node, "gpu_ids": ray.get_gpu_ids()})
        resolve_device("cuda")
        yield PoisonBatch(np.zeros((0, ds.n_features)), np.zeros(0), {})


@hookimpl
def register_attacks(register):
    register(CudaProbe)
