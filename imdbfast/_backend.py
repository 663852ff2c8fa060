"""Which backend runs a model: 'cpu' (the compiled OpenMP core, imdbfast._core) or 'cuda:N'
(the CUDA module, imdbfast._cuda). The CUDA module is optional: it is built when CMake finds
nvcc and is imported here softly, so `import imdbfast` never needs CUDA.

imdbfast._cuda_sim is the CUDA module's kernels compiled for the host (see cuda/launch.h). It is
a test double: the test suite swaps it in with ``use_cuda_module`` to run the GPU code paths on
machines without a GPU. imdbfast itself never picks it.
"""

from __future__ import annotations

from typing import Any

try:  # built only with a CUDA compiler; links the CUDA runtime statically
    from . import _cuda
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None

_module = _cuda  # the module behind device='cuda'


def cuda_module():
    """The module implementing device='cuda' (None when this build has none)."""
    return _module


def use_cuda_module(module) -> Any:
    """Make ``module`` (e.g. imdbfast._cuda_sim) serve device='cuda'; returns the previous one.
    For tests only."""
    global _module
    previous, _module = _module, module
    return previous


def cuda_info() -> dict:
    """What this build and machine offer on the GPU side."""
    mod = _module
    if mod is None:
        return {"cuda": False, "cuda_devices": [], "cuda_reason": "built without the CUDA module"}
    devices, reason = mod.devices()
    return {"cuda": True, "cuda_architectures": mod.architectures, "cuda_devices": devices,
            "cuda_runtime": mod.runtime_version(), "cuda_driver": mod.driver_version(),
            "cuda_reason": reason, "cuda_simulated": bool(mod.simulated)}


def cuda_available() -> bool:
    """True when models can train on a GPU here: the CUDA module is built and a device is usable."""
    return _module is not None and bool(_module.devices()[0])


def resolve_device(device: Any) -> str:
    """'cpu' | 'auto' | 'cuda' | 'cuda:N' -> 'cpu' or 'cuda:N'. 'auto' is the GPU when one is
    usable, else the CPU; an explicit CUDA request that cannot be met is an error naming the
    reason, never a silent fallback."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu', got {type(device).__name__}")
    d = device.lower()
    if d == "cpu":
        return "cpu"
    if d == "auto":
        return "cuda:0" if cuda_available() else "cpu"
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        index = int(d[5:]) if d != "cuda" else 0
        info = cuda_info()
        if not info["cuda"]:
            why = "this build of imdbfast has no CUDA module (built with IMDBFAST_CUDA=OFF or without nvcc)"
        elif not info["cuda_devices"]:
            why = f"no usable GPU ({info['cuda_reason']})"
        elif index >= len(info["cuda_devices"]):
            why = f"there is no GPU {index} (this machine has {len(info['cuda_devices'])})"
        else:
            return f"cuda:{index}"
        raise RuntimeError(f"device={device!r}: {why}; use device='cpu'")
    raise ValueError(f"device: unknown {device!r}; valid: 'cpu', 'auto', 'cuda', 'cuda:N'")


def device_index(device: str) -> int:
    """'cuda:N' -> N."""
    return int(device.split(":")[1])
