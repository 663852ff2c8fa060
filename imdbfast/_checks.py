"""Argument checks shared by the model API: each names the argument and says what it expects,
before any work is done."""

from __future__ import annotations

import math
from typing import Any, Literal, overload

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
            # Keras looks labels up as class_weight.get(int(label)): a key that is not a whole
            # number would match no label there, silently; here it is an error
            integral = isinstance(k, (int, np.integer)) or (
                isinstance(k, (float, np.floating)) and float(k).is_integer())
            if isinstance(k, (bool, np.bool_)) or not integral:
                raise ValueError(f"class_weight: keys must be class indices (ints), got {k!r}")
            w[classes == int(k)] = check_float(f"class_weight[{int(k)}]", v, 0.0)
        sample_weight = w
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype == object or w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight: must be numeric, got dtype {w.dtype}")
    with np.errstate(over="ignore"):  # an overflow is reported below, as an error
        w = np.ascontiguousarray(w.reshape(-1) if w.ndim == 2 and w.shape[1] == 1 else w,
                                 dtype=np.float32)
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {np.shape(sample_weight)}")
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise ValueError("sample_weight: weights must be finite (in float32: at most 3.4e38) "
                         "and >= 0")
    return w


def _bound(v: int) -> str:
    for k in (31, 62, 63, 64):
        if v == 2**k - 1:
            return f"2**{k} - 1"
    return str(v)


@overload
def check_int(v: Any, name: str, low: int | None = None, high: int | None = None, *,
              none_ok: Literal[False] = False, kind: type = ValueError) -> int: ...


@overload
def check_int(v: Any, name: str, low: int | None = None, high: int | None = None, *,
              none_ok: Literal[True], kind: type = ValueError) -> int | None: ...


def check_int(v: Any, name: str, low: int | None = None, high: int | None = None, *,
              none_ok: bool = False, kind: type = ValueError) -> int | None:
    """``v`` as a Python int in [low, high] (None passes when ``none_ok``); bools, floats and
    strings are not ints. The one integer check of the package: its message names the argument
    and the range. ``kind``: the exception for a value that is not an int at all."""
    if v is None and none_ok:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise kind(f"{name}: expected an int{'' if low is None else f' >= {low}'}"
                   f"{' or None' if none_ok else ''}, got {v!r}")
    if low is not None and v < low:
        raise ValueError(f"{name}: expected an int >= {low}{' or None' if none_ok else ''}, "
                         f"got {v!r}")
    if high is not None and v > high:
        raise ValueError(f"{name}: must be at most {_bound(high)}, got {v!r}")
    return int(v)


def check_batch_size(v: Any, name: str) -> int:
    """A batch size >= 1; any larger than _MAX_BATCH is one batch of everything."""
    return min(check_int(v, name, 1), _MAX_BATCH)


def check_positive_int(v: Any, name: str) -> int:
    return check_int(v, name, 1, _INT64_MAX)


def check_nonneg_int(v: Any, name: str) -> int:
    return check_int(v, name, 0, _INT64_MAX)


def check_verbose(v: Any) -> int:
    if v == "auto":
        return 1
    if isinstance(v, (bool, np.bool_)):  # Keras compares verbose with 0 and 1: True is 1
        return int(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1, 2):
        return int(v)
    raise ValueError(f"verbose: expected 'auto', 0, 1 or 2, got {v!r}")


def check_seed(seed: Any) -> int | None:
    return check_int(seed, "seed", 0, 2**64 - 1, none_ok=True)


def check_layer_name(name: Any) -> str | None:
    """A layer's name: None (the model names it) or a non-empty string without '/' (it names a
    group in Keras's files)."""
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"name: expected a non-empty string without '/', got {name!r}")
    return name


def check_layer_dtype(dtype: Any) -> None:
    """A layer's dtype: None or float32, as a name or Keras's DTypePolicy record."""
    dtype_name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if dtype_name not in (None, "float32"):
        raise ValueError(f"dtype: imdbfast computes in float32, got {dtype!r}")


def check_threads(threads: Any, name: str = "threads") -> int | None:
    """None (the default) or 1 to 2**31 - 1."""
    return check_int(threads, name, 1, 2**31 - 1, none_ok=True)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                high_open: bool = False) -> float:
    """A finite number in [low, high] (or [low, high) with ``high_open``), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if low is not None and v < low:
        raise ValueError(f"{name}: must be >= {low}, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{name}: must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def deserialize(record: dict, classes: dict, what: str) -> Any:
    """An object from Keras's {"class_name", "config"} record, of one of ``classes``."""
    cls = classes.get(record.get("class_name", ""))
    if cls is None:
        raise ValueError(f"{what}: unknown class {record.get('class_name')!r}; valid: "
                         f"{sorted(classes)}")
    return cls.from_config(dict(record.get("config") or {}))
