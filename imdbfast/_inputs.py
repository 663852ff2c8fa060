"""A model's inputs: what fit, evaluate and predict accept, checked and converted to what the
compiled Net takes (a CSR and float32 labels on the CPU; a DeviceCSR and DeviceArrays on a GPU,
copied up once per fit or borrowed in place), and the input dimension they imply.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _backend, _checks, _core, _device
from ._encoding import flatten_sequences, to_csr

if TYPE_CHECKING:
    from .models import Sequential

BOOK_NUM_WORDS = 10000


def matrix_width(x: Any) -> int | None:
    """The width of a matrix input (CSR, scipy.sparse, a 2-D array of any dtype: an object
    array of numbers is a matrix too); None for token sequences."""
    if isinstance(x, _core.CSR):
        return x.n_cols
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == 2 and (
            isinstance(x, np.ndarray) or getattr(x, "dtype", object) != object):
        return int(shape[1])
    return None


def input_dim_of(x: Any) -> int:
    """imdbfast.fit's default input dimension: a matrix's width, the num_words token sequences
    were loaded with, else the book's 10,000 (refused when an id does not fit)."""
    width = matrix_width(x)
    if width is not None:
        return width
    dim = getattr(x, "num_words", None)
    if dim:
        return int(dim)
    tokens, _ = flatten_sequences(x)
    if tokens.size and tokens.max() >= BOOK_NUM_WORDS:
        raise ValueError("input_dim: token sequences hold ids >= 10000 (the book's num_words); "
                         "pass input_dim= the num_words the data was loaded with")
    return BOOK_NUM_WORDS


def inputs(model: Sequential, x: Any, name: str):
    """x as a CSR (host inputs) or a DeviceCSR (GPU inputs), building the model on first use
    with the width x implies."""
    if x is None:
        raise ValueError(f"{name}: no input data")
    if model._text is not None:  # strings, vectorised by the model's first layer
        from ._text import as_texts

        texts = as_texts(x, name)
        if not model.built:
            model.build()  # (refused while the layer has no vocabulary)
        return model._text._vectorize(texts, name)
    mod = _backend.cuda_module() if model.device != "cpu" else None
    if mod is not None and isinstance(x, mod.DeviceCSR):
        _require_dim(model, x.n_cols, name)
        return x
    if _device.is_device_array(x):
        return _device_matrix(model, x, name)
    if not model.built:
        dim = model._input_dim
        if dim is None:
            dim = matrix_width(x)
            if dim is None:
                raise ValueError(f"{name}: token sequences need the input dimension: give the "
                                 "first layer input_dim= (the num_words the data was loaded "
                                 "with) or start with imdbfast.layers.Input(shape=(d,))")
        model.build(dim)
    return to_csr(x, model._input_dim, threads=model._threads(None), name=name)


def labels(model: Sequential, y: Any, n: int, name: str):
    """y as (n, outputs) float32 labels: a host array, or a GPU array left on the device
    (finiteness is checked there when it is borrowed: DeviceArray.borrow)."""
    if y is None:
        raise ValueError(f"{name}: no labels")
    outputs = model._dense_layers()[-1].units
    kind = model._loss.kind if model._loss is not None else None
    if kind == "sparse_cce":  # class ids -> one-hot rows (the core's categorical loss)
        return _one_hot(_device.to_host(y) if _device.is_device_array(y) else y, n, outputs,
                        name)
    if _device.is_device_array(y):
        a, iface = _device.as_float_array(y, name, _gpu_index(model, name))
        a = a.reshape(_label_shape(tuple(int(s) for s in iface["shape"]), n, outputs, name))
    else:
        a = np.asarray(y)
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise TypeError(f"{name}: labels must be numeric, got dtype {a.dtype}")
        with np.errstate(over="ignore"):  # an overflow is reported below, as an error
            a = np.ascontiguousarray(a.reshape(_label_shape(a.shape, n, outputs, name)),
                                     dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: labels hold NaN or infinity" + (
                "" if not np.all(np.isfinite(np.asarray(y))) else
                " in float32 (imdbfast's precision: values beyond 3.4e38 overflow)"))
    if kind in ("bce", "cce") and n:
        lo, hi = np.float32(float(a.min())), np.float32(float(a.max()))  # (host or GPU)
        if lo < 0 or hi > 1:
            what = "binary" if kind == "bce" else "categorical"
            raise ValueError(f"{name}: {what} cross-entropy needs labels in [0, 1], found "
                             f"[{lo}, {hi}]")
    if kind == "cce" and n:
        sums = (_device.to_host(a) if _device.is_device_array(a) else a).sum(axis=1)
        # (float32 sums of O values are 1 to ~O ulp; 1e-4 is far above that, far below a bug)
        bad = np.flatnonzero(np.abs(np.asarray(sums, dtype=np.float64) - 1.0) > 1e-4)
        if len(bad):
            raise ValueError(f"{name}: categorical cross-entropy needs one-hot (or probability) "
                             f"rows summing to 1; row {bad[0]} sums to {float(sums[bad[0]])} "
                             "(integer class labels go with sparse_categorical_crossentropy; "
                             "utils.to_categorical makes one-hot rows)")
    return a


def _one_hot(y: Any, n: int, classes: int, name: str) -> np.ndarray:
    """Integer class labels (n,) or (n, 1) in [0, classes) as one-hot float32 rows."""
    a = np.asarray(y)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: class labels must be numeric, got dtype {a.dtype}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name}: sparse categorical labels are class ids, shape ({n},) or "
                         f"({n}, 1); got {a.shape} (one-hot rows go with "
                         "categorical_crossentropy)")
    if a.shape[0] != n:
        raise ValueError(f"{name}: {a.shape[0]} labels for {n} rows of x")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name}: class ids must be whole numbers")
    bad = np.flatnonzero((a < 0) | (a >= classes))
    if len(bad):
        raise ValueError(f"{name}: class id {a[bad[0]].item()!r} (row {bad[0]}) is out of range for "
                         f"{classes} classes [0, {classes})")
    out = np.zeros((n, classes), np.float32)
    out[np.arange(n), a.astype(np.int64)] = 1.0
    return out


def _label_shape(shape: tuple, n: int, outputs: int, name: str) -> tuple:
    if len(shape) == 1 and outputs == 1:
        shape = (shape[0], 1)
    if len(shape) != 2 or shape[1] != outputs:
        raise ValueError(f"{name}: expected shape ({n},) or ({n}, {outputs}), got {shape}")
    if shape[0] != n:
        raise ValueError(f"{name}: {shape[0]} labels for {n} rows of x")
    return shape


def validation(model: Sequential, data: Any):
    """fit's validation_data as (x, y, sample weights or None), checked."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError("validation_data: expected (x_val, y_val) or (x_val, y_val, sample_weight)")
    xv = inputs(model, data[0], "validation_data[0]")
    yv = labels(model, data[1], xv.n_rows, "validation_data[1]")
    swv = _checks.sample_weights(data[2] if len(data) == 3 else None, None, yv, xv.n_rows)
    if xv.n_rows == 0:
        raise ValueError("validation_data: no rows")
    return xv, yv, swv


def split_validation(xs, ys, sw, fraction: Any, threads: int):
    """Keras's validation_split: the last `fraction` of the rows (before any shuffle) held out.
    Returns (training (x, y, sw), validation (x, y, sw))."""
    n = xs.n_rows
    if isinstance(fraction, bool) or not (isinstance(fraction, (int, float, np.integer, np.floating))
                                          and 0 < fraction < 1):
        raise ValueError(f"validation_split: must be in (0, 1), got {fraction!r}")
    split_at = int(n * (1.0 - fraction))
    if split_at == 0 or split_at == n:
        raise ValueError(f"validation_split: {fraction} of {n} rows leaves "
                         f"{split_at} for training and {n - split_at} for validation")
    head, tail = np.arange(split_at, dtype=np.int64), np.arange(split_at, n, dtype=np.int64)
    val = (xs.take(tail, threads), ys[split_at:], None if sw is None else sw[split_at:])
    train = (xs.take(head, threads), ys[:split_at], None if sw is None else sw[:split_at])
    return train, val


def placed(model: Sequential, xs):
    """xs on the model's device: a DeviceCSR on a GPU (host matrices are copied up once and
    remembered while they live), xs itself on the CPU."""
    if model.device == "cpu":
        return xs
    mod = _backend.cuda_module()
    if isinstance(xs, mod.DeviceCSR):
        return xs
    for ref, d in model._device_cache:
        if ref() is xs:
            return d
    d = mod.DeviceCSR(xs, _backend.device_index(model.device))
    model._device_cache = [(weakref.ref(xs), d)] + model._device_cache[:1]
    return d


def placed_array(model: Sequential, a, name: str):
    """Labels or weights on the model's device: host arrays copied up, GPU arrays borrowed."""
    if model.device == "cpu" or a is None:
        return a
    mod, index = _backend.cuda_module(), _backend.device_index(model.device)
    if isinstance(a, np.ndarray):
        return mod.DeviceArray(a, index)
    iface = a.__cuda_array_interface__
    size = int(np.prod([int(s) for s in iface["shape"]]))
    return mod.DeviceArray.borrow(_device.pointer(iface), size, a, index, name,
                                  _device.stream(iface, name))


def _require_dim(model: Sequential, dim: int, name: str) -> None:
    if not model.built:
        model.build(dim)
    if dim != model._input_dim:
        raise ValueError(f"{name}: has {dim} columns, the model's input dimension is "
                         f"{model._input_dim}")


def _gpu_index(model: Sequential, name: str) -> int:
    if model.device == "cpu":
        raise TypeError(f"{name}: a GPU array needs a model on device='cuda' (or copy it to "
                        "the host first, e.g. with .get() or .cpu())")
    return _backend.device_index(model.device)


def _device_matrix(model: Sequential, x: Any, name: str):
    """The CSR of a GPU (rows, input_dim) matrix, built on the GPU."""
    index = _gpu_index(model, name)
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 2:
        raise ValueError(f"{name}: a GPU array must be the 2-D (rows, input_dim) matrix, got "
                         f"shape {shape}")
    _require_dim(model, int(shape[1]), name)
    x, iface = _device.as_float_array(x, name, index, ("<f4", "<f8"))
    dtype = "float32" if iface["typestr"] == "<f4" else "float64"
    return _backend.cuda_module().DeviceCSR.from_dense(
        _device.pointer(iface), int(shape[0]), int(shape[1]), dtype, index,
        _device.stream(iface, name))
