"""Global maximum of the logistic loss difference over a box (issue #17's logistic MTP goal).

For the label y the objective of MTP line 4 depends on x only through ``a = w_t·x`` and
``c = w_p·x``::

    f(x) = g₁(a) − g₂(c),   g₁(a) = log(1 + e^{−y(a + b_t)}),   g₂(c) = log(1 + e^{−y(c + b_p)})

Over the box ``lo ≤ x ≤ hi`` the pair (a, c) ranges over a 2-D zonotope, the Minkowski sum of
the segments ``[lo_j, hi_j]·(w_t,j, w_p,j)``. g₁ is convex, so on every line of constant c the
maximum of f lies at an end of the zonotope's slice: the global maximum is on the zonotope's
boundary. That boundary is two chains of at most d edges each, found by sorting the generators
by angle (O(d log d)); along an edge one coordinate x_j moves between its bounds and the others
sit at a bound. On any segment of an edge, g₁ (convex) is largest at an end and g₂ (monotone)
smallest at an end, so

    max_{segment} f ≤ max(g₁(a₀), g₁(a₁)) − min(g₂(c₀), g₂(c₁))

or, tighter (g₂ is convex too, so it lies above its tangent at the segment's midpoint c_m, and g₁
below its chord; their difference is affine in the segment's parameter)

    max_{segment} f ≤ max over the two ends of  g₁(a) − g₂(c_m) − g₂'(c_m)(c − c_m)

whose gap to the true maximum shrinks as the square of the segment's length. A branch and bound
over the edges and their halves returns a point within ``tol`` of the global maximum. The Adam search of the reference code
(:func:`poisonbench.plugins.max_loss_diff.logistic_max_loss_diff`) finds a local maximum; this
finds the global one in about the time of a few of its steps
(:func:`poisonbench.plugins.max_loss_diff.logistic_max_loss_diff_box` wraps it for MTP).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit


def _g(s: np.ndarray | float, y: float, b: float) -> np.ndarray:
    """``log(1 + e^{−y(s + b)})``."""
    return np.logaddexp(0.0, -y * (np.asarray(s) + b))


def _segment_bound(
    a0: np.ndarray, a1: np.ndarray, c0: np.ndarray, c1: np.ndarray, y: float, b_t: float, b_p: float
) -> np.ndarray:
    """Upper bound on f over each segment (a, c) from (a0, c0) to (a1, c1): the chord of g₁
    minus the tangent of g₂ at the midpoint, an affine function, at its better end."""
    cm = 0.5 * (c0 + c1)
    g2m = _g(cm, y, b_p)
    slope = -y * expit(-y * (cm + b_p))  # g₂'(c_m)
    return np.maximum(_g(a0, y, b_t) - slope * (c0 - cm), _g(a1, y, b_t) - slope * (c1 - cm)) - g2m


class _Chains:
    """The boundary of the zonotope {(w_t·x, w_p·x)}: per chain, the coordinate order, each
    coordinate's start and end value, and the (a, c) of every vertex."""

    def __init__(self, w_t: np.ndarray, w_p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        ga, gc = (hi - lo) * w_t, (hi - lo) * w_p
        flip = (gc < 0) | ((gc == 0) & (ga < 0))  # orient every generator into the upper half-plane
        self.start = np.where(flip, hi, lo)
        self.end = np.where(flip, lo, hi)
        ga, gc = np.where(flip, -ga, ga), np.where(flip, -gc, gc)
        moving = np.flatnonzero((ga != 0) | (gc != 0))
        self.order = moving[np.argsort(np.arctan2(gc[moving], ga[moving]), kind="stable")]
        a0, c0 = float(w_t @ self.start), float(w_p @ self.start)
        step_a, step_c = ga[self.order], gc[self.order]
        # lower chain: coordinates order[:k] at their end; upper chain: order[:k] at their start, the rest at the end
        self.a = np.concatenate([[a0], a0 + np.cumsum(step_a)])
        self.c = np.concatenate([[c0], c0 + np.cumsum(step_c)])
        self.a_up = self.a[-1] - (self.a - a0)
        self.c_up = self.c[-1] - (self.c - c0)

    def point(self, upper: bool, k: int, t: float) -> np.ndarray:
        """x on edge k (0-based; t = 0 at vertex k, t = 1 at vertex k + 1) of a chain."""
        order = self.order
        x = self.end.copy() if upper else self.start.copy()
        done = order[:k]
        x[done] = self.start[done] if upper else self.end[done]
        if k < order.size:
            j = order[k]
            lo_j, hi_j = (self.end[j], self.start[j]) if upper else (self.start[j], self.end[j])
            x[j] = lo_j + t * (hi_j - lo_j)
        return x


def logistic_box_maximiser(
    theta_t: np.ndarray, theta_p: np.ndarray, lo: np.ndarray, hi: np.ndarray, labels: Sequence[float], tol: float
) -> tuple[np.ndarray, float]:
    """``argmax_{lo ≤ x ≤ hi, y ∈ labels} log(1 + e^{−y f_t(x)}) − log(1 + e^{−y f_p(x)})`` by
    branch and bound on the zonotope boundary (module docstring): a point within ``tol``
    (relative to max(1, |value|)) of the global maximum, and its label."""
    w_t, b_t, w_p, b_p = theta_t[:-1], float(theta_t[-1]), theta_p[:-1], float(theta_p[-1])
    chains = _Chains(w_t, w_p, lo, hi)
    best_value, best_x, best_y = -np.inf, lo.copy(), float(labels[0])
    for y in labels:
        value, x = _branch_and_bound(chains, float(y), b_t, b_p, tol)
        if value > best_value:
            best_value, best_x, best_y = value, x, float(y)
    return best_x, best_y


def _branch_and_bound(chains: _Chains, y: float, b_t: float, b_p: float, tol: float) -> tuple[float, np.ndarray]:
    """The best point of the boundary for label y: the vertices first, then every segment whose
    bound exceeds the best value by more than the tolerance is halved (all such segments at
    once, each round), until none is left."""
    best_value, best_at = -np.inf, (False, 0, 0.0)
    parts = []
    for upper, a, c in ((False, chains.a, chains.c), (True, chains.a_up, chains.c_up)):
        g1, g2 = _g(a, y, b_t), _g(c, y, b_p)
        values = g1 - g2
        k = int(np.argmax(values))
        if values[k] > best_value:
            last = k == a.size - 1 and k > 0
            best_value, best_at = float(values[k]), (upper, k - 1 if last else k, 1.0 if last else 0.0)
        edges = np.arange(a.size - 1)
        parts.append((np.full(edges.size, upper), edges, a[:-1], a[1:], c[:-1], c[1:], np.zeros(edges.size)))
    upper, edge, a0, a1, c0, c1, t0 = (np.concatenate(p) for p in zip(*parts))
    width = np.ones(edge.size)
    while edge.size:
        bound = _segment_bound(a0, a1, c0, c1, y, b_t, b_p)
        keep = bound > best_value + tol * max(1.0, abs(best_value))
        upper, edge, a0, a1, c0, c1, t0, width = (v[keep] for v in (upper, edge, a0, a1, c0, c1, t0, width))
        if not edge.size:
            break
        am, cm = 0.5 * (a0 + a1), 0.5 * (c0 + c1)
        mid = _g(am, y, b_t) - _g(cm, y, b_p)
        i = int(np.argmax(mid))
        if mid[i] > best_value:
            best_value, best_at = float(mid[i]), (bool(upper[i]), int(edge[i]), float(t0[i] + 0.5 * width[i]))
        width = 0.5 * width
        upper, edge = np.concatenate([upper, upper]), np.concatenate([edge, edge])
        t0 = np.concatenate([t0, t0 + width])
        width = np.concatenate([width, width])
        a0, a1 = np.concatenate([a0, am]), np.concatenate([am, a1])
        c0, c1 = np.concatenate([c0, cm]), np.concatenate([cm, c1])
    upper_at, e, t = best_at
    return best_value, chains.point(bool(upper_at), e, t)
