"""Running a model's compiled Net in chunks: each compiled call does a bounded amount of work,
so that Python regains control often (progress, callbacks, Ctrl-C) while the GIL is released
for nearly all of the time.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np

from . import _backend, _core, _device
from .callbacks import CallbackList, format_logs, format_step_time

if TYPE_CHECKING:
    from .models import Sequential

# A compiled call returns to Python after about WORK_PER_CALL multiply-adds (~50 ms on 2 cores
# at the 4-8 GMAC/s measured for both small and wide models), and after at most this many rows;
# a training call does at least one step.
WORK_PER_CALL = 2e8
ROWS_PER_CHUNK = 8192
INFERENCE_CHUNK = 1 << 16
MIN_TILES_PER_CALL = 8


_F = TypeVar("_F", bound=Callable[..., Any])


def one_fit_at_a_time(fit: _F) -> _F:
    """fit on a model already training in another thread is refused, before any work."""
    @functools.wraps(fit)
    def guarded(self, *args, **kwargs):
        self._require_compiled("fit")
        if not self._fit_lock.acquire(blocking=False):
            raise RuntimeError("fit: this model is already being trained in another thread")
        try:
            return fit(self, *args, **kwargs)
        finally:
            self._fit_lock.release()
    return guarded  # type: ignore[return-value]


def rows_per_call(model: Sequential, xs, train: bool = False) -> int:
    """Rows one compiled call takes so that it does about WORK_PER_CALL multiply-adds: the
    first layer costs its input's non-zeros per row times its width, the others their
    kernels' sizes; training about twice and three times that."""
    dims = model._dims()
    nnz = xs.nnz / max(1, xs.n_rows)
    sparse = nnz * dims[1]
    dense = sum(dims[i] * dims[i + 1] for i in range(1, len(dims) - 1))
    per_row = 2 * sparse + 3 * dense if train else sparse + dense
    rows = int(max(1, min(INFERENCE_CHUNK, WORK_PER_CALL / max(per_row, 1.0))))
    if train:
        return rows
    # Inference shares whole tiles among the threads: a call gets at least MIN_TILES_PER_CALL
    # of them (so that wide models keep every core busy) while they hold at most 4 x
    # WORK_PER_CALL (huge models: fewer, down to one). Independent of the thread count, as the
    # chunks decide the order evaluate adds in.
    tile = _core.INFERENCE_TILE
    floor = min(MIN_TILES_PER_CALL, max(1, int(4 * WORK_PER_CALL / max(per_row, 1.0) / tile)))
    return max(floor, -(-rows // tile)) * tile


class Tracker:
    """One phase's sums (a training epoch, an evaluation): the loss, and each compile metric,
    from the core's accuracy sums (binary accuracy at 0.5 only) or from the rows' outputs."""

    def __init__(self, model: Sequential):
        self.metrics = model._metrics
        self.outputs = model._metrics_from_outputs()
        self.states = [m._new_state() for _, m in self.metrics] if self.outputs else []
        self.units = model._dense_layers()[-1].units
        self.loss_sum = self.correct = 0.0
        self.rows = 0

    def buffer(self, rows: int) -> np.ndarray | None:
        """Where a training call writes its rows' outputs, when the metrics need them."""
        return np.empty((rows, self.units), np.float32) if self.outputs else None

    def add(self, loss_sum: float, correct: float, rows: int, outputs=None, y=None,
            index=None) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.rows += rows
        if self.outputs:
            for (_, m), st in zip(self.metrics, self.states):
                m._add(st, outputs, y, index)

    def logs(self) -> dict:
        logs = {"loss": self.loss_sum / self.rows}
        for i, (name, m) in enumerate(self.metrics):
            logs[name] = m._value(self.states[i]) if self.outputs else self.correct / self.rows
        return logs


def train(model: Sequential, cb: CallbackList, xs, ys, sw, val, batch_size: int,
          epochs: range, shuffle: bool, shuffle_seed: int, validation_freq: int | frozenset,
          threads: int, val_batch_size: int, y_host: np.ndarray) -> None:
    """fit's epochs, the arguments checked and placed: chunks of batches per compiled call
    (one batch per call when a callback has batch hooks), callbacks between them, validation
    after the epochs validation_freq asks for. y_host: the labels on the host (the metrics')."""
    n = xs.n_rows
    steps = -(-n // batch_size)
    per_batch = cb.wants_batches("train")
    per_chunk = 1 if per_batch else max(
        1, min(ROWS_PER_CHUNK, rows_per_call(model, xs, train=True)) // batch_size)
    logs: dict = {}
    cb.on_train_begin()
    for epoch in epochs:
        cb.on_epoch_begin(epoch)
        order = (_core.shuffle_order(n, shuffle_seed, epoch) if shuffle
                 else np.arange(n, dtype=np.int64))
        tracker = Tracker(model)
        for b0 in range(0, steps, per_chunk):
            b1 = min(steps, b0 + per_chunk)
            r0, r1 = b0 * batch_size, min(n, b1 * batch_size)
            cb.on_train_batch_begin(b0)
            model._push_learning_rate()
            out = tracker.buffer(r1 - r0)
            ls, cs, r, _, _ = model._net.train_batches(xs, ys, sw, order, batch_size, b0, b1,
                                                       threads, outputs=out)
            tracker.add(ls, cs, r, out, y_host, order[r0:r1])
            logs = tracker.logs()
            cb.on_train_batch_end(b1 - 1, logs)
            if model.stop_training:
                break
        if val is not None and (epoch + 1 in validation_freq if isinstance(validation_freq, frozenset)
                                else (epoch + 1) % validation_freq == 0):
            val_logs = evaluate_logs(model, val[0], val[1], val[2], threads, val[3], cb,
                                     val_batch_size)
            logs.update({"val_" + k: v for k, v in val_logs.items()})
        cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cb.on_train_end(logs)


def evaluate_logs(model: Sequential, xs, ys, sw, threads: int, y_host: np.ndarray,
                  cb: CallbackList | None = None, batch_size: int = 32) -> dict:
    """The loss and metrics over every row of xs, in chunks of rows added in order (the same
    for any thread count), with the test hooks of ``cb``: per batch of batch_size rows when a
    callback has batch hooks (then grouped by batch: equal to double rounding). Metrics other
    than the core's accuracy take each chunk's outputs (a second forward pass)."""
    tracker = Tracker(model)
    n = xs.n_rows
    per_batch = cb is not None and cb.wants_batches("test")
    chunk = batch_size if per_batch else rows_per_call(model, xs)
    if cb is not None:
        cb.on_test_begin()
    for b, r0 in enumerate(range(0, n, chunk)):
        r1 = min(n, r0 + chunk)
        if per_batch:
            cb.on_test_batch_begin(b)
        l, c, _ = model._net.evaluate(xs, ys, sw, threads, r0, r1)
        out = model._net.predict(xs, threads, r0, r1) if tracker.outputs else None
        tracker.add(l, c, r1 - r0, out, y_host[r0:r1] if tracker.outputs else None)
        if per_batch:
            cb.on_test_batch_end(b, tracker.logs())
    logs = tracker.logs()
    if cb is not None:
        cb.on_test_end(logs)
    return logs


def predict(model: Sequential, xs, to_cupy: bool, threads: int, cb: CallbackList | None = None,
            batch_size: int = 32) -> Any:
    """The outputs for every row of xs: a NumPy array, or a cupy array written in place on the
    model's GPU (to_cupy: cupy in, cupy out, no host copy). With predict hooks in ``cb``: one
    call per batch of batch_size rows, and ``on_predict_batch_end`` gets {"outputs": ...}."""
    units = model._dense_layers()[-1].units
    per_batch = cb is not None and cb.wants_batches("predict")
    chunk = batch_size if per_batch else rows_per_call(model, xs)
    if cb is not None:
        cb.on_predict_begin()
    if model.device != "cpu" and to_cupy:
        out = _device.empty_cupy((xs.n_rows, units), _backend.device_index(model.device))
        iface = out.__cuda_array_interface__
        base, out_stream = _device.pointer(iface), _device.stream(iface, "predictions")
    else:
        out = np.empty((xs.n_rows, units), dtype=np.float32)
    for b, r0 in enumerate(range(0, xs.n_rows, chunk)):  # Python regains control in between
        r1 = min(xs.n_rows, r0 + chunk)
        if per_batch:
            cb.on_predict_batch_begin(b)
        if model.device != "cpu" and to_cupy:
            model._net.predict_to(xs, base + 4 * units * r0, r0, r1, out_stream)
        else:
            out[r0:r1] = model._net.predict(xs, threads, r0, r1)
        if per_batch:
            cb.on_predict_batch_end(b, {"outputs": out[r0:r1]})
    if cb is not None:
        cb.on_predict_end()
    return out


def print_done(steps: int, start: float, logs: dict) -> None:
    """Keras's one-line summary of evaluate and predict."""
    elapsed = time.perf_counter() - start
    print(f"{steps}/{steps} {'━' * 20} {elapsed:.0f}s {format_step_time(elapsed / steps)}"
          f"{format_logs(logs)}", flush=True)
