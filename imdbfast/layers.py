"""Layers: ``Dense`` (Keras's defaults: glorot-uniform kernel, zero bias), ``Dropout``, ``Input`` and
``TextVectorization`` (in _text.py).

Weights are drawn here, in NumPy, from the model's seeded generator, so that every backend
starts from the same bytes; all the arithmetic happens in the compiled core. A layer belongs to
at most one model, which holds its weights: ``layer.kernel`` and ``layer.get_weights()`` are
copies read from the model (``set_weights`` writes them back).
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import numpy as np

from . import regularizers as _regularizers
from ._checks import check_int, check_layer_dtype, check_layer_name

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")  # softmax: output layer only
# Keras's initializer class names, for configs (get_config writes them; from_config reads both).
INITIALIZERS = {"glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal",
                "he_uniform": "HeUniform", "he_normal": "HeNormal", "zeros": "Zeros",
                "ones": "Ones"}
_BY_CLASS = {v: k for k, v in INITIALIZERS.items()}


class Weight(np.ndarray):
    """A copy of one of a model's variables (NumPy), named as Keras names it: ``name``
    ('kernel' or 'bias') and ``path`` ('dense/kernel'). ``numpy()`` gives the plain array, so
    Keras's ``layer.kernel.numpy()`` ports unchanged."""

    name: str = ""
    path: str = ""

    def numpy(self) -> np.ndarray:
        return np.asarray(self).copy()


def _weight(a: np.ndarray, name: str, path: str) -> Weight:
    w = np.asarray(a).view(Weight)
    w.name, w.path = name, path
    return w


class Input:
    """Declares the input dimension, as ``keras.Input(shape=(10000,))`` does (also available
    as ``imdbfast.Input``). A Sequential that starts with one is built at construction."""

    def __init__(self, shape: Sequence[int] | None = None, batch_size: int | None = None,
                 dtype: Any = None, sparse: bool | None = None, batch_shape: Any = None,
                 name: str | None = None):
        if batch_shape is not None:
            if shape is not None:
                raise ValueError("Input: give shape or batch_shape, not both")
            batch_shape = tuple(batch_shape)
            if len(batch_shape) != 2:
                raise ValueError(f"batch_shape: expected (batch, features), got {batch_shape!r}")
            shape = batch_shape[1:]
        if shape is None:
            raise ValueError("shape: expected (features,) with a positive int, got None")
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if len(shape) != 1:
            raise ValueError(f"shape: expected (features,) with a positive int, got {shape!r}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"dtype: imdbfast computes in float32, got {dtype!r}")
        self.shape = (check_int(shape[0], "shape", 1, 2**31 - 1),)
        self.name = name or "input_layer"

    def get_config(self) -> dict:
        return {"batch_shape": [None, self.shape[0]], "dtype": "float32", "sparse": False,
                "ragged": False, "name": self.name}

    def __repr__(self) -> str:
        return f"Input(shape={self.shape!r})"


class Dense:
    """A densely connected layer: ``activation(x @ kernel + bias)``, kernel (in, units).

    Takes Keras's arguments and configs; those imdbfast does not implement (no bias, activity
    regularizers, constraints, other dtypes) are refused by name. ``kernel_regularizer`` and
    ``bias_regularizer`` take ``regularizers.l1/l2/l1_l2`` (objects, names or Keras records)."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, *, input_dim: int | None = None,
                 input_shape: Sequence[int] | None = None, name: str | None = None,
                 trainable: bool = True, dtype: Any = None, **unsupported: Any):
        self.units = check_int(units, "units", 1, 2**31 - 1)
        self.activation = _activation(activation)
        if use_bias is not True:
            raise ValueError("use_bias: imdbfast's Dense layers always have a bias (use_bias=True)")
        self.kernel_initializer = _initializer(kernel_initializer, "kernel_initializer")
        self.bias_initializer = _initializer(bias_initializer, "bias_initializer")
        self.kernel_regularizer, *self._kernel_penalty = _regularizers.factors(
            kernel_regularizer, "kernel_regularizer")
        self.bias_regularizer, *self._bias_penalty = _regularizers.factors(
            bias_regularizer, "bias_regularizer")
        for arg, v in (("activity_regularizer", activity_regularizer),
                       ("kernel_constraint", kernel_constraint),
                       ("bias_constraint", bias_constraint)):
            if v is not None:
                raise ValueError(f"{arg}: not supported by imdbfast yet (got {v!r})")
        for arg, v in unsupported.items():
            if arg == "quantization_config" and v is None:
                continue
            raise TypeError(f"Dense: unsupported argument {arg}={v!r}")
        dtype_name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
        if dtype_name not in (None, "float32"):
            raise ValueError(f"dtype: imdbfast computes in float32, got {dtype!r}")
        if input_shape is not None:
            input_shape = tuple(input_shape)
            if len(input_shape) != 1:
                raise ValueError(f"input_shape: expected (features,), got {input_shape!r}")
            input_dim = input_shape[0]
        self.input_dim = check_int(input_dim, "input_dim", 1, 2**31 - 1, none_ok=True)
        self.name = check_layer_name(name)  # None until the model names it (dense, dense_1, ...)
        self.trainable = trainable
        self._model_ref: Any = None  # the model holding the weights (weakref)
        self._index = 0  # the layer's position in it

    @property
    def trainable(self) -> bool:
        """False freezes the layer's weights in fit (takes effect at the next compile, as in
        Keras)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if value not in (True, False):
            raise ValueError(f"trainable: expected True or False, got {value!r}")
        self._trainable = bool(value)

    @classmethod
    def from_config(cls, config: dict) -> "Dense":
        return cls(**config)

    def get_config(self) -> dict:
        """Keras's Dense config (what ``keras.layers.Dense.from_config`` reads)."""
        return {"name": self.name, "trainable": self.trainable, "dtype": "float32",
                "units": self.units, "activation": self.activation, "use_bias": True,
                "kernel_initializer": _initializer_config(self.kernel_initializer),
                "bias_initializer": _initializer_config(self.bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": None, "bias_constraint": None}

    def _spec(self) -> dict:
        """This layer's part of the network description (cpp/spec.h)."""
        (k1, k2), (b1, b2) = self._kernel_penalty, self._bias_penalty
        return {"kind": "dense", "units": self.units, "activation": self.activation,
                "kernel_l1": k1, "kernel_l2": k2, "bias_l1": b1, "bias_l2": b2,
                "trainable": self.trainable}

    def initial_weights(self, fan_in: int, rng: np.random.Generator) -> list:
        return [_draw(self.kernel_initializer, (fan_in, self.units), rng),
                _draw(self.bias_initializer, (self.units,), rng)]

    # ---- the weights, held by the model ----------------------------------------------------
    def _owner(self, what: str) -> Any:
        model = self._model_ref() if self._model_ref is not None else None
        if model is None or not model.built:
            raise RuntimeError(f"{what}: the layer is not built yet (it is built with its model)")
        return model

    @property
    def built(self) -> bool:
        model = self._model_ref() if self._model_ref is not None else None
        return model is not None and model.built

    def get_weights(self) -> list[np.ndarray]:
        """[kernel (in, units), bias (units,)]: float32 copies."""
        model = self._owner("get_weights")
        return model.get_weights()[2 * self._index: 2 * self._index + 2]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        model = self._owner("set_weights")
        weights = list(weights)
        if len(weights) != 2:
            raise ValueError(f"set_weights: expected 2 arrays (kernel, bias), got {len(weights)}")
        all_w = model.get_weights()
        all_w[2 * self._index: 2 * self._index + 2] = weights
        model.set_weights(all_w)

    @property
    def weights(self) -> list[Weight]:
        """[kernel, bias] as named copies (``Weight``)."""
        if not self.built:
            return []
        k, b = self.get_weights()
        return [_weight(k, "kernel", f"{self.name}/kernel"), _weight(b, "bias", f"{self.name}/bias")]

    @property
    def trainable_weights(self) -> list[Weight]:
        return self.weights if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[Weight]:
        return [] if self.trainable else self.weights

    @property
    def losses(self) -> list[float]:
        """The penalties of the layer's regularized trainable weights (Keras's ``layer.losses``),
        computed in float64 from the current weights."""
        if not self.built or not self.trainable:
            return []
        k, b = self.get_weights()
        return [reg(w) for reg, w in ((self.kernel_regularizer, k), (self.bias_regularizer, b))
                if reg is not None]

    @property
    def kernel(self) -> Weight:
        """A copy of the kernel (in, units); ``set_weights`` changes it."""
        self._owner("kernel")
        return self.weights[0]

    @property
    def bias(self) -> Weight:
        """A copy of the bias (units,); ``set_weights`` changes it."""
        self._owner("bias")
        return self.weights[1]

    def count_params(self) -> int:
        model = self._owner("count_params")
        return (model._dims()[self._index] + 1) * self.units

    @property
    def input_shape(self) -> tuple:
        return (None, self._owner("input_shape")._dims()[self._index])

    @property
    def output_shape(self) -> tuple:
        return (None, self.units)

    def __repr__(self) -> str:
        return f"Dense({self.units}, activation={self.activation!r})"


class Dropout:
    """Keras's Dropout: in training each input is kept with probability ``1 - rate`` and scaled
    by ``1 / (1 - rate)``, else zeroed; in inference it passes through. It follows a Dense
    layer (not the input, not the output layer). The masks come from a counter-based hash of
    the seed, the optimizer step, the example and the unit (cpp/common.h): the same seed gives
    the same masks on any thread count and either backend; Keras's random stream is not
    reproduced. ``seed=None`` derives the layer's seed from the model's."""

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, *,
                 name: str | None = None, trainable: bool = True, dtype: Any = None,
                 **unsupported: Any):
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0 <= float(rate) < 1:
            raise ValueError("Invalid value received for argument `rate`. Expected a float "
                             f"value in [0, 1). Received: rate={rate!r}")
        self.rate = float(rate)
        if noise_shape is not None:
            raise ValueError(f"noise_shape: not supported by imdbfast (got {noise_shape!r}); "
                             "each unit has its own mask")
        self.noise_shape = None
        self.seed = check_int(seed, "seed", 0, 2**63 - 1, none_ok=True)
        for arg, v in unsupported.items():
            raise TypeError(f"Dropout: unsupported argument {arg}={v!r}")
        check_layer_dtype(dtype)
        self.name = check_layer_name(name)
        if trainable not in (True, False):
            raise ValueError(f"trainable: expected True or False, got {trainable!r}")
        self.trainable = bool(trainable)
        self._model_ref: Any = None
        self._index = 0  # the Dense layer it follows

    def _spec(self, model_seed: int) -> dict:
        """The fields it adds to the Dense layer before it in the network description."""
        key = [self.seed, 3] if self.seed is not None else [model_seed, 4, self._index]
        seed = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]) & (2**63 - 1)
        return {"dropout": self.rate, "dropout_seed": seed}

    @classmethod
    def from_config(cls, config: dict) -> "Dropout":
        return cls(**config)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "dtype": "float32",
                "rate": self.rate, "seed": self.seed, "noise_shape": None}

    @property
    def built(self) -> bool:
        model = self._model_ref() if self._model_ref is not None else None
        return model is not None and model.built

    weights = trainable_weights = non_trainable_weights = property(lambda self: [])
    losses = property(lambda self: [])

    def get_weights(self) -> list:
        return []

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        if len(list(weights)) != 0:
            raise ValueError("set_weights: a Dropout layer has no weights")

    def count_params(self) -> int:
        return 0

    @property
    def units(self) -> int:
        model = self._model_ref() if self._model_ref is not None else None
        if model is None:
            raise AttributeError("units: a Dropout outside a model has no width")
        return model._dense_layers()[self._index].units

    @property
    def input_shape(self) -> tuple:
        return (None, self.units)

    output_shape = input_shape

    def __repr__(self) -> str:
        return f"Dropout({self.rate!r})"


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


def _initializer(init: Any, arg: str) -> str:
    """An initializer by Keras's name ('glorot_uniform') or config ({'class_name': ...})."""
    if isinstance(init, dict):
        cls = init.get("class_name")
        if cls not in _BY_CLASS:
            raise ValueError(f"{arg}: unsupported initializer {cls!r}; valid: {list(_BY_CLASS)}")
        if (init.get("config") or {}).get("seed") is not None:
            raise ValueError(f"{arg}: a per-initializer seed is not supported; seed the model "
                             "(Sequential(seed=...))")
        return _BY_CLASS[cls]
    if init not in INITIALIZERS:
        raise ValueError(f"{arg}: unknown {init!r}; valid: {list(INITIALIZERS)}")
    return init


def _initializer_config(init: str) -> dict:
    return {"module": "keras.initializers", "class_name": INITIALIZERS[init],
            "config": {} if init in ("zeros", "ones") else {"seed": None},
            "registered_name": None}


def _activation(name: Any) -> str:
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; valid: {list(ACTIVATIONS)} or None")
    return name


def attach(layer: Any, model: Any, index: int, taken: set) -> None:
    """Make ``layer`` the model's Dense layer ``index`` (a Dropout: the one it follows): named
    as Keras names it (dense, dense_1, ..., dropout, ... when it has no name), refused when it
    already belongs to another model or its name is taken."""
    owner = layer._model_ref() if layer._model_ref is not None else None
    if owner is not None and owner is not model:
        raise ValueError(f"add: layer {layer.name!r} already belongs to model {owner.name!r}; a "
                         "layer's weights live in one model (make a new layer, e.g. "
                         "Dense.from_config(layer.get_config()))")
    if layer.name is None:
        base = {"Dropout": "dropout", "TextVectorization": "text_vectorization"}.get(
            type(layer).__name__, "dense")
        k, name = 0, base
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        layer.name = name
    elif layer.name in taken:
        raise ValueError("All layers added to a Sequential model should have unique names. "
                         f"Name '{layer.name}' is already the name of a layer in this model. "
                         "Update the `name` argument to pass a unique name.")
    layer._model_ref = weakref.ref(model)
    layer._index = index


from ._text import TextVectorization  # noqa: E402  (it needs nothing above; exported here)
