"""Argument checks shared by the model API: each names the argument and says what it expects,
before any work is done."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _device

_INT64_MAX = 2**63 - 1
# A batch larger than any data set is one batch: sizes clamp here, so that the compiled core's
# int64 arithmetic (batch index times size) cannot overflow.
_MAX_BATCH = 2**62


def sample_weights(sample_weight: Any, class_weight: dict | None, y: np.ndarray, n: int):
    """Host float32 weights (n,) or None; GPU labels or weights are copied down (n floats)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("class_weight and sample_weight cannot be given together")
    if _device.is_device_array(sample_weight):
        sample_weight = _device.to_host(sample_weight)
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError("class_weight: expected a dict {class: weight}")
        if _device.is_device_array(y):
            y = _device.to_host(y)
        classes = np.rint(y[:, 0] if y.shape[1] == 1 else np.argmax(y, axis=1)).astype(np.int64)
        w = np.ones(n, dtype=np.float32)
        for k, v in class_weight.items():
            w[classes == int(k)] = float(v)
        sample_weight = w
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype == object or w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight: must be numeric, got dtype {w.dtype}")
    w = np.ascontiguousarray(w.reshape(-1) if w.ndim == 2 and w.shape[1] == 1 else w, dtype=np.float32)
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {np.shape(sample_weight)}")
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise ValueError("sample_weight: weights must be finite and >= 0")
    return w


def check_batch_size(v: Any, name: str) -> int:
    """A batch size >= 1; any larger than _MAX_BATCH is one batch of everything."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    return min(int(v), _MAX_BATCH)


def check_positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    if v > _INT64_MAX:
        raise ValueError(f"{name}: must be at most 2**63 - 1, got {v!r}")
    return int(v)


def check_nonneg_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
    if v > _INT64_MAX:
        raise ValueError(f"{name}: must be at most 2**63 - 1, got {v!r}")
    return int(v)


def check_verbose(v: Any) -> int:
    if v == "auto":
        return 1
    if v in (0, 1, 2) and not isinstance(v, bool):
        return int(v)
    raise ValueError(f"verbose: expected 'auto', 0, 1 or 2, got {v!r}")


def check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0 or None, got {seed!r}")
    if seed >= 2**64:
        raise ValueError(f"seed: must be below 2**64, got {seed!r}")
    return int(seed)


def check_threads(threads: Any) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads: expected an int >= 1 or None, got {threads!r}")
    if threads > 2**31 - 1:
        raise ValueError(f"threads: must be at most 2**31 - 1, got {threads!r}")
    return int(threads)
