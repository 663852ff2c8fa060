"""Keras 3's metrics, computed by the compiled core (cpp/metrics.cpp): BinaryAccuracy,
MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, AUC (ROC, 200 thresholds,
trapezoidal), Precision, Recall; for classes CategoricalAccuracy, SparseCategoricalAccuracy,
TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy and CategoricalCrossentropy.

Each works standalone as in Keras (``update_state``, ``result``, ``reset_state``) and in
``compile(metrics=[...])`` by object or by Keras's string names ("accuracy", "acc",
"binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
"top_k_categorical_accuracy", "mse", "mae", "binary_crossentropy", "categorical_crossentropy",
"AUC", "precision", "recall"); "accuracy" is binary accuracy for one output and categorical
accuracy for several, as Keras resolves it. History names them as Keras does (the string
given, else the object's name; repeats get _1, _2, ...). Compile metrics are unweighted, as
Keras's ``metrics=`` are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._checks import check_float, deserialize


class Metric:
    """Base class: ``kind`` names the compiled metric; the state is a float64 array of sums."""

    kind = ""
    default_name = ""

    def __init__(self, name: str | None = None, dtype: Any = None):
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"dtype: imdbfast's metrics compute in float32/float64, got {dtype!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        self.name = name or self.default_name
        self.threshold = 0.5
        self.num_thresholds = 200
        self.reset_state()

    # ---- the state, as the training loop keeps it (one per phase) ---------------------------
    def _new_state(self) -> np.ndarray:
        return np.zeros(_core.metric_state_size(self.kind, self.num_thresholds))

    def _add(self, state: np.ndarray, outputs: np.ndarray, y: np.ndarray,
             rows: np.ndarray | None = None, sample_weight: np.ndarray | None = None) -> None:
        _core.metric_update(self.kind, state, outputs, y, sample_weight, rows, self.threshold,
                            self.num_thresholds)

    def _from_loss_kernel(self) -> bool:
        """Whether the core's loss kernel computes it already (binary accuracy at 0.5)."""
        return False

    def _value(self, state: np.ndarray) -> float:
        return float(_core.metric_result(self.kind, state, self.num_thresholds))

    # ---- Keras's standalone API -------------------------------------------------------------
    def reset_state(self) -> None:
        self._state = self._new_state()

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        yp = _as_2d(y_pred, "y_pred")
        yt = _as_2d(y_true, "y_true")
        if yt.shape != yp.shape:
            raise ValueError(f"y_true and y_pred: shapes {np.shape(y_true)} and "
                             f"{np.shape(y_pred)} differ")
        sw = None
        if sample_weight is not None:
            sw = np.ascontiguousarray(np.asarray(sample_weight, dtype=np.float32).reshape(-1))
            if sw.shape != (yt.shape[0],) or not np.all(np.isfinite(sw)) or (sw < 0).any():
                raise ValueError(f"sample_weight: expected {yt.shape[0]} finite weights >= 0")
        self._add(self._state, yp, yt, None, sw)

    def result(self) -> float:
        return self._value(self._state)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": "float32"}

    @classmethod
    def from_config(cls, config: dict) -> "Metric":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _as_2d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected (samples,) or (samples, outputs), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


class BinaryAccuracy(Metric):
    """How often the prediction (p > threshold) equals the label."""

    kind, default_name = "binary_accuracy", "binary_accuracy"

    def __init__(self, name: str | None = None, dtype: Any = None, threshold: float = 0.5):
        super().__init__(name, dtype)
        self.threshold = check_float("threshold", threshold)

    def _from_loss_kernel(self) -> bool:
        return self.threshold == 0.5

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(Metric):
    """How often the output's argmax equals the label's (first index on ties, as argmax)."""

    kind, default_name = "categorical_accuracy", "categorical_accuracy"

    def _from_loss_kernel(self) -> bool:
        return True  # (the loss kernel's accuracy for several outputs)


class _SparseLabels:
    """Standalone update_state with integer class labels (n,) or (n, 1): one-hot first (the
    compiled loop gets one-hot labels already)."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        yp = _as_2d(y_pred, "y_pred")
        ids = np.asarray(y_true)
        if ids.ndim == 2 and ids.shape[1] == 1:
            ids = ids[:, 0]
        if ids.ndim != 1 or ids.shape[0] != yp.shape[0] or ids.dtype.kind not in "biuf":
            raise ValueError(f"y_true: expected {yp.shape[0]} class ids, got shape "
                             f"{np.shape(y_true)}")
        if np.any((ids < 0) | (ids >= yp.shape[1])) or np.any(ids != np.round(ids)):
            raise ValueError(f"y_true: class ids must be whole numbers in [0, {yp.shape[1]})")
        one_hot = np.zeros(yp.shape, np.float32)
        one_hot[np.arange(len(ids)), ids.astype(np.int64)] = 1.0
        Metric.update_state(self, one_hot, yp, sample_weight)  # type: ignore[arg-type]


class SparseCategoricalAccuracy(_SparseLabels, CategoricalAccuracy):
    kind, default_name = "categorical_accuracy", "sparse_categorical_accuracy"


class TopKCategoricalAccuracy(Metric):
    """How often the true class is among the k largest outputs (ties count for it, as Keras's
    in_top_k)."""

    kind, default_name = "top_k", "top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None, dtype: Any = None):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 2**24:
            raise ValueError(f"k: must be an int >= 1, got {k!r}")
        super().__init__(name, dtype)
        self.num_thresholds = int(k)  # (the core takes k in the thresholds' place)
        self.k = int(k)

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(_SparseLabels, TopKCategoricalAccuracy):
    default_name = "sparse_top_k_categorical_accuracy"


class CategoricalCrossentropy(Metric):
    """Categorical cross-entropy of the outputs as probabilities (normalized, clipped), as
    Keras's metric (from_logits=False)."""

    kind, default_name = "cce", "categorical_crossentropy"

    def __init__(self, name: str | None = None, dtype: Any = None, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis: int = -1):
        if from_logits or label_smoothing or axis != -1:
            raise ValueError("CategoricalCrossentropy: from_logits, label_smoothing and axis "
                             "are not supported as a metric by imdbfast")
        super().__init__(name, dtype)


class MeanSquaredError(Metric):
    kind, default_name = "mse", "mean_squared_error"


class MeanAbsoluteError(Metric):
    kind, default_name = "mae", "mean_absolute_error"


class BinaryCrossentropy(Metric):
    """Binary cross-entropy of clipped probabilities (Keras's metric, from_logits=False)."""

    kind, default_name = "bce", "binary_crossentropy"

    def __init__(self, name: str | None = None, dtype: Any = None, from_logits: bool = False,
                 label_smoothing: float = 0.0):
        if from_logits or label_smoothing:
            raise ValueError("BinaryCrossentropy: from_logits and label_smoothing are not "
                             "supported as a metric by imdbfast")
        super().__init__(name, dtype)


class AUC(Metric):
    """Keras's ROC AUC: num_thresholds evenly spaced thresholds, trapezoidal sum."""

    kind, default_name = "auc", "auc"

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 dtype: Any = None, thresholds: Any = None, multi_label: bool = False,
                 num_labels: Any = None, label_weights: Any = None, from_logits: bool = False):
        for arg, v, ok in (("curve", curve, "ROC"), ("summation_method", summation_method,
                                                     "interpolation")):
            if v != ok:
                raise ValueError(f"AUC: {arg}={v!r} is not supported by imdbfast (only {ok!r})")
        for arg, v in (("thresholds", thresholds), ("num_labels", num_labels),
                       ("label_weights", label_weights)):
            if v is not None:
                raise ValueError(f"AUC: {arg} is not supported by imdbfast")
        if multi_label or from_logits:
            raise ValueError("AUC: multi_label and from_logits are not supported by imdbfast")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or \
                num_thresholds <= 1:
            raise ValueError(f"num_thresholds: must be an int > 1, got {num_thresholds!r}")
        super().__init__(name, dtype)
        self.num_thresholds = num_thresholds
        self.reset_state()

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": "ROC",
                "summation_method": "interpolation", "multi_label": False}


class _AtThreshold(Metric):
    def __init__(self, thresholds: Any = None, top_k: Any = None, class_id: Any = None,
                 name: str | None = None, dtype: Any = None):
        if top_k is not None or class_id is not None:
            raise ValueError(f"{type(self).__name__}: top_k and class_id are not supported by "
                             "imdbfast")
        if thresholds is not None and (isinstance(thresholds, bool) or not isinstance(
                thresholds, (int, float, np.integer, np.floating))):
            raise ValueError(f"thresholds: one number is supported by imdbfast, got {thresholds!r}")
        super().__init__(name, dtype)
        # Keras: "Threshold values must be in [0, 1]"
        self.threshold = 0.5 if thresholds is None else check_float("thresholds", thresholds, 0, 1)
        self._thresholds = thresholds

    def get_config(self) -> dict:
        return {**super().get_config(), "thresholds": self._thresholds}


class Precision(_AtThreshold):
    kind, default_name = "precision", "precision"


class Recall(_AtThreshold):
    kind, default_name = "recall", "recall"


_BY_STRING = {"accuracy": BinaryAccuracy, "acc": BinaryAccuracy,
              "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
              "sparse_categorical_accuracy": SparseCategoricalAccuracy,
              "top_k_categorical_accuracy": TopKCategoricalAccuracy,
              "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
              "categorical_crossentropy": CategoricalCrossentropy,
              "mse": MeanSquaredError,
              "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
              "mean_absolute_error": MeanAbsoluteError, "binary_crossentropy": BinaryCrossentropy,
              "auc": AUC, "precision": Precision, "recall": Recall}
_CLASSES = {c.__name__: c for c in (BinaryAccuracy, CategoricalAccuracy,
                                    SparseCategoricalAccuracy, TopKCategoricalAccuracy,
                                    SparseTopKCategoricalAccuracy, CategoricalCrossentropy,
                                    MeanSquaredError, MeanAbsoluteError,
                                    BinaryCrossentropy, AUC, Precision, Recall)}


def get(identifier: Any, outputs: int = 1) -> Metric:
    """A metric from Keras's string name (kept as its name), a config dict or an instance;
    "accuracy" / "acc" is categorical accuracy for a model of several outputs (as Keras)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier, _CLASSES, "metrics")
    if isinstance(identifier, str):
        cls = _BY_STRING.get(identifier) or _BY_STRING.get(identifier.lower())
        if cls is BinaryAccuracy and identifier.lower() in ("accuracy", "acc") and outputs > 1:
            cls = CategoricalAccuracy
        if cls is not None:
            return cls(name=identifier)
    raise ValueError(f"metrics: unknown {identifier!r}; valid: {sorted(_BY_STRING)} (or AUC, "
                     "as Keras spells it) or an imdbfast.metrics.Metric")


def serialize(m: Metric, given: Any) -> Any:
    """compile's record of a metric: the string it was given, else its class and config."""
    if isinstance(given, str):
        return given
    return {"module": "keras.metrics", "class_name": type(m).__name__, "config": m.get_config(),
            "registered_name": None}


def compile_metrics(metrics: Any, outputs: int = 1) -> list[tuple[str, Metric]]:
    """(name, metric) for compile's list, named as Keras names them: unique, repeats _1, _2.
    outputs: the model's (how "accuracy" resolves). Class-id labels are made one-hot before
    the compiled loop, so there every metric sees one-hot rows."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Metric, dict)) or not hasattr(metrics, "__iter__"):
        raise TypeError("metrics: expected a list of metric names or objects, got "
                        f"{metrics!r}")
    out: list[tuple[str, Metric]] = []
    taken: set[str] = set()
    for given in metrics:
        m = get(given, outputs)
        name, k = m.name, 0
        while name in taken:
            k += 1
            name = f"{m.name}_{k}"
        taken.add(name)
        out.append((name, m))
    return out
