"""``imdbfast`` on the command line (also ``python -m imdbfast``).

    imdbfast train [--validation 10000] [--epochs 4] [--plot curves.png] [--save model.npz]
    imdbfast experiments [--plot grid.png]       # the book's "things to try", ranked
    imdbfast experiments --results sweep.jsonl   # each result appended as its model finishes
    imdbfast experiments --resume sweep.jsonl    # continue it: recorded configs are skipped
    imdbfast experiments --engine dask --scheduler tcp://HOST:8786   # on a Dask cluster
    imdbfast experiments --engine ray --scheduler auto               # on a running Ray cluster
    imdbfast predict --model model.npz "A great movie!" ...
    imdbfast info

Errors are one line on stderr and a non-zero exit (2 for usage, 1 otherwise); ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from . import __version__
from .experiments import TRY_ACTIVATIONS as ACTIVATIONS  # the book's choices
from .experiments import TRY_LOSSES as LOSSES
from .experiments import TRY_OPTIMIZERS as OPTIMIZERS


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(v) for v in text.split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def _int(low: int):
    """An argparse type: an int >= low (a usage error otherwise, before any work)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an int >= {low}, got {v}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="imdbfast", description="The Deep Learning with Python IMDB model, fast.")
    p.add_argument("--version", action="version", version=f"imdbfast {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    def common(sp, data=True):
        if data:
            sp.add_argument("--data", help="imdb.npz, or a folder holding it (default: load_data's search)")
            sp.add_argument("--num-words", type=_int(1), default=10000, help="vocabulary size (default 10000)")
        sp.add_argument("--threads", type=_int(1), default=None, help="threads (default: all cores)")
        sp.add_argument("--device", default="cpu",
                        help="cpu (default), cuda, cuda:N, or auto (the GPU when one is usable)")
        sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        sp.add_argument("--debug", action="store_true", help="show tracebacks")

    t = sub.add_parser("train", help="the book end to end on the real data (imdb.npz; --text: "
                       "the raw reviews, chapter 11's bag of bigrams)")
    common(t)
    t.add_argument("--epochs", type=_int(1), default=None, help="default 4 (--text: 10)")
    t.add_argument("--batch-size", type=_int(1), default=None, help="default 512 (--text: 32)")
    t.add_argument("--text", metavar="PATH",
                   help="train on raw reviews: the aclImdb folder or aclImdb_v1.tar.gz. "
                        "TextVectorization -> Dense(--units, relu) -> Dropout(0.5) -> Dense(1), "
                        "5,000 shuffled training reviews held out to keep the best epoch")
    t.add_argument("--ngrams", type=_int(1), default=2, help="--text: n-gram width (default 2)")
    t.add_argument("--output-mode", choices=("multi_hot", "count", "tf_idf"), default="multi_hot",
                   help="--text: the bag of terms (default multi_hot)")
    t.add_argument("--max-tokens", type=_int(1), default=20000,
                   help="--text: vocabulary size, OOV included (default 20000)")
    t.add_argument("--layers", type=_int(1), default=None, help="hidden layers (default 2; --text: 1)")
    t.add_argument("--units", type=_int(1), default=16, help="units per hidden layer (default 16)")
    t.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="rmsprop")
    t.add_argument("--learning-rate", type=float, default=None, help="default: the optimizer's")
    t.add_argument("--loss", choices=LOSSES, default="binary_crossentropy")
    t.add_argument("--validation", type=_int(0), default=0, metavar="N",
                   help="hold out the first N training reviews (the book: 10000)")
    t.add_argument("--seed", type=_int(0), default=None)
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                   help="progress (default 1; 0 with --json)")
    t.add_argument("--save", metavar="PATH", help="save the trained model (npz)")
    t.add_argument("--plot", metavar="PATH.png", help="write the book's loss and accuracy figures")

    e = sub.add_parser(
        "experiments", help="the book's 'things to try' grid, ranked",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The book's 'things to try' grid, ranked by best validation accuracy.",
        epilog="On a cluster: --engine dask --scheduler tcp://HOST:8786 (a running Dask scheduler;\n"
               "start workers with --nthreads 1, one per core), or --engine ray --scheduler auto\n"
               "(a running Ray cluster; each model reserves --threads CPUs). The data (26 MB as CSR,\n"
               "test set included) travel once: scattered to every Dask worker, or put once in\n"
               "Ray's object store; each model sends back only its row. A lost worker's model is retried by\n"
               "the cluster and recorded once, and --resume continues a sweep that was stopped.\n"
               "Every model's seed comes from --seed and its config: the same numbers on any engine.")
    common(e)
    e.add_argument("--epochs", type=_int(1), default=20)
    e.add_argument("--batch-size", type=_int(1), default=512)
    e.add_argument("--validation", type=_int(1), default=10000, metavar="N")
    e.add_argument("--optimizers", type=_csv(str), default=list(OPTIMIZERS))
    e.add_argument("--depths", type=_csv(int), default=[1, 2, 3], help="hidden layers")
    e.add_argument("--units", type=_csv(int), default=[16, 32, 64])
    e.add_argument("--losses", type=_csv(str), default=list(LOSSES))
    e.add_argument("--activations", type=_csv(str), default=list(ACTIVATIONS))
    e.add_argument("--workers", type=_int(1), default=None,
                   help="models trained at once, --engine local only (default: cores)")
    e.add_argument("--engine", choices=("local", "dask", "ray"), default="local",
                   help="where the models train (default: this machine's cores)")
    e.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="--engine dask: the scheduler (tcp://HOST:8786); --engine ray: the "
                        "cluster's address for ray.init ('auto', ray://HOST:10001)")
    e.add_argument("--seed", type=_int(0), default=0)
    e.add_argument("--top", type=_int(0), default=0, help="show only the best N rows")
    e.add_argument("--results", metavar="FILE.jsonl",
                   help="append each model's result to FILE as it finishes")
    e.add_argument("--resume", metavar="FILE.jsonl",
                   help="continue the sweep recorded in FILE: configs already there are skipped")
    e.add_argument("--verbose", action="store_true",
                   help="a progress line on stderr even when it is not a terminal")
    e.add_argument("--plot", metavar="PATH.png", help="write a summary figure")

    pr = sub.add_parser("predict", help="probability and label for review texts")
    common(pr, data=False)
    pr.add_argument("--model", required=True, help="a model saved by `imdbfast train --save`")
    pr.add_argument("texts", nargs="+", help="review texts ('-' reads one per line from stdin)")

    i = sub.add_parser("info", help="version, build, threads, data")
    i.add_argument("--json", action="store_true")
    i.add_argument("--debug", action="store_true")
    return p


# ---- commands -----------------------------------------------------------------------------

def _load(args):
    from .datasets import imdb

    path = "imdb.npz"
    if args.data:
        p = Path(args.data)
        path = str(p / "imdb.npz") if p.is_dir() else str(p)
    return imdb.load_data(path, num_words=args.num_words)


def _writable(path: str | None, what: str) -> None:
    if path is None:
        return
    folder = Path(path).expanduser().resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OSError(f"{what}: cannot write to {path} (folder missing or not writable)")


def _savable(path: str | None) -> None:
    """--save: writable and a model file's name, before any training."""
    _writable(path, "--save")
    if path is not None:
        from ._persist import file_kind

        file_kind(path, "--save")


def _plottable(path: str | None) -> None:
    """--plot: writable, matplotlib present and the format known, before any work."""
    if path is None:
        return
    if os.path.isdir(path):
        raise IsADirectoryError(f"--plot: {path} is a folder; give a file name such as "
                                f"{os.path.join(path, 'figure.png')}")
    _writable(path, "--plot")
    from . import plots

    plots._figure(1, 1)
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    if os.path.splitext(path)[1][1:].lower() not in kinds:
        raise ValueError(f"--plot: {path}: the file name must end in one of "
                         f"{', '.join('.' + k for k in sorted(kinds))}")


def _model(args, layers: int, units: int, activation: str, optimizer: str, loss: str,
           seed: int | None, threads: int | None, lr: float | None = None):
    import imdbfast
    from imdbfast import layers as L, optimizers

    opt = optimizers.get(optimizer)
    if lr is not None:
        opt = type(opt)(learning_rate=lr)
    m = imdbfast.Sequential([L.Input((args.num_words,))] +
                            [L.Dense(units, activation=activation) for _ in range(layers)] +
                            [L.Dense(1, activation="sigmoid")], seed=seed, threads=threads,
                            device=args.device)
    m.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
    return m


def cmd_train(args) -> int:
    import imdbfast

    _savable(args.save)
    _plottable(args.plot)
    if args.layers is None:
        args.layers = 1 if args.text else 2
    if args.text:
        return _train_text(args)
    args.epochs = 4 if args.epochs is None else args.epochs
    args.batch_size = 512 if args.batch_size is None else args.batch_size
    times = {}
    t0 = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = _load(args)
    times["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = imdbfast.multi_hot(x_train, args.num_words)
    xt = imdbfast.multi_hot(x_test, args.num_words)
    times["encode_s"] = time.perf_counter() - t0
    validation = None
    if args.validation:
        if not 0 < args.validation < x.n_rows:
            raise ValueError(f"--validation: must be between 1 and {x.n_rows - 1}")
        import numpy as np

        head = np.arange(args.validation)
        tail = np.arange(args.validation, x.n_rows)
        validation = (x.take(head), y_train[:args.validation])
        x, y_train = x.take(tail), y_train[args.validation:]
    model = _model(args, args.layers, args.units, args.activation, args.optimizer, args.loss,
                   args.seed, args.threads, args.learning_rate)
    model.text_encoding = x_train.encoding
    verbose = args.verbose if args.verbose is not None else (0 if args.json else 1)
    t0 = time.perf_counter()
    history = model.fit(x, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=validation, verbose=verbose)
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_loss, test_acc = model.evaluate(xt, y_test, verbose=0)
    times["evaluate_s"] = time.perf_counter() - t0
    if args.save:
        model.save(args.save)
    if args.plot:
        from . import plots

        plots.plot_history(history, args.plot)
    if args.json:
        print(json.dumps({"test_loss": test_loss, "test_accuracy": test_acc,
                          "history": history.history, "times": times,
                          "config": {k: v for k, v in vars(args).items()
                                     if k not in ("json", "debug", "func")}}))
    else:
        print(f"Test loss: {test_loss:.4f} - test accuracy: {test_acc:.4f}")
        print("Time: " + ", ".join(f"{k[:-2]} {v:.3f}s" for k, v in times.items()))
        if args.save:
            print(f"Saved the model to {args.save}")
        if args.plot:
            print(f"Wrote the loss and accuracy figures to {args.plot}")
    return 0


def _train_text(args) -> int:
    """Chapter 11's road from raw reviews: read, adapt, vectorise, train (the best epoch by
    validation loss kept), evaluate; each phase timed."""
    import numpy as np

    import imdbfast
    from imdbfast import callbacks, layers as L, optimizers
    from imdbfast.datasets import imdb

    epochs = 10 if args.epochs is None else args.epochs
    batch = 32 if args.batch_size is None else args.batch_size
    held = 5000 if not args.validation else args.validation
    times = {}
    t0 = time.perf_counter()
    (texts, y, _), (test_texts, y_test, _) = imdb.read_aclimdb_splits(args.text)
    times["read_s"] = time.perf_counter() - t0
    if not 0 < held < len(texts):
        raise ValueError(f"--validation: must be between 1 and {len(texts) - 1}")
    order = np.random.default_rng(args.seed).permutation(len(texts))  # (pos come before neg)
    texts, y = [texts[i] for i in order], y[order]
    t0 = time.perf_counter()
    tv = L.TextVectorization(max_tokens=args.max_tokens, output_mode=args.output_mode,
                             ngrams=args.ngrams if args.ngrams > 1 else None)
    tv.threads = args.threads
    tv.adapt(texts[held:])
    times["adapt_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x, xv, xt = tv(texts[held:]), tv(texts[:held]), tv(test_texts)
    times["vectorize_s"] = time.perf_counter() - t0
    opt = optimizers.get(args.optimizer)
    if args.learning_rate is not None:
        opt = type(opt)(learning_rate=args.learning_rate)
    hidden = []
    for _ in range(args.layers):
        hidden += [L.Dense(args.units, activation=args.activation), L.Dropout(0.5)]
    model = imdbfast.Sequential([L.Input((x.n_cols,))] + hidden + [L.Dense(1, activation="sigmoid")],
                                seed=args.seed, threads=args.threads, device=args.device)
    model.compile(optimizer=opt, loss=args.loss, metrics=["accuracy"])
    best = callbacks.EarlyStopping(monitor="val_loss", patience=epochs, restore_best_weights=True)
    verbose = args.verbose if args.verbose is not None else (0 if args.json else 1)
    t0 = time.perf_counter()
    history = model.fit(x, y[held:], epochs=epochs, batch_size=batch, verbose=verbose,
                        validation_data=(xv, y[:held]), callbacks=[best])
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_loss, test_acc = model.evaluate(xt, y_test, verbose=0)
    times["evaluate_s"] = time.perf_counter() - t0
    if args.save:  # the same layers behind the vectorizer: a model that reads strings
        ready = imdbfast.Sequential([tv] + [type(l).from_config(l.get_config()) for l in model.layers],
                                    seed=args.seed, threads=args.threads)
        ready.compile(optimizer=opt, loss=args.loss, metrics=["accuracy"])
        ready.build()
        ready.set_weights(model.get_weights())
        ready.save(args.save)
    if args.plot:
        from . import plots

        plots.plot_history(history, args.plot)
    total = sum(times.values())
    if args.json:
        print(json.dumps({"test_loss": test_loss, "test_accuracy": test_acc,
                          "history": history.history, "times": times, "total_s": total,
                          "config": {k: v for k, v in vars(args).items()
                                     if k not in ("json", "debug", "func")}}))
    else:
        print(f"Test loss: {test_loss:.4f} - test accuracy: {test_acc:.4f} "
              f"({args.output_mode}, ngrams={args.ngrams}, {tv.vocabulary_size()} terms)")
        print("Time: " + ", ".join(f"{k[:-2]} {v:.3f}s" for k, v in times.items()) +
              f"; total {total:.2f}s")
        if args.save:
            print(f"Saved the model (it reads raw text) to {args.save}")
    return 0


def cmd_experiments(args) -> int:
    import numpy as np

    import imdbfast

    _plottable(args.plot)
    for name, values, allowed in (("--optimizers", args.optimizers, OPTIMIZERS),
                                  ("--losses", args.losses, LOSSES),
                                  ("--activations", args.activations, ACTIVATIONS)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(f"{name}: unknown {bad or 'empty list'}; valid: {', '.join(allowed)}")
    if not args.depths or not args.units or min(args.depths + args.units) < 1:
        raise ValueError("--depths and --units must be lists of ints >= 1")
    if args.engine == "local":
        if args.scheduler:
            raise ValueError("--scheduler: needs --engine dask or --engine ray")
        workers = args.workers or os.cpu_count() or 1
        threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    elif args.engine == "dask" and not args.scheduler:
        raise ValueError("--scheduler: --engine dask needs the scheduler's address (tcp://HOST:8786)")
    elif args.workers:
        raise ValueError(f"--workers: applies to --engine local; the {args.engine} cluster's "
                         "workers decide how many models train at once")
    if args.engine != "local":
        workers, threads = None, args.threads or 1
    t_start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = _load(args)
    x = imdbfast.multi_hot(x_train, args.num_words)
    xt = imdbfast.multi_hot(x_test, args.num_words)
    n_val = args.validation
    if not 0 < n_val < x.n_rows:
        raise ValueError(f"--validation: must be between 1 and {x.n_rows - 1}")
    x_val, y_val = x.take(np.arange(n_val)), y_train[:n_val]
    x_fit, y_fit = x.take(np.arange(n_val, x.n_rows)), y_train[n_val:]
    if args.results and args.resume:
        raise ValueError("--results and --resume: give one (--resume FILE appends to FILE)")
    from . import experiments

    grid = experiments.things_to_try(optimizers=args.optimizers, depths=args.depths,
                                     units=args.units, losses=args.losses,
                                     activations=args.activations, epochs=args.epochs,
                                     batch_size=args.batch_size)
    rows = experiments.run(grid, (x_fit, y_fit, x_val, y_val, xt, y_test), engine=args.engine,
                           cluster=args.scheduler, workers=workers,
                           threads=threads, seed=args.seed, results=args.resume or args.results,
                           resume=bool(args.resume), verbose=True if args.verbose else None,
                           device=args.device)
    for r in rows:
        depth, units = len(r["layers"]), r["layers"][0]
        r.update(name=f"{r['optimizer']} {depth}x{units} {r['activation']} "
                      f"{'bce' if r['loss'].startswith('binary') else 'mse'}",
                 hidden_layers=depth, units=units)
    rows.sort(key=lambda r: (-r["best_val_accuracy"], r["name"]))
    total = time.perf_counter() - t_start
    if args.plot:
        from . import plots

        plots.plot_experiments(rows, args.plot, f"Things to try: {args.epochs} epochs, "
                               f"{n_val:,} validation reviews (ranked by best validation accuracy)")
    if args.json:
        print(json.dumps({"results": rows, "total_s": total, "workers": workers,
                          "threads_per_model": threads}))
        return 0
    shown = rows[:args.top] if args.top else rows
    print(f"{'rank':>4}  {'configuration':<28} {'best val acc':>12} {'epoch':>5} {'test acc':>9} {'time':>7}")
    for i, r in enumerate(shown, 1):
        print(f"{i:>4}  {r['name']:<28} {r['best_val_accuracy']:>12.4f} {r['best_epoch']:>5} "
              f"{r['test_accuracy']:>9.4f} {r['time_s']:>6.2f}s")
    where = f"{workers} at a time" if workers else f"on {args.engine}"
    print(f"{len(rows)} models, {args.epochs} epochs each, in {total:.1f}s "
          f"({where}, {threads} thread(s) each)")
    if args.plot:
        print(f"Wrote the summary figure to {args.plot}")
    return 0


def cmd_predict(args) -> int:
    import imdbfast

    texts = list(args.texts)
    if texts == ["-"]:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for i, t in enumerate(texts):  # undecodable bytes arrive as lone surrogates
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            where = f"line {i + 1} of stdin" if args.texts == ["-"] else f"text {i + 1}"
            raise ValueError(f"predict: {where} is not valid UTF-8 ({t.encode('utf-8', 'replace')[:40]!r})") from None
    model = imdbfast.load_model(args.model, device=args.device)
    p = model.predict_texts(texts, threads=args.threads)[:, 0]
    if args.json:
        print(json.dumps([{"text": t, "probability": float(v), "label": int(v > 0.5)}
                          for t, v in zip(texts, p)]))
    else:
        for t, v in zip(texts, p):
            short = t if len(t) <= 60 else t[:57] + "..."
            print(f"{v:.4f}  {'positive' if v > 0.5 else 'negative'}  {short}")
    return 0


def cmd_info(args) -> int:
    import imdbfast
    from imdbfast.datasets import _sources

    found = {}
    for name in ("imdb.npz", "imdb_word_index.json", "aclImdb_v1.tar.gz"):
        try:
            found[name] = str(_sources.locate(name)) if name in _sources.KNOWN_FILES else _find_plain(name)
        except FileNotFoundError:
            found[name] = None
    info = {"version": __version__, "build": imdbfast.build_info(),
            "threads": imdbfast.get_num_threads(), "cuda_available": imdbfast.cuda_available(),
            "data": found, "cache": str(_sources.cache_dir())}
    if args.json:
        print(json.dumps(info))
        return 0
    b = info["build"]
    print(f"imdbfast {info['version']} (compiler {b['compiler']}, {b['simd']})")
    if b["cuda"]:
        gpus = ", ".join(d["name"] for d in b["cuda_devices"]) or f"no usable GPU ({b['cuda_reason']})"
        usable = "device='cuda' usable" if info["cuda_available"] else "device='cuda' unavailable"
        cuda = f"module built for {b['cuda_architectures']}; {gpus}; {usable}"
    else:
        cuda = "not built"
    print(f"OpenMP: {'yes' if b['openmp'] else 'no'}, threads: {info['threads']}; CUDA: {cuda}")
    for name, where in found.items():
        print(f"{name}: {where or 'not found (see load_data for where to put it)'}")
    print(f"cache: {info['cache']}")
    return 0


def _find_plain(name: str) -> str:
    if os.environ.get("IMDBFAST_DATA") and (Path(os.environ["IMDBFAST_DATA"]) / name).is_file():
        return str(Path(os.environ["IMDBFAST_DATA"]) / name)
    raise FileNotFoundError(name)


COMMANDS = {"train": cmd_train, "experiments": cmd_experiments, "predict": cmd_predict,
            "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            raise UsageError("imdbfast: choose a command: train, experiments, predict, info (see --help)")
        if getattr(args, "device", None) is not None:  # refused before any data is loaded
            from ._backend import resolve_device
            args.device = resolve_device(args.device)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imdbfast: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's contract: one line unless --debug
        if debug:
            raise
        print(f"imdbfast: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
