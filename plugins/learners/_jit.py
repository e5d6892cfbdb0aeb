"""``njit``: compile a kernel with numba on its first call, or run it as Python without numba.

The inner loops of the learners are written as plain Python loops over arrays so that they run
(slowly, same results) without numba and compile to machine code with it. Compilation (and the
numba import) waits for the first call, so that loading the plugins — which imports every module
under ``plugins/learners`` — stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def njit(func: Callable[..., Any] | None = None, *, reassociate: bool = False) -> Any:
    """``func`` compiled by ``numba.njit(cache=True)`` at its first call when numba is installed;
    the Python original stays available as ``.py_func``.

    ``reassociate=True`` lets the compiler reorder floating-point sums (and fuse multiply-adds)
    so that dot-product loops vectorise; NaN and inf keep their IEEE meaning (no ``nnan`` or
    ``ninf`` flags), so a non-finite input still shows in the result. Usable as ``@njit`` or
    ``@njit(reassociate=True)``."""
    if func is None:
        return functools.partial(njit, reassociate=reassociate)
    compiled: list[Callable[..., Any]] = []

    @functools.wraps(func)
    def call(*args: Any) -> Any:
        if not compiled:
            try:
                from numba import njit as numba_njit
            except ImportError:  # pragma: no cover - numba is installed in every supported environment
                compiled.append(func)
            else:
                fastmath = {"reassoc", "contract"} if reassociate else False
                compiled.append(numba_njit(cache=True, nogil=True, fastmath=fastmath)(func))
        return compiled[0](*args)

    call.py_func = func  # type: ignore[attr-defined]
    return call
