"""Sweeps: many ``imdbfast.fit`` configurations over one data set, trained on this machine's
cores or on an existing Dask or Ray cluster, with each result streamed to a JSON-lines file as it
finishes and an interrupted sweep resumable from that file.

    grid = {"optimizer": ["rmsprop", "adam"], "layers": [(16,), (16, 16)], "epochs": [4]}
    rows = imdbfast.experiments.run(grid, (x_train, y_train, x_val, y_val), results="sweep.jsonl")
    rows = imdbfast.experiments.run(grid, data, engine="dask", cluster="tcp://scheduler:8786")

A grid is a dict of lists (every combination, in the dict's key order) or a list of config
dicts. A config's keys are ``imdbfast.fit``'s (``layers``, ``activation``, ``optimizer``,
``loss``, ``epochs``, ``batch_size``, ``shuffle``) plus ``learning_rate`` (the optimizer's) and
``seed``, which is a replicate number: every model's seed is derived from the sweep's seed and
its whole config, so a model's weights are the same bit for bit whatever ran it, in whatever
order, with however many workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import _engines
from ._checks import check_int
from ._optional import require

FIT_KEYS = ("layers", "activation", "optimizer", "loss", "epochs", "batch_size", "shuffle")
KEYS = FIT_KEYS + ("learning_rate", "seed")
ENGINES = _engines.NAMES


# The values the book's "things to try" sweeps (also the CLI's choices).
TRY_OPTIMIZERS = ("rmsprop", "adam", "sgd")
TRY_LOSSES = ("binary_crossentropy", "mse")
TRY_ACTIVATIONS = ("relu", "tanh")


def things_to_try(*, optimizers: Sequence[str] = TRY_OPTIMIZERS,
                  depths: Sequence[int] = (1, 2, 3), units: Sequence[int] = (16, 32, 64),
                  losses: Sequence[str] = TRY_LOSSES,
                  activations: Sequence[str] = TRY_ACTIVATIONS, epochs: int = 20,
                  batch_size: int = 512) -> list[dict]:
    """The book's "things to try" (§4.1) as a grid: every optimizer x depth x width x loss x
    activation, ``depth`` hidden layers of ``units`` each (108 configs by default)."""
    return [{"optimizer": opt, "layers": [u] * depth, "loss": loss, "activation": act,
             "epochs": epochs, "batch_size": batch_size}
            for opt, depth, u, loss, act in itertools.product(optimizers, depths, units, losses,
                                                              activations)]


def expand(grid: dict | Sequence[dict]) -> list[dict]:
    """The configs of a grid (a dict of lists, or a list of dicts), checked."""
    if isinstance(grid, dict):
        for k, v in grid.items():
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                raise TypeError(f"grid: {k!r} must be a list of values, got {type(v).__name__}")
        keys = list(grid)
        configs = [dict(zip(keys, vals)) for vals in itertools.product(*(list(grid[k]) for k in keys))]
    elif isinstance(grid, (list, tuple)):
        configs = [dict(c) if isinstance(c, dict) else _not_a_config(i, c) for i, c in enumerate(grid)]
    else:
        raise TypeError(f"grid: expected a dict of lists or a list of dicts, got {type(grid).__name__}")
    if not configs:
        raise ValueError("grid: holds no configuration")
    for i, c in enumerate(configs):
        bad = sorted(set(c) - set(KEYS))
        if bad:
            raise ValueError(f"grid: config {i} has unknown keys {bad}; valid: {', '.join(KEYS)}")
        try:
            _check(c)
        except (TypeError, ValueError) as e:
            raise type(e)(f"grid: config {i}: {e}") from None
    keys = [config_key(c) for c in configs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise ValueError(f"grid: config {dup} appears more than once (add a 'seed' to replicate)")
    return configs


def _not_a_config(i: int, c: Any):
    raise TypeError(f"grid: item {i} must be a dict of fit keywords, got {type(c).__name__}")


def _check(c: dict) -> None:
    """Every value checked before any model trains, as fit would (a sweep must not fail an hour
    in); layers normalised to a list."""
    from . import losses, optimizers
    from ._checks import check_batch_size
    from .layers import _activation

    if "layers" in c:
        units = list(c["layers"]) if isinstance(c["layers"], (list, tuple)) else [c["layers"]]
        c["layers"] = [check_int(u, "layers", 1) for u in units]
    if "activation" in c:
        _activation(c["activation"])
    if "loss" in c:
        losses.get(c["loss"])
    optimizers.get(_optimizer(c))
    if "epochs" in c:
        c["epochs"] = check_int(c["epochs"], "epochs", 1)
    if "batch_size" in c:
        check_batch_size(c["batch_size"], "batch_size")
        c["batch_size"] = check_int(c["batch_size"], "batch_size", 1)  # as given, an int
    if "shuffle" in c and c["shuffle"] not in (True, False):
        raise ValueError(f"shuffle: expected True or False, got {c['shuffle']!r}")
    if "seed" in c:
        c["seed"] = check_int(c["seed"], "seed", 0)
    # the network itself (an activation or a loss valid alone may not fit this model): built
    # and compiled as train_one's fit will, on a tiny input, untrained
    from .models import book_model

    book_model(2, **{k: c[k] for k in ("layers", "activation", "loss") if k in c},
               optimizer=_optimizer(c))


def _optimizer(config: dict):
    """The config's optimizer: a name (or instance) and, when given, its learning rate."""
    from . import optimizers

    opt = config.get("optimizer", "rmsprop")
    if "learning_rate" not in config:
        return opt
    opt = optimizers.get(opt)
    return type(opt)(**{**opt.get_config(), "learning_rate": config["learning_rate"]})


def config_key(config: dict) -> str:
    """The config's identity: canonical JSON (sorted keys), as recorded in the results file."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(v: Any):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"grid: value {v!r} of type {type(v).__name__} cannot be recorded (use "
                    "numbers, strings, booleans and lists)")


def task_seed(sweep_seed: int, config: dict) -> int:
    """The model's seed: a hash of the sweep's seed and the config, so it does not depend on
    which worker trains it or when."""
    digest = hashlib.sha256(f"{int(sweep_seed)}\n{config_key(config)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def data_key(data: Sequence) -> str:
    """A fingerprint of a sweep's data (each part's arrays: dtype, shape and bytes): a results
    file's rows trained on other data must not be resumed into this sweep."""
    from ._core import CSR
    from ._encoding import _is_sparse_matrix, flatten_sequences

    h = hashlib.sha256()
    for part in data:
        if isinstance(part, CSR):
            arrays = [np.array([part.n_rows, part.n_cols]), part.indptr, part.indices]
            arrays += [] if part.data is None else [part.data]
        elif _is_sparse_matrix(part):
            s = part.tocsr()
            arrays = [np.array(s.shape), s.indptr, s.indices, s.data]
        elif hasattr(part, "tokens"):  # Sequences: their flat arrays as they are
            arrays = list(flatten_sequences(part))
        else:
            try:
                a = np.asarray(part)
            except ValueError:  # ragged lists
                a = np.empty(0, dtype=object)
            arrays = [a] if a.dtype != object else list(flatten_sequences(part))
        for a in arrays:
            a = np.ascontiguousarray(a)  # (a view when it already is)
            h.update(f"{a.dtype.str}{a.shape};".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def expected_cost(config: dict) -> float:
    """A model's training time, in arbitrary units, from its shape: a fixed part, the sparse
    first layer (per unit) and the dense layers (per weight), per epoch. The weights are times
    measured on 2 cores (the book's data, 20 epochs at batch 512, one thread): 0.05 s a model,
    9.8 ms a first-layer unit, 35 us a dense weight (docs/PERFORMANCE.md)."""
    units = list(config.get("layers", (16, 16))) + [1]
    dense = sum(a * b for a, b in zip(units, units[1:]))
    return config.get("epochs", 4) * (1430 + 280 * units[0] + dense)


def train_one(config: dict, data: tuple, sweep_seed: int = 0, threads: int = 1,
              return_model: bool = False, device: str = "cpu") -> dict:
    """Trains one config on data = (x, y, x_val, y_val[, x_test, y_test]) and returns its row:
    the config's keys, then the metrics (best validation accuracy and its epoch, the final
    validation loss and accuracy, test loss and accuracy at the best epoch's weights when a test
    set is given, seconds), and the model itself when asked (pickled by the engines)."""
    from . import callbacks
    from .models import fit

    x, y, x_val, y_val, *test = data
    kw = {k: config[k] for k in FIT_KEYS if k in config}
    kw["optimizer"] = _optimizer(config)
    epochs = kw.setdefault("epochs", 4)
    seed = task_seed(sweep_seed, config)
    best = callbacks.EarlyStopping(monitor="val_accuracy", patience=epochs,
                                   restore_best_weights=True)
    t0 = time.perf_counter()
    model = fit(x, y, validation_data=(x_val, y_val), seed=seed, threads=threads, verbose=0,
                callbacks=[best], device=device, **kw)
    h = model.history.history
    row = dict(config)
    row.update(config_key=config_key(config), model_seed=seed,
               best_val_accuracy=float(max(h["val_accuracy"])),
               best_epoch=int(np.argmax(h["val_accuracy"])) + 1,
               val_loss=[float(v) for v in h["val_loss"]],
               val_accuracy=[float(v) for v in h["val_accuracy"]])
    if test:
        test_loss, test_acc = model.evaluate(test[0], test[1], verbose=0)
        row.update(test_loss=float(test_loss), test_accuracy=float(test_acc))
    row["time_s"] = time.perf_counter() - t0
    if return_model:
        row["model"] = model
    return row


def read_results(path: str | os.PathLike) -> list[dict]:
    """The rows recorded in a results file; a last line cut short by an interruption is
    ignored (its config is trained again on resume)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n >= len(lines) - 1:  # the last line, written part way
                break
            raise ValueError(f"{os.fspath(path)}: line {n} is not JSON") from None
        if not isinstance(row, dict) or "config_key" not in row:
            raise ValueError(f"{os.fspath(path)}: line {n} is not a sweep result")
        rows.append(row)
    return rows


class Results(list):
    """The sweep's rows (dicts), best validation accuracy first."""

    def dataframe(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        pandas = require("pandas", "Results.dataframe")
        return pandas.DataFrame([{k: v for k, v in r.items() if k != "model"} for r in self])


def run(grid: dict | Sequence[dict], data: tuple, *, engine: str = "local",
        cluster: Any = None, workers: int | None = None, threads: int = 1, seed: int = 0,
        results: str | os.PathLike | None = None, resume: bool = False,
        verbose: bool | None = None, return_models: bool = False,
        on_result: Callable[[dict], None] | None = None, device: str = "cpu") -> Results:
    """Trains every config of ``grid`` on data = (x, y, x_val, y_val[, x_test, y_test]).

    engine: "local" (threads of this process; the core releases the GIL), "dask" or "ray" (an
    existing cluster; the data are sent to it once, not per model). cluster: for "dask", a
    ``distributed.Client`` or a scheduler address ("tcp://host:8786"), default the client already
    running; for "ray", an address for ``ray.init`` ("auto", "ray://host:10001"), default the
    Ray already initialised (else ``ray.init()``). workers: models trained at once, "local" only
    (default: the cores / threads; a cluster's size is its own). threads: each model's thread
    count (fixed, so workers are not oversubscribed; Ray reserves that many CPUs a model).
    results: a JSON-lines file each row is appended to as its model finishes; with resume=True
    the configs already in it are not trained again (and their recorded rows are returned),
    without it an existing file is an error. verbose: a progress line on stderr (default: when
    stderr is a terminal). on_result: called with each new row. device: where every model
    trains ("cpu", "cuda", ...). Every row is the same bit for bit, whichever engine ran it.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine: {engine!r}; valid: {', '.join(ENGINES)}")
    threads = check_int(threads, "threads", 1)
    if engine != "local" and workers is not None:
        raise ValueError(f"workers: applies to engine='local'; with engine={engine!r} the "
                         "cluster's workers decide how many models train at once")
    workers = check_int(max(1, (os.cpu_count() or 1) // threads) if workers is None else workers,
                        "workers", 1)
    seed = check_int(seed, "seed", 0)
    _engines.check(engine, cluster)
    if not isinstance(data, (tuple, list)) or len(data) not in (4, 6):
        raise ValueError("data: expected (x, y, x_val, y_val) or (x, y, x_val, y_val, x_test, y_test)")
    configs = expand(grid)
    done: list[dict] = []
    dkey = data_key(data)
    if results is not None:
        if os.path.isdir(results):
            raise IsADirectoryError(f"results: {os.fspath(results)} is a folder; give a file "
                                    "(FILE.jsonl)")
        if os.path.exists(results):
            if not resume:
                raise FileExistsError(f"results: {os.fspath(results)} exists (resume=True continues "
                                      "that sweep)")
            wanted = {config_key(c): c for c in configs}
            recorded = read_results(results)
            done = list({r["config_key"]: r for r in recorded if r["config_key"] in wanted}.values())
            for r in done:  # another sweep's rows must not pass for this one's
                if r.get("data_key", dkey) != dkey:
                    raise ValueError(f"results: {os.fspath(results)} was recorded on other data "
                                     f"(its config {r['config_key']}: data_key {r['data_key']}, "
                                     f"this sweep's {dkey}); resume with that data or a new file")
                if r.get("model_seed") != task_seed(seed, wanted[r["config_key"]]):
                    raise ValueError(f"results: {os.fspath(results)} was recorded with another "
                                     f"sweep seed than seed={seed} (its config "
                                     f"{r['config_key']}); resume with that seed or a new file")
            _rewrite_complete(results, recorded)
        elif resume:
            raise FileNotFoundError(f"results: {os.fspath(results)} does not exist, nothing to resume")
    have = {r["config_key"] for r in done}
    # the longest models first, so the last to finish are short ones and no core idles long
    todo = sorted((c for c in configs if config_key(c) not in have), key=expected_cost, reverse=True)
    opts = dict(sweep_seed=seed, threads=threads, return_model=return_models, device=device)
    progress = _Progress(len(configs), done, todo, verbose)
    rows = Results(done)
    trained = getattr(_engines, engine)(todo, tuple(data), opts, workers, cluster) if todo else iter(())
    try:
        for row in trained:  # rows are recorded here, by this thread only
            if row["config_key"] in have:  # a task an engine ran twice is recorded once
                continue
            have.add(row["config_key"])
            row["data_key"] = dkey
            if results is not None:
                _append(results, row)
            rows.append(row)
            progress.update(row)
            if on_result is not None:
                on_result(row)
    finally:  # Ctrl-C or a failed model: closing the engine cancels the models not finished
        if hasattr(trained, "close"):
            trained.close()
        progress.close()
    rows.sort(key=lambda r: (-r["best_val_accuracy"], r["config_key"]))
    return rows


def _append(path, row: dict) -> None:
    line = json.dumps({k: v for k, v in row.items() if k != "model"}, default=_jsonable)
    with open(path, "a", encoding="utf-8") as f:  # one write a row: a kill loses at most it
        f.write(line + "\n")
        f.flush()


def _rewrite_complete(path, rows: list[dict]) -> None:
    """Drops a line cut short, so appended rows start on a fresh line."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, default=_jsonable) + "\n" for r in rows)


class _Progress:
    """The live line. The ETA weighs the models still to train by expected_cost: they run
    longest first, so the first models' pace would overstate the rest's."""

    def __init__(self, total: int, done: list[dict], todo: list[dict], verbose: bool | None):
        self.total, self.done = total, len(done)
        self.best = max(done, key=lambda r: r["best_val_accuracy"], default=None)
        self.cost = {config_key(c): expected_cost(c) for c in todo}
        self.cost_left = self.cost_all = sum(self.cost.values())
        self.on = sys.stderr.isatty() if verbose is None else bool(verbose)
        self.t0 = time.perf_counter()
        self.new = 0

    def update(self, row: dict) -> None:
        self.done += 1
        self.new += 1
        self.cost_left -= self.cost.get(row["config_key"], 0.0)
        if self.best is None or row["best_val_accuracy"] > self.best["best_val_accuracy"]:
            self.best = row
        if not self.on:
            return
        elapsed = time.perf_counter() - self.t0
        spent = self.cost_all - self.cost_left
        eta = elapsed * self.cost_left / spent if spent > 0 else 0.0
        sys.stderr.write(f"\r{self.done}/{self.total} models, {elapsed:.1f}s elapsed, "
                         f"ETA {eta:.0f}s, best val_accuracy {self.best['best_val_accuracy']:.4f}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.on and self.new:
            sys.stderr.write("\n")
