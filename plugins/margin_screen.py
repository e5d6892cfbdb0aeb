"""Safe screening of margins: which side of a level each row's ``y_i x_i·w`` is on, reading only
the rows near their level (issue #17; El Ghaoui et al. 2012, Ogawa et al. 2013 for SVMs).

Each row keeps a cached margin ``m_i = fl(x_i·w_{g(i)})`` read at an earlier weight vector
``w_{g(i)}`` (its *generation*). A row sketch splits every row as ``x_i = P z_i + r_i`` with
``P`` a d × k basis of the rows' dominant subspace (a randomised range finder; k = 0 gives
plain Cauchy–Schwarz) and ``z_i ≈ Pᵀ x_i`` stored. For ``v = w − w_{g(i)}`` and any ``c``, exactly,

    x_i·v = z_i·c + z_i·(Pᵀv − c) + r_i·(v − P c) + (Pᵀ r_i)·c

so with ``c = fl(Pᵀv)``::

    |x_i·w − m_i − z_i·c| ≤ r_i = ‖r_i‖ ‖v − P c‖ + ‖Pᵀ r_i‖ ‖c‖ + (rounding: m_i, z_i·c, c)

where ``‖r_i‖`` and ``‖Pᵀ r_i‖`` are bounded once from ``‖x_i‖², ‖z_i‖²`` and the computed
non-orthogonality ``‖PᵀP − I‖`` (:class:`RowSketch`), and every rounding term is covered by
``32 (d + k) u ‖x_i‖ (‖w‖ + ‖w_g‖)`` (Higham, *Accuracy and Stability*, eq. 3.5). On image
rows, k = 64 cuts the radius three- to fourfold against ``‖x_i‖ ‖v‖``. A row with
``y_i (m_i + z_i·c) − ℓ_i < −r_i`` is surely *below* its level ℓ_i, one with ``> r_i`` surely
above; only the rest, the *near* rows, are read, and each read refreshes that row's cache at the
current ``w`` (a new generation). Rows near their level are thus re-read often and stay close to
their reference, while rows far from it keep an old one. At most :data:`MAX_GENERATIONS` are
kept: the oldest is merged into the next, its rows' margins moved by the sketch and the bound of
the move added to their slack.

A sum that is linear on the rows below, ``Σ_{below} c_i y_i x_i``, is kept as one d-vector: the
screen stores ``v_A = Σ_{i ∈ A} c⁰_i y_i x_i`` for a set A fixed when it was built, and returns

    Σ_{below} c_i y_i x_i = v_A − Σ_{A, changed} c⁰_i y_i x_i + Σ_{below, changed} c_i y_i x_i

where the changed rows are those whose membership or coefficient differs from A's: nothing
accumulates between queries (each answer is v_A plus freshly read rows). A hinge sum
``Σ c_i max(0, ℓ_i − y_i x_i·w)``, the SVM's duality gap and a classifier's accuracy are then
exact with a few hundred rows read instead of all of them.

The screen trusts that its rows do not change: it holds a read-only view, and its owner must not
write to the rows it covers (the MTP pool only appends rows). Queries update the cache in place;
every cached margin stays paired with the weights it was read at, so any query order is valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poisonbench.plugins.learners._jit import njit

MAX_GENERATIONS = 16
SKETCH_RANK = 64
_UNIT_ROUNDOFF = 2.0**-53
_FLOAT32_UNIT = 2.0**-24


@dataclass(frozen=True)
class ScreenAnswer:
    """A query's result: the near rows with their fresh margins ``x_i·w``, every row's margin
    (fresh for the near rows, else the estimate ``m_i + z_i·c``, which is on the row's sure side
    of its level), the rows surely below their level (a mask over the screen's rows, near rows
    excluded), ``Σ_{below} c_i y_i x_i``, and how many rows were read to answer."""

    near: np.ndarray
    near_margins: np.ndarray
    margins: np.ndarray
    below: np.ndarray
    below_sum: np.ndarray
    rows_read: int


class RowSketch:
    """``x_i = P z_i + r_i`` for the rows of a read-only ``X`` (module docstring): the basis
    ``P`` (d × k), ``Z`` (n × k, ``z_i = fl(Pᵀ x_i)``, stored in float32 to halve the memory
    each query reads: the rounding ``‖z_i − z₃₂‖ ≤ 2⁻²⁴ ‖z_i‖`` joins the ``‖c‖`` term of the
    radius), ``‖x_i‖`` and upper bounds on ``‖r_i‖`` and ``‖Pᵀ r_i‖``. Exact with
    ``z = Pᵀ x + e`` and ``E = PᵀP − I``::

        ‖r‖² = ‖x‖² − ‖z‖² − 2 zᵀe + zᵀE z ≤ ‖x‖² − ‖z‖² + 2 ‖z‖ ‖e‖ + ‖E‖ ‖z‖²
        ‖Pᵀ r‖ = ‖e − E z‖ ≤ ‖e‖ + ‖E‖ ‖z‖,      ‖e‖ ≤ √k γ_d (1 + ‖E‖) ‖x‖

    (with ‖z‖ ≤ (1 + ‖E‖)‖x‖ + ‖e‖ and the rounding of the computed norms, both bounds are
    inflated by the terms in :meth:`_bounds`)."""

    def __init__(self, X: np.ndarray, P: np.ndarray, sqnorms: np.ndarray | None = None) -> None:
        self.P = np.ascontiguousarray(P, dtype=np.float64)
        d, k = self.P.shape
        self.k = k
        gram = self.P.T @ self.P - np.eye(k)
        u = _UNIT_ROUNDOFF
        self.nonorth = float(np.linalg.norm(gram)) + 4 * k * (d + 2) * u  # ‖E‖_F and the rounding of PᵀP
        self.gamma = (d + k + 2) * u / (1.0 - (d + k + 2) * u)
        self.Z = np.empty((0, k), dtype=np.float32)
        self.norms = self.resid = self.ortho = np.empty(0)
        self.extend(X, sqnorms)

    @classmethod
    def plain(cls, X: np.ndarray, sqnorms: np.ndarray | None = None) -> RowSketch:
        """The rank-0 sketch: ``r_i = x_i`` (plain Cauchy–Schwarz); with ``sqnorms`` (the rows'
        ``‖x_i‖²``, already known) it reads nothing."""
        return cls(X, np.zeros((X.shape[1], 0)), sqnorms)

    @classmethod
    def randomised(cls, X: np.ndarray, rank: int = SKETCH_RANK, seed: int = 0) -> RowSketch:
        """Basis of the dominant k-dimensional row space of ``X`` by a randomised range finder
        with one power iteration (Halko, Martinsson, Tropp 2011, Algorithm 4.3):
        ``P = orth(Xᵀ X Ω)``, Ω Gaussian d × k; k = min(rank, d // 4)."""
        k = min(rank, X.shape[1] // 4)
        omega = np.random.default_rng(seed).standard_normal((X.shape[1], k))
        P = np.linalg.qr(X.T @ (X @ omega))[0] if k else np.zeros((X.shape[1], 0))
        return cls(X, P)

    def extend(self, X: np.ndarray, sqnorms: np.ndarray | None = None) -> None:
        """Sketch the rows of ``X`` past those already sketched (``sqnorms``: all rows' ``‖x_i‖²``
        when known)."""
        done = self.Z.shape[0]
        new = X[done:]
        if new.shape[0] == 0:
            return
        Z = new @ self.P
        sqx = np.einsum("ij,ij->i", new, new) if sqnorms is None else np.asarray(sqnorms[done:], dtype=np.float64)
        sqz = np.einsum("ij,ij->i", Z, Z)
        resid, ortho = self._bounds(sqx, sqz)
        ortho += _FLOAT32_UNIT * np.sqrt(sqz) * (1 + 1e-6)  # z_i is kept in float32: ‖z − z₃₂‖ ≤ 2⁻²⁴ ‖z‖
        self.Z = np.concatenate([self.Z, Z.astype(np.float32)])
        self.norms = np.concatenate([self.norms, np.sqrt(sqx)])
        self.resid = np.concatenate([self.resid, resid])
        self.ortho = np.concatenate([self.ortho, ortho])

    def _bounds(self, sqx: np.ndarray, sqz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upper bounds on ``‖r_i‖`` and ``‖Pᵀ r_i‖`` from the computed ``‖x_i‖²``, ``‖z_i‖²``."""
        g, E = self.gamma, self.nonorth
        x = np.sqrt(sqx) * (1 + g)
        e = np.sqrt(self.k) * g * (1 + E) * x
        z = (1 + E) * x + e
        sq_resid = sqx * (1 + g) - sqz * (1 - g) + 2 * z * e + E * z * z
        return np.sqrt(np.maximum(sq_resid, 0.0)) * (1 + g), e + E * z


class MarginScreen:
    """Cached margins of the rows of ``X`` with their generations (module docstring).

    Built from one read of every row at ``w_ref`` (``margins``). ``X`` is kept as a read-only
    view; ``signs`` are the ``y_i``; ``A`` (a mask) and ``coef`` the set and coefficients of the
    kept vector ``v_A = Σ_{A} coef_i y_i x_i``, which the caller supplies when it has it
    (``v_A``) or the screen computes (one read of the rows of A); ``sketch`` covers the rows
    (plain Cauchy–Schwarz when None)."""

    def __init__(
        self,
        X: np.ndarray,
        signs: np.ndarray,
        w_ref: np.ndarray,
        margins: np.ndarray,
        A: np.ndarray,
        coef: np.ndarray,
        v_A: np.ndarray | None = None,
        sketch: RowSketch | None = None,
    ) -> None:
        view = X.view()
        view.flags.writeable = False
        self.X = view
        self.n = X.shape[0]
        self.sketch = sketch if sketch is not None else RowSketch.plain(view)
        self.sketch.extend(view)
        self.signs = np.array(signs, dtype=np.float64)
        self.margins = np.array(margins, dtype=np.float64)
        self.generation = np.zeros(self.n, dtype=np.int64)
        self.slack = np.zeros(self.n)
        self.weights = [np.array(w_ref, dtype=np.float64)]
        self.A = np.array(A, dtype=bool)
        self.coef = np.array(coef, dtype=np.float64)
        if v_A is None:
            v_A = _signed_sum(self.X, self.coef * self.signs, np.flatnonzero(self.A))
        self.v_A = np.array(v_A, dtype=np.float64)

    def copy(self) -> MarginScreen:
        """A screen with its own cache (margins, generations, slack), sharing the rows, the
        sketch and ``v_A`` (which queries do not change): a query on either leaves the other as
        it was."""
        out = object.__new__(MarginScreen)
        out.__dict__.update(self.__dict__)
        out.margins, out.generation, out.slack = self.margins.copy(), self.generation.copy(), self.slack.copy()
        out.weights = list(self.weights)
        return out

    @property
    def sqnorms(self) -> np.ndarray:
        """``‖x_i‖²`` of the screen's rows."""
        return self.sketch.norms[: self.n] ** 2

    @classmethod
    def from_pass(
        cls, X: np.ndarray, signs: np.ndarray, w: np.ndarray, levels: np.ndarray, sketch: RowSketch | None = None
    ) -> MarginScreen:
        """A screen at ``w`` with A = the rows below their levels and coefficients 1, built by
        one fused read of X (margins and ``v_A``)."""
        margins = np.empty(X.shape[0])
        v_A = _screen_pass(np.ascontiguousarray(X), signs, w, levels, margins)
        A = signs * margins < levels
        return cls(X, signs, w, margins, A, np.ones(X.shape[0]), v_A, sketch)

    def covers(self, X: np.ndarray, signs: np.ndarray) -> bool:
        """Whether ``X``'s first rows are this screen's rows: the same read-only memory (same
        buffer, address and strides) and the same signs. A copy, a writeable array or another
        buffer is not trusted (the caller then reads every row)."""
        mine = self.X
        return (
            not X.flags.writeable
            and X.base is not None
            and X.base is mine.base
            and X.shape[0] >= self.n
            and X.shape[1] == mine.shape[1]
            and X.strides == mine.strides
            and X.__array_interface__["data"][0] == mine.__array_interface__["data"][0]
            and np.array_equal(signs[: self.n], self.signs)
        )

    def _moves(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per generation g: ``c_g = fl(Pᵀ(w − w_g))``, ``‖v − P c_g‖``, ``‖c_g‖`` and
        ``‖w‖ + ‖w_g‖`` (for the rounding allowance)."""
        P = self.sketch.P
        V = w[None, :] - np.array(self.weights)
        Cg = V @ P
        resid = np.linalg.norm(V - Cg @ P.T, axis=1)
        scale = float(np.linalg.norm(w)) + np.linalg.norm(np.array(self.weights), axis=1)
        return Cg, resid, np.linalg.norm(Cg, axis=1), scale

    def bounds(self, w: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the estimate ``y_i (m_i + z_i·c) − ℓ_i`` of ``y_i x_i·w − ℓ_i`` and the
        radius it is certainly within (module docstring); reads no row of X."""
        return self._estimate(w, None, self.signs, levels)

    def _estimate(
        self, w: np.ndarray, rows: np.ndarray | None, signs: np.ndarray, levels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`bounds` for ``rows`` (all the screen's rows when None) with their ``signs`` and
        ``levels``: the kernel :func:`_offsets_and_radii` on the rows' caches and sketch."""
        sk = self.sketch
        Cg, resid, cnorm, scale = self._moves(w)

        def pick(a: np.ndarray) -> np.ndarray:
            return a[: self.n] if rows is None else a[rows]

        size = self.n if rows is None else rows.size
        offset = np.empty(size)
        radius = np.empty(size)
        _offsets_and_radii(
            pick(sk.Z),
            pick(self.margins),
            signs,
            levels,
            pick(self.generation),
            pick(self.slack),
            pick(sk.norms),
            pick(sk.resid),
            pick(sk.ortho),
            Cg,
            resid,
            cnorm,
            scale,
            32.0 * sk.gamma,
            offset,
            radius,
        )
        return offset, radius

    def query(self, w: np.ndarray, levels: np.ndarray, coef: np.ndarray | None, max_rows: int) -> ScreenAnswer | None:
        """Sides of ``y_i x_i·w`` against ``levels`` and ``Σ_{below} coef_i y_i x_i`` for the
        screen's rows (``levels`` and ``coef`` of length ``n``; ``coef=None``: sides only, the
        sum is not formed); None when answering would read more than ``max_rows`` rows (the
        caller then makes a full pass). The near rows' caches are refreshed at ``w``."""
        offset, radius = self.bounds(w, levels)
        below = offset < -radius
        is_near = ~below & (offset <= radius)
        near = np.flatnonzero(is_near)
        if coef is None:
            leave = enter = np.empty(0, dtype=np.int64)
        else:
            changed = self.coef != coef
            leave = np.flatnonzero(self.A & ~is_near & (~below | changed))  # A's near rows: read below
            enter = np.flatnonzero(below & (~self.A | changed))
        read = near.size + leave.size + enter.size
        if read > max_rows:
            return None
        in_A = self.coef * self.signs * self.A if coef is not None else np.zeros(self.n)
        near_margins, near_A_sum = _read_near(self.X, w, near, in_A)
        below_sum = np.full(self.X.shape[1], np.nan)
        if coef is not None:
            below_sum = (
                self.v_A
                - near_A_sum
                - _signed_sum(self.X, self.coef * self.signs, leave)
                + _signed_sum(self.X, coef * self.signs, enter)
            )
        margins = self.signs * (offset + levels)
        margins[near] = near_margins
        self._record(w, near, near_margins)
        return ScreenAnswer(near, near_margins, margins, below, below_sum, int(read))

    def _record(self, w: np.ndarray, rows: np.ndarray, margins: np.ndarray) -> None:
        """Cache ``margins`` of ``rows`` as read at ``w`` (a new generation). Past
        :data:`MAX_GENERATIONS`, generations 1 … h (h = half; generation 0, the build's, holds
        most rows and stays) are merged into generation h + 1: each moved row's margin moves by
        ``z_i·c`` for ``c = Pᵀ(w_{h+1} − w_{g(i)})`` and its slack grows by the bound of the rest
        (module docstring)."""
        if rows.size == 0:
            return
        self.weights.append(np.array(w, dtype=np.float64))
        self.margins[rows] = margins
        self.generation[rows] = len(self.weights) - 1
        self.slack[rows] = 0.0
        if len(self.weights) <= MAX_GENERATIONS:
            return
        h = MAX_GENERATIONS // 2
        moved = np.flatnonzero((self.generation >= 1) & (self.generation <= h))
        offset, radius = self._estimate(self.weights[h + 1], moved, np.ones(moved.size), np.zeros(moved.size))
        self.margins[moved] = offset
        self.slack[moved] = radius
        self.generation[moved] = h + 1
        del self.weights[1 : h + 1]
        self.generation[self.generation > h] -= h


@njit(reassociate=True)
def _offsets_and_radii(
    Z,
    margins,
    signs,
    levels,
    generation,
    slack,
    norms,
    resid,
    ortho,
    Cg,
    gresid,
    cnorm,
    scale,
    allowance,
    offset,
    radius,
):  # pragma: no cover - compiled
    """Per row: ``offset_i = y_i (m_i + z_i·c_g) − ℓ_i`` and ``radius_i = (‖r_i‖ ‖v − P c_g‖ +
    ‖Pᵀr_i‖ ‖c_g‖ + allowance ‖x_i‖ (‖w‖ + ‖w_g‖)) (1 + 1e-12) + slack_i`` (module docstring)."""
    for i in range(margins.shape[0]):
        g = generation[i]
        s = margins[i]
        for j in range(Z.shape[1]):
            s += Z[i, j] * Cg[g, j]
        offset[i] = signs[i] * s - levels[i]
        r = resid[i] * gresid[g] + ortho[i] * cnorm[g] + allowance * norms[i] * scale[g]
        radius[i] = r * (1.0 + 1e-12) + slack[i]


@njit
def _signed_sum(X, coef, rows):  # pragma: no cover - compiled
    """``Σ_{i ∈ rows} coef_i x_i``."""
    out = np.zeros(X.shape[1])
    for i in rows:
        c = coef[i]
        for j in range(X.shape[1]):
            out[j] += c * X[i, j]
    return out


@njit(reassociate=True)
def _read_near(X, w, rows, coef):  # pragma: no cover - compiled
    """``x_i·w`` for ``i ∈ rows`` and, in the same read, ``Σ_{i ∈ rows} coef_i x_i``."""
    out = np.empty(rows.shape[0])
    total = np.zeros(X.shape[1])
    for k in range(rows.shape[0]):
        i = rows[k]
        s = 0.0
        for j in range(X.shape[1]):
            s += X[i, j] * w[j]
        out[k] = s
        c = coef[i]
        if c != 0.0:
            for j in range(X.shape[1]):
                total[j] += c * X[i, j]
    return out, total


@njit(reassociate=True)
def _screen_pass(X, signs, w, levels, margins):  # pragma: no cover - compiled
    """One read of X: ``margins_i = x_i·w``, and returns ``Σ_{y_i m_i < ℓ_i} y_i x_i``."""
    n, d = X.shape
    out = np.zeros(d)
    for i in range(n):
        s = 0.0
        for j in range(d):
            s += X[i, j] * w[j]
        margins[i] = s
        if signs[i] * s < levels[i]:
            c = signs[i]
            for j in range(d):
                out[j] += c * X[i, j]
    return out
