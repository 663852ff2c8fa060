"""Callbacks with Keras 3's names and semantics: History, EarlyStopping, LambdaCallback, and the
progress bar that ``verbose`` turns on.

Batch hooks run once per batch, as in Keras, with Keras's logs (the running means of the loss
and metrics since the epoch began): when some callback overrides a batch hook, the compiled loop
returns to Python after each batch; otherwise it trains chunks of batches (about 8,192 rows) per
call, which is faster for small batches.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any, Callable, Iterable

from ._checks import check_int


class Callback:
    """Base class: override the hooks you need. ``self.model`` and ``self.params`` are set.
    As in Keras, ``on_train_batch_begin/end`` call the legacy ``on_batch_begin/end``."""

    # The progress bar draws from whatever batch hooks it gets: it never asks for each batch.
    _coarse_batches = False

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): self.on_batch_begin(batch, logs=logs)
    def on_train_batch_end(self, batch, logs=None): self.on_batch_end(batch, logs=logs)
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...
    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...


_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


def _overrides(c: Callback, hook: str) -> bool:
    return hook in vars(c) or getattr(type(c), hook) is not getattr(Callback, hook)


def _pythonify(logs) -> dict:
    """Keras's pythonify_logs: sorted keys, values as Python floats where they convert."""
    out = {}
    for k, v in sorted((logs or {}).items()):
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


class CallbackList:
    """Calls every callback in order, with logs as Keras 3 passes them (a dict of Python floats
    with sorted keys, ``{}`` where there are none)."""

    def __init__(self, callbacks: Iterable[Callback], model, params: dict):
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks: {c!r} is not an imdbfast.callbacks.Callback")
            c.set_model(model)
            c.set_params(params)

    def wants_batches(self, kind: str) -> bool:
        """Whether some callback overrides a batch hook of ``kind`` ('train', 'test',
        'predict'): then the loops return to Python after each batch."""
        return any(not c._coarse_batches and _overrides(c, h)
                   for c in self.callbacks for h in _BATCH_HOOKS[kind])

    def _call(self, hook: str, *args) -> None:
        *index, logs = args
        logs = logs if hook == "on_predict_batch_end" else _pythonify(logs)
        for c in self.callbacks:
            getattr(c, hook)(*index, logs)


def _hook(name: str, indexed: bool) -> Callable:
    if indexed:
        def call(self: CallbackList, index: int, logs: Any = None) -> None:
            self._call(name, index, logs)
    else:
        def call(self: CallbackList, logs: Any = None) -> None:  # type: ignore[misc]
            self._call(name, logs)
    call.__name__ = name
    return call


for _name in [n for n in vars(Callback) if n.startswith("on_")]:
    setattr(CallbackList, _name, _hook(_name, "batch" in _name or "epoch" in _name))


class History(Callback):
    """Records the epoch logs: ``history`` (key -> list of floats), ``epoch``, ``params``."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self

    def plot(self, path=None):
        """The book's two figures (loss, accuracy; training vs validation, by epoch); needs
        matplotlib. Saved to ``path`` when given; returns the matplotlib Figure."""
        from .plots import plot_history

        return plot_history(self, path)


class EarlyStopping(Callback):
    """Stop when ``monitor`` stops improving (Keras 3: best weights are restored at the end of
    training whenever ``restore_best_weights`` and a best epoch exist, stopped early or not)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
        patience = check_int(patience, "patience", 0)
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self._minimize: bool | None = None

    def _direction(self) -> bool:
        if self.mode != "auto":
            return self.mode == "min"
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if name == "loss" or name.endswith("loss"):
            return True
        if name in ("accuracy", "acc", "binary_accuracy"):
            return False
        raise ValueError(f"EarlyStopping: cannot tell whether {self.monitor!r} should be minimised "
                         "or maximised; pass mode='min' or mode='max'")

    def _better(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self._minimize:
            return value - (-self.min_delta) < reference  # Keras flips min_delta's sign for "min"
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self._minimize = self._direction()

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs or {})}", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class LambdaCallback(Callback):
    """A callback from plain functions: on_epoch_begin(epoch, logs), on_epoch_end(epoch, logs),
    on_train_begin(logs), on_train_end(logs), on_train_batch_begin/end(batch, logs), and, as
    keywords, any other hook (on_batch_end=..., on_test_end=...)."""

    def __init__(self, on_epoch_begin: Callable | None = None, on_epoch_end: Callable | None = None,
                 on_train_begin: Callable | None = None, on_train_end: Callable | None = None,
                 on_train_batch_begin: Callable | None = None,
                 on_train_batch_end: Callable | None = None, **hooks: Callable):
        super().__init__()
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **hooks)
        for name, fn in given.items():
            if not (name.startswith("on_") and hasattr(Callback, name)):
                raise TypeError(f"LambdaCallback: unknown hook {name!r}")
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name}: expected a function, got {fn!r}")
                setattr(self, name, fn)


def format_logs(logs: dict) -> str:
    # Keras's progbar: %.4f, or %.4e for tiny values; keys alphabetical.
    return "".join(f" - {k}: {v:.4f}" if abs(v) > 1e-3 else f" - {k}: {v:.4e}"
                   for k, v in sorted(logs.items()))


def format_step_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class ProgbarLogger(Callback):
    """Keras 3's progress display. verbose=1: a bar per epoch, rewritten in place on a terminal
    (one finished line otherwise); verbose=2: one line per epoch. The values shown are the logs
    that History records."""

    _coarse_batches = True

    def __init__(self, verbose: int = 1, stream: Any = None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.last_draw = 0.0
        if self.params.get("epochs", 1) > 1:
            print(f"Epoch {epoch + 1}/{self.params['epochs']}", file=self._out(), flush=True)

    def _line(self, step: int, logs: dict, final: bool) -> str:
        steps = self.params["steps"]
        elapsed = time.perf_counter() - self.start
        per_step = format_step_time(elapsed / max(step, 1))
        if self.verbose == 2:
            return f"{steps}/{steps} - {elapsed:.0f}s - {per_step}{format_logs(logs)}"
        width = 20
        done = width if final else int(width * step / steps)
        bar = "━" * done + "─" * (width - done)
        digits = len(str(steps))
        if final:
            timing = f"{elapsed:.0f}s {per_step}"
        else:
            timing = f"{elapsed / max(step, 1) * (steps - step):.0f}s {per_step}"  # ETA
        return f"{step:{digits}d}/{steps} {bar} {timing}{format_logs(logs)}"

    def on_train_batch_end(self, batch, logs=None):
        out = self._out()
        if self.verbose != 1 or not getattr(out, "isatty", lambda: False)():
            return
        now = time.perf_counter()
        if now - self.last_draw >= 0.05:
            self.last_draw = now
            out.write("\r" + self._line(batch + 1, logs or {}, final=False))
            out.flush()

    def on_epoch_end(self, epoch, logs=None):
        out = self._out()
        prefix = "\r" if self.verbose == 1 and getattr(out, "isatty", lambda: False)() else ""
        out.write(prefix + self._line(self.params["steps"], logs or {}, final=True) + "\n")
        out.flush()


from ._monitors import (CSVLogger, LearningRateScheduler, ModelCheckpoint,  # noqa: E402
                        ReduceLROnPlateau, TerminateOnNaN)

__all__ = ["CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History", "LambdaCallback",
           "LearningRateScheduler", "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau",
           "TerminateOnNaN"]
