"""Callbacks with Keras 3's names and semantics: History, EarlyStopping, LambdaCallback, and the
progress bar that ``verbose`` turns on.

Batch hooks are coarser than Keras's: the compiled loop returns to Python after a chunk of
batches (about 8,192 rows), and ``on_train_batch_begin/end`` run once per chunk with the index
of its last batch and the running logs.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any, Callable, Iterable


class Callback:
    """Base class: override the hooks you need. ``self.model`` and ``self.params`` are set."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...


class CallbackList:
    """Calls every callback in order; epoch-end logs become sorted Python floats (Keras 3)."""

    def __init__(self, callbacks: Iterable[Callback], model, params: dict):
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks: {c!r} is not an imdbfast.callbacks.Callback")
            c.set_model(model)
            c.set_params(params)

    def _call(self, hook: str, *args) -> None:
        for c in self.callbacks:
            getattr(c, hook)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, {k: float(logs[k]) for k in sorted(logs or {})})


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
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience: expected an int >= 0, got {patience!r}")
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
    on_train_begin(logs), on_train_end(logs), on_train_batch_begin/end(batch, logs)."""

    def __init__(self, on_epoch_begin: Callable | None = None, on_epoch_end: Callable | None = None,
                 on_train_begin: Callable | None = None, on_train_end: Callable | None = None,
                 on_train_batch_begin: Callable | None = None,
                 on_train_batch_end: Callable | None = None):
        super().__init__()
        for name, fn in list(locals().items()):
            if name.startswith("on_") and fn is not None:
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


def format_summary(name: str, rows: list, total: int | None) -> str:
    """Keras's model summary table: a header row, then one row per layer, then the total."""
    widths = [max(len(r[c]) for r in rows) + 2 for c in range(3)]
    lines = [f'Model: "{name}"', "-" * sum(widths)]
    for j, r in enumerate(rows):
        lines.append("".join(r[c].ljust(widths[c]) for c in range(3)))
        if j == 0:
            lines.append("=" * sum(widths))
    lines.append("=" * sum(widths))
    lines.append(f"Total params: {total if total is not None else 'unknown (not built)'}")
    return "\n".join(lines)
