"""Scikit-learn interop: fitted linear estimators ↔ :class:`poisonbench.learner.Model`.

* :func:`from_sklearn` wraps any fitted binary linear classifier with ``coef_`` and
  ``intercept_`` (LinearSVC, LogisticRegression, SGDClassifier, RidgeClassifier…) as a Model;
  ``classes_[1]`` becomes label +1 and ``classes_[0]`` label −1, as in sklearn's
  ``decision_function``.
* :func:`to_sklearn` returns a fitted ``LinearSVC`` or ``LogisticRegression`` with the Model's
  parameters, usable for ``predict`` / ``decision_function`` (and ``predict_proba`` for the
  logistic one), with classes ``[-1, 1]``.
* :func:`sklearn_estimator` gives the unfitted estimator that minimises the same objective as a
  poisonbench learner on ``n`` unit-weight points (the reference code's ``C = 1/(n · C_R)``):
  liblinear for both, since liblinear regularises the bias like ``R = (‖w‖² + b²)/2``;
  lbfgs for logistic regression with an unregularised bias.

scikit-learn is imported inside the functions, since loading the plugins imports this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonbench.learner import Model

_KINDS = ("svm", "logistic")


def from_sklearn(estimator: Any) -> Model:
    """The fitted binary linear ``estimator`` as a Model (``info`` names its class)."""
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        raise ValueError(f"estimator: expected a fitted linear classifier with coef_, got {type(estimator).__name__}")
    coef = np.asarray(coef, dtype=np.float64)
    classes = getattr(estimator, "classes_", None)
    if coef.ndim != 2 or coef.shape[0] != 1 or (classes is not None and len(classes) != 2):
        raise ValueError(
            f"estimator: expected a binary classifier (coef_ of shape (1, d)), got coef_ shape {coef.shape}"
        )
    intercept = np.ravel(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64))
    b = float(intercept[0]) if intercept.size else 0.0
    info = {"source": f"sklearn.{type(estimator).__name__}"}
    if classes is not None:
        info["classes"] = [c.item() if isinstance(c, np.generic) else c for c in classes]
    return Model(coef[0].copy(), b, info=info)


def to_sklearn(model: Model, kind: str = "svm") -> Any:
    """A fitted ``LinearSVC`` (``kind="svm"``) or ``LogisticRegression`` (``"logistic"``) whose
    decision function is the Model's ``w·x + b``; classes are ``[-1, 1]``."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression
    from sklearn.svm import LinearSVC

    if not isinstance(model, Model):
        raise ValueError(f"model: expected a poisonbench.learner.Model, got {type(model).__name__}")
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {', '.join(_KINDS)}, got {kind!r}")
    est = LinearSVC(loss="hinge") if kind == "svm" else SkLogisticRegression()
    est.coef_ = model.w[None, :].copy()
    est.intercept_ = np.array([model.b])
    est.classes_ = np.array([-1.0, 1.0])
    est.n_features_in_ = model.w.shape[0]
    if kind == "svm":
        est.n_iter_ = 0
    else:
        est.n_iter_ = np.array([0])
    return est


def sklearn_estimator(learner: Any, n_samples: int, tol: float = 1e-10, max_iter: int = 1_000_000) -> Any:
    """An unfitted sklearn estimator for the same objective as ``learner`` on ``n_samples``
    unit-weight points (or ``Σ s`` = ``n_samples`` with ``sample_weight``): ``C = 1/(n · C_R)``.

    ``LinearSVC(loss="hinge")`` requires a regularised bias (liblinear's intercept feature of
    value 1: ``R = (‖w‖² + b²)/2``); logistic regression uses liblinear likewise, or lbfgs when
    the bias is not regularised."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression
    from sklearn.svm import LinearSVC

    if n_samples <= 0:
        raise ValueError(f"n_samples: expected a positive number of points, got {n_samples}")
    C = 1.0 / (n_samples * float(learner.C_R))
    if learner.name == "svm":
        if not learner.regularise_bias:
            raise ValueError(
                "learner: LinearSVC always regularises the bias; no sklearn equivalent with regularise_bias=False"
            )
        return LinearSVC(loss="hinge", C=C, tol=tol, max_iter=max_iter, intercept_scaling=1.0, dual=True)
    if learner.name == "logistic":
        if learner.regularise_bias:
            return SkLogisticRegression(C=C, solver="liblinear", tol=tol, max_iter=max_iter, intercept_scaling=1.0)
        return SkLogisticRegression(C=C, solver="lbfgs", tol=tol, max_iter=max_iter)
    raise ValueError(f"learner: expected an 'svm' or 'logistic' learner, got {learner.name!r}")
