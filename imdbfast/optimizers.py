"""Optimizers with Keras 3's names, defaults and update rules (the math is in cpp/common.h).

An optimizer object only holds hyper-parameters; its state (slots, iteration count) lives with
the model in the compiled core, as Keras keeps it in the optimizer's variables.
"""

from __future__ import annotations

from typing import Any

from . import _core
from ._checks import check_float


class Optimizer:
    """Base class: ``kind`` names the compiled update rule; ``get_config`` gives the arguments."""

    kind = ""

    def __init__(self, learning_rate: float, **hyper: Any):
        self._learning_rate = check_float("learning_rate", learning_rate)
        self._hyper = hyper
        _core.check_optimizer(self._spec())  # the ranges: checked once, by the core

    @property
    def learning_rate(self) -> float:
        """The step size. Assigning it (as Keras's ``optimizer.learning_rate = ...``, what
        ReduceLROnPlateau and LearningRateScheduler do) takes effect from the next step."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        lr = check_float("learning_rate", value)
        _core.check_optimizer({**self._spec(), "learning_rate": lr})
        self._learning_rate = lr

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, **self._hyper}

    def _spec(self) -> dict:
        """The optimizer's part of the network description (cpp/spec.h)."""
        return {"kind": self.kind, **self.get_config()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()


# Keras 3's arguments of every optimizer (keras/src/optimizers/base_optimizer.py) with the value
# that leaves the update rule as imdbfast computes it; any other value is refused by name.
_KERAS_NEUTRAL = {"weight_decay": None, "clipnorm": None, "clipvalue": None,
                  "global_clipnorm": None, "use_ema": False, "loss_scale_factor": None,
                  "gradient_accumulation_steps": None}
_KERAS_FREE = ("name", "ema_momentum", "ema_overwrite_frequency")  # no effect without use_ema


def _keras_arguments(cls: str, given: dict) -> None:
    for k, v in given.items():
        if k in _KERAS_FREE:
            continue
        if k not in _KERAS_NEUTRAL:
            raise TypeError(f"{cls}: unexpected argument {k!r}")
        if v is not _KERAS_NEUTRAL[k] and v != _KERAS_NEUTRAL[k]:
            raise ValueError(f"{cls}: {k}={v!r} is not supported by imdbfast (the compiled "
                             f"update has no {k}); leave it at {_KERAS_NEUTRAL[k]!r}")


class RMSprop(Optimizer):
    """Keras's RMSprop: epsilon inside the square root; rows of the sparse first layer that a
    batch does not touch are updated lazily (the same math, far less memory traffic)."""

    kind = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, **keras: Any):
        _keras_arguments("RMSprop", keras)
        super().__init__(learning_rate, rho=check_float("rho", rho),
                         momentum=check_float("momentum", momentum),
                         epsilon=check_float("epsilon", epsilon), centered=bool(centered))


class Adam(Optimizer):
    """Keras's Adam (bias correction folded into the step size, epsilon outside the root)."""

    kind = "adam"

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **keras: Any):
        _keras_arguments("Adam", keras)
        super().__init__(learning_rate, beta_1=check_float("beta_1", beta_1),
                         beta_2=check_float("beta_2", beta_2),
                         epsilon=check_float("epsilon", epsilon), amsgrad=bool(amsgrad))


class SGD(Optimizer):
    """Keras's SGD, with optional (Nesterov) momentum."""

    kind = "sgd"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 **keras: Any):
        _keras_arguments("SGD", keras)
        super().__init__(learning_rate, momentum=check_float("momentum", momentum),
                         nesterov=bool(nesterov))


_BY_NAME = {"rmsprop": RMSprop, "adam": Adam, "sgd": SGD}


def get(identifier: Any) -> Optimizer:
    """An optimizer from a name ('rmsprop', 'adam', 'sgd'), a config dict, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        name = identifier.get("class_name", "").lower()
        if name not in _BY_NAME:
            raise ValueError(f"optimizer: unknown class {identifier.get('class_name')!r}")
        return _BY_NAME[name](**identifier.get("config", {}))
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"optimizer: unknown {identifier!r}; valid: {sorted(_BY_NAME)} or an "
                     "imdbfast.optimizers.Optimizer instance")


def serialize(opt: Optimizer) -> dict:
    return {"class_name": type(opt).__name__, "config": opt.get_config()}
