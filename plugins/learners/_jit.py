"""``njit``: compile a kernel with numba on its first call, or run it as Python without numba.

The inner loops of the learners are written as plain Python loops over arrays so that they run
(slowly, same results) without numba and compile to machine code with it. Compilation (and the
numba import) waits for the first call, so that loading the plugins — which imports every module
under ``plugins/learners`` — stays fast.
"""

from __future__ import annotations

import functools
from typing import Any, Callable


def njit(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` compiled by ``numba.njit(cache=True)`` at its first call when numba is installed;
    the Python original stays available as ``.py_func``."""
    compiled: list[Callable[..., Any]] = []

    @functools.wraps(func)
    def call(*args: Any) -> Any:
        if not compiled:
            try:
                from numba import njit as numba_njit
            except ImportError:  # pragma: no cover - numba is installed in every supported environment
                compiled.append(func)
            else:
                compiled.append(numba_njit(cache=True, nogil=True)(func))
        return compiled[0](*args)

    call.py_func = func  # type: ignore[attr-defined]
    return call
