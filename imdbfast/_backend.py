"""Which backend runs a model: 'cpu' (the compiled OpenMP core) or, once its kernels exist,
'cuda'. The CUDA module (imdbfast._cuda) is optional: it is built when CMake finds nvcc and is
imported here softly, so `import imdbfast` never needs CUDA."""

from __future__ import annotations

from typing import Any

try:  # built only with a CUDA compiler; links the CUDA runtime statically
    from . import _cuda
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None

GPU_TRAINING = False  # the GPU kernels are the CUDA backend issue's; until then, CPU only


def cuda_info() -> dict:
    """What this build and machine offer on the GPU side."""
    if _cuda is None:
        return {"cuda": False, "cuda_devices": [], "cuda_reason": "built without the CUDA module"}
    devices, reason = _cuda.devices()
    return {"cuda": True, "cuda_architectures": _cuda.architectures, "cuda_devices": devices,
            "cuda_runtime": _cuda.runtime_version(), "cuda_driver": _cuda.driver_version(),
            "cuda_reason": reason, "cuda_training": GPU_TRAINING}


def cuda_available() -> bool:
    """True when models can train on a GPU here: the CUDA module is built, a device is usable,
    and the GPU kernels exist (not yet: see build_info() for the module and devices)."""
    return GPU_TRAINING and _cuda is not None and bool(_cuda.devices()[0])


def resolve_device(device: Any) -> str:
    """'cpu' | 'auto' | 'cuda' | 'cuda:N' -> the device to use; an explicit CUDA request that
    cannot be met is an error naming the reason, never a silent fallback."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu', got {type(device).__name__}")
    d = device.lower()
    if d in ("cpu", "auto"):
        return "cpu"  # 'auto' picks the GPU once GPU training exists and a device is usable
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        info = cuda_info()
        if not info["cuda"]:
            why = "this build of imdbfast has no CUDA module (built with IMDBFAST_CUDA=OFF or without nvcc)"
        elif not info["cuda_devices"]:
            why = f"no usable GPU ({info['cuda_reason']})"
        else:
            why = "imdbfast's GPU kernels are not implemented yet"
        raise RuntimeError(f"device={device!r}: {why}; use device='cpu'")
    raise ValueError(f"device: unknown {device!r}; valid: 'cpu', 'auto', 'cuda', 'cuda:N'")
