"""Exact per-iteration accuracy of a linear model on fixed rows, read through a margin screen.

An online attack evaluates every iterate θ_t on the same test rows. θ_t moves little per
iteration, so a :class:`~poisonbench.plugins.margin_screen.MarginScreen` with level
``−y_i b`` answers exactly from the rows near the decision boundary: a row surely above its
level is classified correctly, one surely below wrongly, and the near rows go through the
model's own ``predict``. When the screen
would read more than an eighth of the rows it is rebuilt by one pass at the current θ, and on
its first rebuild it gains the randomised row sketch (tighter radii for the rest of the run).
The rows must not change while the metric is in use (they are kept as a read-only view).
"""

from __future__ import annotations

import numpy as np

from poisonbench.learner import Model
from poisonbench.plugins.margin_screen import MarginScreen, RowSketch


class ScreenedAccuracy:
    """The fraction of the rows ``X`` (labels ``y``) a linear model classifies correctly (NaN
    without rows), as ``Model.accuracy`` computes it, reading only the rows near the boundary."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        view = np.ascontiguousarray(X, dtype=np.float64).view()
        view.flags.writeable = False
        self.X, self.y = view, np.asarray(y, dtype=np.float64)
        self.screen: MarginScreen | None = None
        self.rebuilds = 0

    def __call__(self, model: Model) -> float:
        n = self.X.shape[0]
        if n == 0:
            return float("nan")
        levels = -self.y * model.b
        answer = None if self.screen is None else self.screen.query(model.w, levels, None, max(n // 8, 1))
        if answer is None:
            sketch = None
            if self.screen is not None:
                sketch = self.screen.sketch if self.screen.sketch.k else RowSketch.randomised(self.X)
            self.screen = MarginScreen.from_pass(self.X, self.y, model.w, levels, sketch)
            self.rebuilds += 1
            answer = self.screen.query(model.w, levels, None, n)
        if answer is None:  # pragma: no cover - a query that may read every row always answers
            raise RuntimeError("margin screen: a query allowed to read every row refused")
        near = answer.near
        above = n - near.size - int(answer.below.sum())
        correct_near = int((model.predict(self.X[near]) == self.y[near]).sum()) if near.size else 0
        return (above + correct_near) / n
