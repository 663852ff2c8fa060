"""Keras 3's weight regularizers: ``L1``, ``L2`` and ``L1L2`` (also ``l1``, ``l2``, ``l1_l2``),
for ``Dense(kernel_regularizer=..., bias_regularizer=...)``.

The penalty ``l1 * sum(|w|) + l2 * sum(w ** 2)`` of every trainable weight is added to the loss
that fit, evaluate and the histories report, and its gradient to the weights' gradients; both
are computed in the compiled core (cpp/common.h: penalty_row, penalty_grad). Calling a
regularizer on an array gives the same penalty in NumPy (float64)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _factor(value: Any, name: str) -> float:
    """Keras's validate_float_arg: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"Invalid value for argument {name}: expected a non-negative float. "
                         f"Received: {name}={value!r}")
    v = float(value)
    if math.isinf(v) or math.isnan(v) or v < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a non-negative float. "
                         f"Received: {name}={value!r}")
    return v


class Regularizer:
    """The base class. imdbfast's core computes L1 and L2 penalties only: a subclass must be
    one of L1, L2 or L1L2 (or derive from them) to be used in a layer."""

    l1 = 0.0
    l2 = 0.0

    def __call__(self, x: Any) -> float:
        w = np.asarray(x, dtype=np.float64)
        return float(self.l1 * np.abs(w).sum() + self.l2 * np.square(w).sum())

    @classmethod
    def from_config(cls, config: dict) -> "Regularizer":
        return cls(**config)

    def get_config(self) -> dict:
        raise NotImplementedError(f"{self} does not implement get_config()")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x ** 2)``; both factors default to 0 (as Keras's)."""

    def __init__(self, l1: float | None = 0.0, l2: float | None = 0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|x|)``, l1 = 0.01 by default."""

    def __init__(self, l1: float | None = 0.01):
        # Keras keeps l1 as a float32 tensor: its config holds the float32 value.
        self.l1 = float(np.float32(_factor(0.01 if l1 is None else l1, "l1")))

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(x ** 2)``, l2 = 0.01 by default."""

    def __init__(self, l2: float | None = 0.01):
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def get_config(self) -> dict:
        return {"l2": self.l2}


l1 = L1
l2 = L2
l1_l2 = L1L2

_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
# Keras's string identifiers (its registry's snake-case names): the classes' defaults.
_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def serialize(regularizer: Regularizer | None) -> dict | None:
    """Keras's record of a regularizer (``keras.regularizers.serialize``)."""
    if regularizer is None:
        return None
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__,
            "config": regularizer.get_config(), "registered_name": None}


def deserialize(config: dict, custom_objects: dict | None = None) -> Regularizer:
    """A regularizer from Keras's record ({"class_name": "L2", "config": {"l2": 0.002}})."""
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = (custom_objects or {}).get(name) or _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"regularizer: unknown class {name!r}; imdbfast computes "
                         f"{sorted(_CLASSES)}")
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier: Any) -> Regularizer | None:
    """A regularizer from None, a name ('l1', 'l2', 'l1_l2'), a Keras record, a class or an
    instance (``keras.regularizers.get``)."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier not in _NAMES:
            raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}; "
                             f"valid: {sorted(_NAMES)}")
        return _NAMES[identifier]()
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if isinstance(identifier, Regularizer):
        return identifier
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}")


def factors(identifier: Any, arg: str) -> tuple[Regularizer | None, float, float]:
    """(the regularizer, its l1, its l2) for a layer's ``arg``; refuses what the core cannot
    compute (a custom function or a regularizer of another kind), naming ``arg``."""
    try:
        reg = get(identifier)
    except ValueError as e:
        raise ValueError(f"{arg}: {e}") from None
    if reg is None:
        return None, 0.0, 0.0
    if type(reg).__call__ is not Regularizer.__call__:
        raise ValueError(f"{arg}: imdbfast computes L1 and L2 penalties in its core; "
                         f"{type(reg).__name__} has its own formula (use L1, L2 or L1L2)")
    return reg, _factor(reg.l1, f"{arg}.l1"), _factor(reg.l2, f"{arg}.l2")
