"""``SKLearnClassifier``: an imdbfast model as a scikit-learn estimator, with the signature of
Keras 3's ``keras.wrappers.SKLearnClassifier``. Needs scikit-learn (``pip install
"imdbfast[sklearn]"``), imported here only.

    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.pipeline import make_pipeline
    clf = make_pipeline(CountVectorizer(binary=True, max_features=10000),
                        SKLearnClassifier(model_kwargs={"seed": 0}))
    clf.fit(train_texts, train_labels).score(test_texts, test_labels)

The model is binary (one sigmoid output, as the book's): targets have two classes, of any
labels (ints, strings, bools), mapped to 0 and 1 in sorted order as scikit-learn does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import CSR
from ._optional import missing
from .models import Sequential, fit as _fit
from .sequences import Sequences

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # the class below then refuses to be created, naming the extra
    sklearn = None

    class BaseEstimator:  # type: ignore[no-redef]
        pass

    class ClassifierMixin:  # type: ignore[no-redef]
        pass

# imdbfast.fit's keywords that describe the model (the rest train it: fit_kwargs)
_MODEL_KEYWORDS = ("layers", "activation", "optimizer", "loss", "metrics", "seed", "device",
                   "threads", "input_dim")


def _require_sklearn(what: str) -> None:
    if sklearn is None:
        raise missing(what, "scikit-learn", "sklearn")


def _check_binary_output(model: Sequential) -> None:
    """The classifier reads P(classes_[1]) from one output unit, or from the second unit of a
    2-unit softmax; any other output would be read as something it is not."""
    dense = model._dense_layers()
    units, act = (dense[-1].units, dense[-1].activation) if dense else (None, None)
    if units == 1 or (units == 2 and act == "softmax"):
        return
    raise ValueError(f"model: a binary classifier needs 1 output unit (P(classes_[1])) or 2 with "
                     f"softmax, got {units} unit(s) with activation {act!r}")


def _is_token_sequences(X: Any) -> bool:
    """Token-id rows (ragged), not a matrix: imdbfast Sequences, a 1-D object array, or a list
    whose rows differ in length. A rectangular list of lists is a matrix, as in scikit-learn."""
    if isinstance(X, Sequences):
        return True
    if isinstance(X, np.ndarray):
        return X.dtype == object and X.ndim == 1
    if isinstance(X, (list, tuple)) and X and all(isinstance(r, (list, tuple, np.ndarray))
                                                  for r in X):
        return len({len(r) for r in X}) > 1
    return False


def _clone_model(model: Sequential) -> Sequential:
    """The same architecture and compile settings with fresh weights (Keras's clone_model, plus
    the compile settings)."""
    c = Sequential.from_config(model.get_config())
    cfg = model.get_compile_config()
    if cfg is not None:
        c.compile_from_config(cfg)
    return c


class SKLearnClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier around an imdbfast model.

    Args:
        model: None (default) for the book's model built by :func:`imdbfast.fit` from
            ``model_kwargs`` (``layers``, ``activation``, ``optimizer``, ``loss``, ``metrics``,
            ``seed``, ``device``, ``threads``, ``input_dim``); or a callable returning a
            compiled imdbfast ``Sequential``, called as ``model(X=X, y=y, **model_kwargs)``; or
            a compiled ``Sequential``, cloned (fresh weights, same settings) before each fit
            unless ``warm_start``.
        warm_start: reuse the fitted model (its weights and optimizer state) on the next fit.
        model_kwargs: keywords for the model (see ``model``).
        fit_kwargs: keywords for ``Sequential.fit`` (``epochs``, ``batch_size``, ...; default
            the book's 4 epochs at batch 512, verbose 0); ``fit(X, y, **kwargs)`` overrides them.

    Attributes after fit: ``model_`` (the trained Sequential), ``history_`` (its History's
    ``history`` dict), ``classes_``, ``n_features_in_``.

    X may be a scipy.sparse matrix, a dense 2-D array (or a rectangular list of lists), or
    token-id sequences (imdbfast ``Sequences``, a 1-D object array of lists, ragged lists).
    """

    def __init__(self, model: Any = None, warm_start: bool = False,
                 model_kwargs: dict | None = None, fit_kwargs: dict | None = None):
        _require_sklearn("imdbfast.wrappers.SKLearnClassifier")
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    # ---- scikit-learn's protocol ---------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # a random initialisation unless a seed fixes it
        tags.non_deterministic = (self.model_kwargs or {}).get("seed") is None if \
            self.model is None else True
        # the book's defaults (4 epochs at batch 512) are for 25,000 reviews: on the checks'
        # toy sets of ~100 rows that is 4 steps
        tags.classifier_tags.poor_score = True
        tags.classifier_tags.multi_class = False  # one sigmoid output
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"non_deterministic": True, "poor_score": True, "binary_only": True}

    # ---- fitting -------------------------------------------------------------------------
    def _check_X(self, X: Any, reset: bool):
        from sklearn.utils.validation import check_array

        if _is_token_sequences(X):
            return X, None
        if isinstance(X, CSR):  # imdbfast's own matrix, already checked
            width = X.n_cols
        else:
            X = check_array(X, accept_sparse=("csr", "csc", "coo"),
                            dtype=(np.float32, np.float64),
                            ensure_min_samples=1)
            width = X.shape[1]
        if reset:
            self.n_features_in_ = width
        elif width != self.n_features_in_:
            raise ValueError(f"X has {width} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X, width

    def _check_y(self, y: Any, n: int, reset: bool) -> np.ndarray:
        from sklearn.utils.multiclass import type_of_target
        from sklearn.utils.validation import column_or_1d

        y = column_or_1d(y, warn=True)
        if len(y) != n:
            raise ValueError(f"y: {len(y)} labels for {n} rows of X")
        kind = type_of_target(y, input_name="y", raise_unknown=True)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"Unknown label type: {kind!r}; SKLearnClassifier needs class labels")
        classes = np.unique(y)
        if len(classes) == 1:
            raise ValueError(f"y: needs samples of 2 classes, only one class ({classes[0]!r}) "
                             "is present")
        if len(classes) > 2:
            raise ValueError(f"Only binary classification is supported. The type of the target "
                             f"is {kind} ({len(classes)} classes): the model has one sigmoid "
                             "output")
        if reset:
            self.classes_ = classes
        elif not np.array_equal(classes, self.classes_) and not np.all(np.isin(classes,
                                                                              self.classes_)):
            raise ValueError(f"y: classes {classes} differ from the fitted {self.classes_}")
        return np.searchsorted(self.classes_, y).astype(np.float32)

    def _get_model(self, X: Any, y: np.ndarray, width: int | None) -> Sequential:
        if self.warm_start and hasattr(self, "model_"):
            return self.model_
        kwargs = dict(self.model_kwargs or {})
        if self.model is None:
            unknown = sorted(set(kwargs) - set(_MODEL_KEYWORDS))
            if unknown:
                raise ValueError(f"model_kwargs: unknown {unknown}; imdbfast.fit's model "
                                 f"keywords are {list(_MODEL_KEYWORDS)}")
            if width is not None:
                if kwargs.get("input_dim") not in (None, width):
                    raise ValueError(f"model_kwargs: input_dim={kwargs['input_dim']} but X has "
                                     f"{width} features")
                kwargs["input_dim"] = width
            # imdbfast.fit's model, built and compiled without training (epochs=0)
            return _fit(X, y, epochs=0, verbose=0, **kwargs)
        if isinstance(self.model, Sequential):
            if self.model._compile_config is None:
                raise ValueError("model: the Sequential must be compiled")
            return self.model if self.warm_start else _clone_model(self.model)
        if callable(self.model):
            m = self.model(X=X, y=y, **kwargs)
            if not isinstance(m, Sequential) or m._compile_config is None:
                raise TypeError("model: the callable must return a compiled "
                                f"imdbfast.Sequential, got {type(m).__name__}")
            return m
        raise TypeError(f"model: expected None, a compiled imdbfast.Sequential or a callable "
                        f"returning one, got {type(self.model).__name__}")

    def fit(self, X: Any, y: Any, **kwargs: Any) -> "SKLearnClassifier":
        """Train on X, y (``kwargs`` go to ``Sequential.fit``, over ``fit_kwargs``)."""
        reset = not (self.warm_start and hasattr(self, "model_"))
        X, width = self._check_X(X, reset=reset)
        n = len(X) if width is None else (X.n_rows if isinstance(X, CSR) else X.shape[0])
        if n == 0:
            raise ValueError("X: 0 samples")
        y01 = self._check_y(y, n, reset=reset)
        if width is None and reset:
            self.n_features_in_ = None
        model = self._get_model(X, y01, width)
        _check_binary_output(model)
        fit_kwargs = {"epochs": 4, "batch_size": 512, "verbose": 0}
        fit_kwargs.update(self.fit_kwargs or {})
        fit_kwargs.update(kwargs)
        history = model.fit(X, y01, **fit_kwargs)
        if width is None:
            self.n_features_in_ = model._input_dim
        self.model_ = model
        self.history_ = dict(history.history)
        return self

    # ---- predicting ----------------------------------------------------------------------
    def _positive(self, X: Any) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        X, _ = self._check_X(X, reset=False)
        # P(classes_[1]): the sigmoid unit, or the second of a 2-unit softmax
        return self.model_.predict(X, verbose=0)[:, -1].astype(np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, 2): the probability of ``classes_[0]`` and of ``classes_[1]``."""
        p = self._positive(X)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X: Any) -> np.ndarray:
        """(n,): the log-odds of ``classes_[1]`` (positive where predict says classes_[1], as
        scikit-learn's binary classifiers)."""
        p = np.clip(self._positive(X), 1e-300, 1.0 - 2.0**-53)
        return np.log(p) - np.log1p(-p)

    def predict(self, X: Any) -> np.ndarray:
        positive = self._positive(X) > 0.5
        return self.classes_[positive.astype(np.int64)]


__all__ = ["SKLearnClassifier"]
