"""Layers: ``Dense`` (Keras's defaults: glorot-uniform kernel, zero bias) and ``Input``.

Weights are drawn here, in NumPy, from the model's seeded generator, so that every backend
starts from the same bytes; all the arithmetic happens in the compiled core.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._checks import check_int

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros", "ones")


class Input:
    """Declares the input dimension, as ``keras.Input(shape=(10000,))`` does."""

    def __init__(self, shape: Sequence[int]):
        shape = tuple(shape)
        if len(shape) != 1:
            raise ValueError(f"shape: expected (features,) with a positive int, got {shape!r}")
        self.shape = (check_int(shape[0], "shape", 1, 2**31 - 1),)


class Dense:
    """A densely connected layer: ``activation(x @ kernel + bias)``, kernel (in, units)."""

    def __init__(self, units: int, activation: str | None = None, *,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 input_dim: int | None = None, input_shape: Sequence[int] | None = None,
                 name: str | None = None):
        self.units = check_int(units, "units", 1, 2**31 - 1)
        self.activation = _activation(activation)
        for arg, init in (("kernel_initializer", kernel_initializer), ("bias_initializer", bias_initializer)):
            if init not in INITIALIZERS:
                raise ValueError(f"{arg}: unknown {init!r}; valid: {list(INITIALIZERS)}")
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        if input_shape is not None:
            input_shape = tuple(input_shape)
            if len(input_shape) != 1:
                raise ValueError(f"input_shape: expected (features,), got {input_shape!r}")
            input_dim = input_shape[0]
        self.input_dim = check_int(input_dim, "input_dim", 1, 2**31 - 1, none_ok=True)
        self.name = name

    def get_config(self) -> dict:
        return {"units": self.units, "activation": self.activation, "name": self.name,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}

    def _spec(self) -> dict:
        """This layer's part of the network description (cpp/spec.h)."""
        return {"kind": "dense", "units": self.units, "activation": self.activation}

    def initial_weights(self, fan_in: int, rng: np.random.Generator) -> list:
        return [_draw(self.kernel_initializer, (fan_in, self.units), rng),
                _draw(self.bias_initializer, (self.units,), rng)]

    def __repr__(self) -> str:
        return f"Dense({self.units}, activation={self.activation!r})"


def _draw(init: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = (shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[0])
    if init == "zeros":
        return np.zeros(shape, np.float32)
    if init == "ones":
        return np.ones(shape, np.float32)
    # Keras's VarianceScaling: glorot = fan_avg, he = fan_in (scale 2); normal is truncated at
    # 2 standard deviations with the 0.8796 correction.
    scale, fan = (1.0, (fan_in + fan_out) / 2) if init.startswith("glorot") else (2.0, fan_in)
    if init.endswith("uniform"):
        limit = np.sqrt(3.0 * scale / max(1.0, fan))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    std = np.sqrt(scale / max(1.0, fan)) / 0.87962566103423978
    out = rng.normal(0.0, std, shape)
    bad = np.abs(out) > 2 * std
    while bad.any():
        out[bad] = rng.normal(0.0, std, int(bad.sum()))
        bad = np.abs(out) > 2 * std
    return out.astype(np.float32)


def _activation(name: Any) -> str:
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; valid: {list(ACTIVATIONS)} or None")
    return name
