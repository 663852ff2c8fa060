"""imdbfast against Keras, PyTorch and scikit-learn on the same machine, data and thread count.

    pip install ".[peers]"                 # scikit-learn, torch (CPU), tensorflow-cpu (Keras 3)
    IMDBFAST_DATA=../shared/data python benchmarks/compare.py [--threads 2] [--json]
    IMDBFAST_DATA=../shared/data python benchmarks/compare.py --units 512 \
        --frameworks imdbfast,torch-embeddingbag         # chapter 5's bigger model
    IMDBFAST_DATA=../shared/data python benchmarks/compare.py --workload text [...]
                                          # raw reviews: benchmarks/compare_text.py's options

Each framework runs the book's workflow in a fresh process (so peak memory is its own): the
data as load_data(num_words=10000) gives it (the same loader for all, timed separately), the
framework's natural input (Keras: the book's float64 0/1 matrix; PyTorch dense: a float32
matrix; PyTorch EmbeddingBag: the flat word ids; scikit-learn: scipy CSR; imdbfast: its CSR),
4 epochs at batch 512 of Dense(16, relu) x2 (--units) + Dense(1, sigmoid) with RMSprop (scikit-learn has
none: Adam), then evaluate and predict on the 25,000 test reviews. Frameworks that are not
installed are skipped. The table prints times, the median epoch (the first epoch excluded where
a framework traces or compiles), test accuracy, peak RSS, and each epoch time as a multiple of
imdbfast's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FRAMEWORKS = ("imdbfast", "sklearn-mlp", "torch-embeddingbag", "torch-dense", "keras")
# The hidden layers' width: 16 is the book's model, 512 chapter 5's bigger model (--units).
UNITS = 16


def _threads_env(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(n)


def _data():
    from imdbfast.datasets import imdb

    t = time.perf_counter()
    (x, y), (xt, yt) = imdb.load_data(num_words=10000)
    return x, y, xt, yt, time.perf_counter() - t


def _peak_mb() -> float:
    """Peak RSS since exec (VmHWM); getrusage's ru_maxrss would include the parent's memory."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_imdbfast(threads: int, epochs: int) -> dict:
    import imdbfast
    from imdbfast import callbacks

    x, y, xt, yt, load_s = _data()
    t = time.perf_counter()
    xs, xts = imdbfast.multi_hot(x, 10000), imdbfast.multi_hot(xt, 10000)
    encode_s = time.perf_counter() - t
    marks = []
    timer = callbacks.LambdaCallback(on_epoch_begin=lambda e, l: marks.append(time.perf_counter()),
                                     on_epoch_end=lambda e, l: marks.append(time.perf_counter()))
    t = time.perf_counter()
    model = imdbfast.fit(xs, y, layers=(UNITS, UNITS), epochs=epochs, batch_size=512, seed=0,
                         verbose=0, threads=threads, callbacks=[timer])
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    _, acc = model.evaluate(xts, yt, verbose=0)
    model.predict(xts, verbose=0)
    return dict(load_s=load_s, encode_s=encode_s, fit_s=fit_s, eval_predict_s=time.perf_counter() - t,
                epoch_s=[marks[i + 1] - marks[i] for i in range(0, len(marks), 2)], test_accuracy=acc)


def run_sklearn(threads: int, epochs: int) -> dict:
    import numpy as np
    import scipy.sparse as sp
    from sklearn.neural_network import MLPClassifier

    x, y, xt, yt, load_s = _data()
    import imdbfast

    t = time.perf_counter()

    def to_scipy(s):
        m = imdbfast.multi_hot(s, 10000)
        return sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), shape=(m.n_rows, 10000))

    xs, xts = to_scipy(x), to_scipy(xt)
    encode_s = time.perf_counter() - t
    clf = MLPClassifier(hidden_layer_sizes=(UNITS, UNITS), activation="relu", solver="adam", alpha=0.0,
                        batch_size=512, learning_rate_init=1e-3, random_state=0, shuffle=True)
    times = []
    t0 = time.perf_counter()
    for _ in range(epochs):
        t = time.perf_counter()
        clf.partial_fit(xs, y, classes=np.array([0, 1]))
        times.append(time.perf_counter() - t)
    fit_s = time.perf_counter() - t0
    t = time.perf_counter()
    acc = float((clf.predict(xts) == yt).mean())
    clf.predict_proba(xts)
    return dict(load_s=load_s, encode_s=encode_s, fit_s=fit_s, eval_predict_s=time.perf_counter() - t,
                epoch_s=times, test_accuracy=acc, note="Adam (no RMSprop in scikit-learn)")


def _torch_common(threads: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch


def _torch_train(torch, model, batches, y, n, epochs, forward):
    """The book's loop in PyTorch: RMSprop with Keras's hyper-parameters, BCE on logits."""
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        perm = torch.randperm(n)
        for b0 in range(0, n, 512):
            rows = perm[b0:b0 + 512]
            opt.zero_grad()
            loss = loss_fn(forward(batches, rows).squeeze(1), y[rows])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times


def run_torch_embeddingbag(threads: int, epochs: int) -> dict:
    torch = _torch_common(threads)
    import imdbfast

    x, y, xt, yt, load_s = _data()
    t = time.perf_counter()
    m, mt = imdbfast.multi_hot(x, 10000), imdbfast.multi_hot(xt, 10000)
    data = (torch.from_numpy(m.indices.astype("int64")), torch.from_numpy(m.indptr.copy()))
    test = (torch.from_numpy(mt.indices.astype("int64")), torch.from_numpy(mt.indptr.copy()))
    yy = torch.from_numpy(y.astype("float32"))
    encode_s = time.perf_counter() - t

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = torch.nn.EmbeddingBag(10000, UNITS, mode="sum")
            # nn.EmbeddingBag starts at N(0, 1), which saturates a sum over ~130 words: use
            # Keras's glorot-uniform kernel, as the dense layer it replaces would have.
            limit = (6 / (10000 + UNITS)) ** 0.5
            torch.nn.init.uniform_(self.bag.weight, -limit, limit)
            self.b1 = torch.nn.Parameter(torch.zeros(UNITS))
            self.rest = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(UNITS, UNITS),
                                            torch.nn.ReLU(), torch.nn.Linear(UNITS, 1))

        def forward(self, idx, offsets):
            return self.rest(self.bag(idx, offsets) + self.b1)

    model = Net()

    def forward(d, rows):
        indices, indptr = d
        starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
        offsets = torch.cumsum(lengths, 0) - lengths
        flat = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(int(lengths.sum()))
        return model(indices[flat], offsets)

    t = time.perf_counter()
    times = _torch_train(torch, model, data, yy, m.n_rows, epochs, forward)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    with torch.no_grad():
        p = torch.sigmoid(forward(test, torch.arange(mt.n_rows))).squeeze(1).numpy()
    acc = float(((p > 0.5) == (yt == 1)).mean())
    return dict(load_s=load_s, encode_s=encode_s, fit_s=fit_s, eval_predict_s=time.perf_counter() - t,
                epoch_s=times, test_accuracy=acc)


def run_torch_dense(threads: int, epochs: int) -> dict:
    torch = _torch_common(threads)
    import imdbfast

    x, y, xt, yt, load_s = _data()
    t = time.perf_counter()
    xd = torch.from_numpy(imdbfast.multi_hot_dense(x, 10000))
    xtd = torch.from_numpy(imdbfast.multi_hot_dense(xt, 10000))
    yy = torch.from_numpy(y.astype("float32"))
    encode_s = time.perf_counter() - t
    model = torch.nn.Sequential(torch.nn.Linear(10000, UNITS), torch.nn.ReLU(),
                                torch.nn.Linear(UNITS, UNITS), torch.nn.ReLU(),
                                torch.nn.Linear(UNITS, 1))
    t = time.perf_counter()
    times = _torch_train(torch, model, xd, yy, xd.shape[0], epochs, lambda d, rows: model(d[rows]))
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    with torch.no_grad():
        p = torch.sigmoid(model(xtd)).squeeze(1).numpy()
    acc = float(((p > 0.5) == (yt == 1)).mean())
    return dict(load_s=load_s, encode_s=encode_s, fit_s=fit_s, eval_predict_s=time.perf_counter() - t,
                epoch_s=times, test_accuracy=acc)


def run_keras(threads: int, epochs: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x, y, xt, yt, load_s = _data()
    t = time.perf_counter()

    def vectorize_sequences(sequences, dimension=10000):  # the book's code, float64
        results = np.zeros((len(sequences), dimension))
        for i, sequence in enumerate(sequences):
            results[i, sequence] = 1.0
        return results

    x_train, x_test = vectorize_sequences(x), vectorize_sequences(xt)
    y_train, y_test = np.asarray(y).astype("float32"), np.asarray(yt).astype("float32")
    encode_s = time.perf_counter() - t
    model = keras.Sequential([layers.Dense(UNITS, activation="relu"), layers.Dense(UNITS, activation="relu"),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    marks = []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, l: marks.append(time.perf_counter()),
                                           on_epoch_end=lambda e, l: marks.append(time.perf_counter()))
    t = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=512, verbose=0, callbacks=[timer])
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    model.predict(x_test, verbose=0)
    return dict(load_s=load_s, encode_s=encode_s, fit_s=fit_s, eval_predict_s=time.perf_counter() - t,
                epoch_s=[marks[i + 1] - marks[i] for i in range(0, len(marks), 2)], test_accuracy=float(acc),
                note="the book's float64 matrix; TF backend")


RUNNERS = {"imdbfast": run_imdbfast, "sklearn-mlp": run_sklearn,
           "torch-embeddingbag": run_torch_embeddingbag, "torch-dense": run_torch_dense,
           "keras": run_keras}
NEEDS = {"sklearn-mlp": "sklearn", "torch-embeddingbag": "torch", "torch-dense": "torch",
         "keras": "tensorflow"}


def worker(name: str, threads: int, epochs: int) -> None:
    _threads_env(threads)
    result = RUNNERS[name](threads, epochs)
    result.update(framework=name, threads=threads, peak_rss_mb=_peak_mb())
    print("RESULT " + json.dumps(result))


def main() -> None:
    if sys.argv[1:3] == ["--workload", "text"]:  # the text workload has its own script
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import compare_text

        sys.argv = [sys.argv[0]] + sys.argv[3:]
        compare_text.main()
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", choices=("book",), default="book",
                    help="book (this script), or text as the first argument (compare_text.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--units", type=int, default=16, help="hidden width (512: chapter 5's bigger model)")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global UNITS
    UNITS = args.units
    if args.worker:
        worker(args.worker, args.threads, args.epochs)
        return
    import importlib.util

    results = []
    for name in args.frameworks.split(","):
        if name not in RUNNERS:
            sys.exit(f"compare.py: unknown framework {name!r}; valid: {', '.join(FRAMEWORKS)}")
        if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
            print(f"# {name}: skipped ({NEEDS[name]} is not installed)", file=sys.stderr)
            continue
        t = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--worker", name, "--threads", str(args.threads),
                              "--epochs", str(args.epochs), "--units", str(args.units)],
                             capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            print(f"# {name}: failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(line[7:])
        r["process_s"] = time.perf_counter() - t
        results.append(r)
    base = next((r for r in results if r["framework"] == "imdbfast"), None)

    def epoch(r):
        e = sorted(r["epoch_s"][1:] if len(r["epoch_s"]) > 1 else r["epoch_s"])
        return e[len(e) // 2]

    for r in results:
        r["median_epoch_s"] = epoch(r)
        r["workflow_s"] = r["encode_s"] + r["fit_s"] + r["eval_predict_s"]
        if base:
            r["epoch_vs_imdbfast"] = r["median_epoch_s"] / epoch(base)
            r["workflow_vs_imdbfast"] = r["workflow_s"] / base["workflow_s"]
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'framework':<20}{'encode':>9}{'epoch':>10}{'fit':>9}{'eval+pred':>10}{'workflow':>10}"
          f"{'test acc':>9}{'peak RSS':>10}{'epoch x':>9}{'workflow x':>11}")
    for r in results:
        print(f"{r['framework']:<20}{r['encode_s']:>8.3f}s{r['median_epoch_s'] * 1e3:>8.1f}ms"
              f"{r['fit_s']:>8.2f}s{r['eval_predict_s']:>9.3f}s{r['workflow_s']:>9.2f}s"
              f"{r['test_accuracy']:>9.4f}{r['peak_rss_mb']:>8.0f}MB"
              f"{r.get('epoch_vs_imdbfast', float('nan')):>8.1f}x{r.get('workflow_vs_imdbfast', float('nan')):>10.1f}x")
    if results:
        print(f"# Dense({args.units}) x2, {args.threads} threads, {args.epochs} epochs at batch 512; load_data "
              f"({results[0]['load_s']:.3f}s in the first process) is shared and excluded")


if __name__ == "__main__":
    main()
