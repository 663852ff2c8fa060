"""Keras 3's losses for these models: BinaryCrossentropy (from_logits, label_smoothing),
CategoricalCrossentropy (one-hot labels), SparseCategoricalCrossentropy (integer labels) and
MeanSquaredError, as objects or by Keras's names ("binary_crossentropy", "categorical_crossentropy",
"sparse_categorical_crossentropy", "mse", "mean_squared_error"). The arithmetic is the compiled
core's (cpp/common.h); categorical cross-entropy is computed from the softmax's logits (a stable
log-softmax), as TF-Keras does for a softmax output."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_float, deserialize


class Loss:
    kind = ""  # 'bce' or 'mse'
    default_name = ""

    def __init__(self, reduction: str = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None):
        if reduction != "sum_over_batch_size":
            raise ValueError(f"reduction: only 'sum_over_batch_size' (Keras's default) is "
                             f"supported, got {reduction!r}")
        if dtype not in (None, "float32"):
            raise ValueError(f"dtype: imdbfast computes in float32, got {dtype!r}")
        self.name = name or self.default_name
        self.from_logits = False
        self.label_smoothing = 0.0

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": "sum_over_batch_size", "dtype": None}

    @classmethod
    def from_config(cls, config: dict) -> "Loss":
        return cls(**config)

    def _logits_and_smoothing(self, from_logits: Any, label_smoothing: Any, axis: Any) -> None:
        """The cross-entropies' shared arguments, checked."""
        if from_logits not in (True, False):
            raise ValueError(f"from_logits: expected True or False, got {from_logits!r}")
        if axis != -1:
            raise ValueError(f"axis: only -1 is supported, got {axis!r}")
        s = check_float("label_smoothing", label_smoothing)
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing!r}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = s

    def smoothed(self, y: np.ndarray) -> np.ndarray:
        """The labels the loss sees (Keras: y (1 - s) + s / 2 with label smoothing s)."""
        if not self.label_smoothing:
            return y
        s = np.float32(self.label_smoothing)
        return np.ascontiguousarray(y * (np.float32(1) - s) + np.float32(0.5) * s,
                                    dtype=np.float32)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class BinaryCrossentropy(Loss):
    """Keras's binary cross-entropy. ``from_logits``: the model's output is the logit (a
    linear last layer); ``label_smoothing`` in [0, 1] moves the labels toward 0.5 for the loss
    (the metrics see the labels as given)."""

    kind, default_name = "bce", "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str = "binary_crossentropy",
                 dtype: Any = None):
        super().__init__(reduction, name, dtype)
        self._logits_and_smoothing(from_logits, label_smoothing, axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": -1}


class CategoricalCrossentropy(Loss):
    """Keras's categorical cross-entropy, -sum(y log p) per sample, on one-hot (or soft) label
    rows that sum to 1. The output layer is a softmax, or linear with ``from_logits=True``;
    ``label_smoothing`` s moves the labels to y (1 - s) + s / classes for the loss."""

    kind, default_name = "cce", "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size",
                 name: str = "categorical_crossentropy", dtype: Any = None):
        super().__init__(reduction, name, dtype)
        self._logits_and_smoothing(from_logits, label_smoothing, axis)

    def smoothed(self, y: np.ndarray) -> np.ndarray:
        if not self.label_smoothing:
            return y
        s = np.float32(self.label_smoothing)
        return np.ascontiguousarray(y * (np.float32(1) - s) + s / np.float32(y.shape[1]),
                                    dtype=np.float32)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": -1}


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy with integer class labels (n,) or (n, 1) in [0, classes)."""

    kind, default_name = "sparse_cce", "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_class: Any = None,
                 reduction: str = "sum_over_batch_size",
                 name: str = "sparse_categorical_crossentropy", dtype: Any = None):
        super().__init__(reduction, name, dtype)
        if from_logits not in (True, False):
            raise ValueError(f"from_logits: expected True or False, got {from_logits!r}")
        if ignore_class is not None:
            raise ValueError("ignore_class: not supported by imdbfast")
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": None}


class MeanSquaredError(Loss):
    kind, default_name = "mse", "mean_squared_error"

    def __init__(self, reduction: str = "sum_over_batch_size", name: str = "mean_squared_error",
                 dtype: Any = None):
        super().__init__(reduction, name, dtype)


_BY_STRING = {"binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
              "categorical_crossentropy": CategoricalCrossentropy,
              "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
              "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError}
_CLASSES = {c.__name__: c for c in (BinaryCrossentropy, CategoricalCrossentropy,
                                    SparseCategoricalCrossentropy, MeanSquaredError)}


def get(identifier: Any) -> Loss:
    """A loss from Keras's string name, a config dict ({"class_name", "config"}) or an
    instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier, _CLASSES, "loss")
    if isinstance(identifier, str) and identifier.lower() in _BY_STRING:
        return _BY_STRING[identifier.lower()]()
    if isinstance(identifier, str) and identifier in _CLASSES:  # Keras: get("BinaryCrossentropy")
        return _CLASSES[identifier]()
    raise ValueError(f"loss: unknown {identifier!r}; valid: {sorted(_BY_STRING)} or an "
                     "imdbfast.losses.Loss")


def serialize(loss: Loss, given: Any) -> Any:
    """compile's record of the loss: the string it was given, else its class and config."""
    if isinstance(given, str):
        return given
    return {"module": "keras.losses", "class_name": type(loss).__name__,
            "config": loss.get_config(), "registered_name": None}
