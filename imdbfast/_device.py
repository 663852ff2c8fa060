"""GPU arrays from other libraries, used in place: anything with ``__cuda_array_interface__``
(cupy, PyTorch, Numba) or a CUDA DLPack capsule (converted through cupy). Only models on a CUDA
device accept them; cupy is needed only to convert dtypes, layouts and DLPack-only objects."""

from __future__ import annotations

from typing import Any

import numpy as np

_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged


def is_device_array(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None:
        return False
    try:
        return int(dev()[0]) in _DLPACK_CUDA
    except Exception:  # noqa: BLE001 - a foreign object's protocol method failed: not ours
        return False


def is_cupy(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def _cupy(why: str):
    try:
        import cupy
    except ImportError:
        raise TypeError(f"{why} needs cupy (pip install cupy-cuda12x or cupy-cuda13x)") from None
    return cupy


def _device_of(x: Any) -> int | None:
    dev = getattr(x, "device", None)
    for attr in ("id", "index"):  # cupy: device.id; torch: device.index
        v = getattr(dev, attr, None)
        if isinstance(v, int):
            return v
    return None


def as_float_array(x: Any, name: str, device: int, dtypes=("<f4",)):
    """x as an object exposing a C-contiguous ``__cuda_array_interface__`` with a dtype in
    ``dtypes`` on GPU ``device`` (converted with cupy when it is not), and that interface."""
    if not hasattr(x, "__cuda_array_interface__"):
        x = _cupy(f"{name}: a DLPack GPU array").from_dlpack(x)
    d = _device_of(x)
    if d is not None and d != device:
        raise ValueError(f"{name}: is on GPU {d}, the model on GPU {device}")
    iface = x.__cuda_array_interface__
    shape = tuple(int(s) for s in iface["shape"])
    contiguous = iface.get("strides") is None or tuple(iface["strides"]) == _c_strides(
        shape, np.dtype(iface["typestr"]).itemsize)
    if iface["typestr"] not in dtypes or not contiguous:
        cp = _cupy(f"{name}: a GPU array of dtype {iface['typestr']} or non-contiguous layout")
        x = cp.ascontiguousarray(cp.asarray(x), dtype=np.dtype(dtypes[0]))
        iface = x.__cuda_array_interface__
    if iface.get("mask") is not None:
        raise ValueError(f"{name}: masked GPU arrays are not supported")
    return x, iface


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for s in reversed(shape):
        strides.append(step)
        step *= s
    return tuple(reversed(strides))


def pointer(iface: dict) -> int:
    return int(iface["data"][0])


def stream(iface: dict, name: str) -> int | None:
    """The stream the array's producer wrote it on (the protocol's v3 ``stream`` field), which
    imdbfast's stream waits for before reading it; None: nothing to wait for."""
    s = iface.get("stream")
    if s is None:
        return None
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
        raise TypeError(f"{name}: __cuda_array_interface__ 'stream' must be an integer or None, "
                        f"got {type(s).__name__}")
    if int(s) <= 0:
        raise ValueError(f"{name}: __cuda_array_interface__ 'stream' {int(s)} is disallowed by "
                         "the protocol (1: the legacy default stream, 2: per-thread)")
    return int(s)


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy of a GPU array (small things only: sample weights, labels for class_weight)."""
    if is_cupy(x):
        return x.get()
    if hasattr(x, "cpu"):  # torch
        return x.cpu().numpy()
    return _cupy("copying a GPU array to the host").asnumpy(x)


def empty_cupy(shape: tuple, device: int):
    cp = _cupy("returning predictions on the GPU")
    with cp.cuda.Device(device):
        return cp.empty(shape, dtype=cp.float32)
