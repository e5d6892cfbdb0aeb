"""``njit``: numba's compiler when numba is installed, else the identity (same code, pure Python).

The inner loops of the learners are written as plain Python loops over arrays so that they run
(slowly) without numba and compile to machine code with it; results are identical either way.
"""

from __future__ import annotations

from typing import Any, Callable

try:
    from numba import njit as _numba_njit
except ImportError:  # pragma: no cover - numba is installed in every supported environment
    _numba_njit = None


def njit(func: Callable[..., Any]) -> Callable[..., Any]:
    """Compile ``func`` with ``numba.njit(cache=True)`` when numba is available."""
    if _numba_njit is None:  # pragma: no cover
        return func
    return _numba_njit(cache=True, nogil=True)(func)
