"""Which backend runs a model: 'cpu' (the compiled OpenMP core) or, once built, 'cuda'."""

from __future__ import annotations

from typing import Any


def cuda_available() -> bool:
    """True when this build has the CUDA backend and a usable GPU. This build has none."""
    return False


def resolve_device(device: Any) -> str:
    """'cpu' | 'auto' | 'cuda' | 'cuda:N' -> the device to use; an explicit CUDA request on a
    build or machine without it is an error, never a silent fallback."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu', got {type(device).__name__}")
    d = device.lower()
    if d in ("cpu", "auto"):
        return "cpu"  # 'auto' picks the GPU once the CUDA backend exists and one is usable
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        raise RuntimeError(f"device={device!r}: this build of imdbfast has no CUDA backend "
                           "(imdbfast.build_info()['cuda'] is False); use device='cpu'")
    raise ValueError(f"device: unknown {device!r}; valid: 'cpu', 'auto', 'cuda', 'cuda:N'")
