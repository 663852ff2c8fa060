"""Keras's utilities for the book's notebooks: ``to_categorical``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def to_categorical(x: Any, num_classes: int | None = None) -> npt.NDArray[np.float64]:
    """One-hot rows for integer class labels, as Keras's (float64; a trailing axis of 1 is
    dropped; ``num_classes`` defaults to the largest label + 1)."""
    a = np.asarray(x)
    if a.dtype == object or a.dtype.kind not in "biuf" or \
            (a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.round(a)))):
        raise ValueError(f"x: expected integer class labels, got {a.dtype} values")
    a = a.astype(np.int64)
    shape = a.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    a = a.reshape(-1)
    if num_classes is None or num_classes == 0:
        num_classes = int(a.max()) + 1 if a.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
            num_classes < 0:
        raise ValueError(f"num_classes: expected an int >= 0, got {num_classes!r}")
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"x: labels must be in [0, {num_classes}), found [{a.min()}, {a.max()}]")
    out = np.zeros((a.size, int(num_classes)))
    out[np.arange(a.size), a] = 1
    return out.reshape(shape + (int(num_classes),))
