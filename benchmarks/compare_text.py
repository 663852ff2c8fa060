"""The text workload: raw aclImdb reviews to test accuracy, imdbfast against scikit-learn and
Keras's TextVectorization, on the same texts, machine and thread count.

    IMDBFAST_DATA=../shared/data python benchmarks/compare_text.py [--threads 2] [--json]
        [--frameworks imdbfast,sklearn-logreg,sklearn-mlp,keras-vectorize]
        [--keras-python PATH]     # a Python with Keras 3 + TensorFlow (TextVectorization's ops)
        [--repeat N]              # N rounds, the frameworks in turn in each (default 3)

The reviews are read once, here (imdbfast.datasets.imdb.read_aclimdb_splits, timed), and
handed to each framework's fresh process. The 25,000 training reviews are shuffled (seed 0);
the first 5,000 are held out for validation. Each framework then runs its road:

- imdbfast: TextVectorization(max_tokens=20000, ngrams=2, multi_hot) adapted on the 20,000,
  Dense(16, relu) -> Dropout(0.5) -> Dense(1, sigmoid), RMSprop, 10 epochs at batch 32, the
  epoch of lowest validation loss kept; accuracy on the 25,000 test reviews (chapter 11).
- sklearn-logreg: TfidfVectorizer(ngram_range=(1, 2), max_features=20000) fitted on the 20,000,
  LogisticRegression (default C, lbfgs) on them.
- sklearn-mlp: the same vectorizer, MLPClassifier((16,)), 10 epochs (max_iter=10, Adam, batch
  200: scikit-learn's defaults), validation not used.
- keras-vectorize: Keras 3's TextVectorization, the same settings as imdbfast's: adapt and
  vectorise only (its model would be Keras's; the vectorising is what is compared).

Each round runs every framework once, in turn, each in a fresh process, so that the machine's
drift (10-20 % over minutes here) reaches all of them alike; the table prints the median over the
rounds of each phase's seconds, the total from the texts to the test accuracy (reading
excluded: the same for all), the accuracy, peak RSS and the total as a multiple of imdbfast's.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import _peak_mb, _threads_env  # noqa: E402  (the same thread and memory rules)

FRAMEWORKS = ("imdbfast", "sklearn-logreg", "sklearn-mlp", "keras-vectorize")
NEEDS = {"sklearn-logreg": "sklearn", "sklearn-mlp": "sklearn"}
HELD = 5000


def run_imdbfast(d: dict, threads: int) -> dict:
    import imdbfast
    from imdbfast import callbacks, layers

    phases = {}
    t = time.perf_counter()
    tv = layers.TextVectorization(max_tokens=20000, ngrams=2, output_mode="multi_hot")
    tv.threads = threads
    tv.adapt(d["train"])
    phases["adapt_s"] = time.perf_counter() - t
    t = time.perf_counter()
    x, xv, xt = tv(d["train"]), tv(d["val"]), tv(d["test"])
    phases["vectorize_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m = imdbfast.Sequential([layers.Input((x.n_cols,)), layers.Dense(16, activation="relu"),
                             layers.Dropout(0.5), layers.Dense(1, activation="sigmoid")],
                            seed=0, threads=threads)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    best = callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    m.fit(x, d["y_train"], epochs=10, batch_size=32, verbose=0,
          validation_data=(xv, d["y_val"]), callbacks=[best])
    phases["train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _, acc = m.evaluate(xt, d["y_test"], verbose=0)
    phases["evaluate_s"] = time.perf_counter() - t
    return dict(phases=phases, test_accuracy=acc)


def _sklearn(d: dict, make_model) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    phases = {}
    t = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), max_features=20000)
    x = vec.fit_transform(d["train"])
    phases["adapt_s"] = time.perf_counter() - t  # (fit_transform: adapt and vectorise at once)
    t = time.perf_counter()
    xt = vec.transform(d["test"])
    phases["vectorize_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = make_model().fit(x, d["y_train"])
    phases["train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    acc = float((model.predict(xt) == d["y_test"]).mean())
    phases["evaluate_s"] = time.perf_counter() - t
    return dict(phases=phases, test_accuracy=acc)


def run_sklearn_logreg(d: dict, threads: int) -> dict:
    from sklearn.linear_model import LogisticRegression

    return _sklearn(d, lambda: LogisticRegression(max_iter=1000))


def run_sklearn_mlp(d: dict, threads: int) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # max_iter=10 on purpose
    return _sklearn(d, lambda: MLPClassifier((16,), max_iter=10, random_state=0))


def run_keras_vectorize(d: dict, threads: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    from keras import layers

    phases = {}
    t = time.perf_counter()
    tv = layers.TextVectorization(max_tokens=20000, ngrams=2, output_mode="multi_hot")
    tv.adapt(np.array(d["train"], dtype=object))
    phases["adapt_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for part in ("train", "val", "test"):
        tv(np.array(d[part], dtype=object))
    phases["vectorize_s"] = time.perf_counter() - t
    return dict(phases=phases, test_accuracy=float("nan"))


RUNNERS = {"imdbfast": run_imdbfast, "sklearn-logreg": run_sklearn_logreg,
           "sklearn-mlp": run_sklearn_mlp, "keras-vectorize": run_keras_vectorize}


def worker(name: str, threads: int, texts_path: str) -> None:
    _threads_env(threads)
    with open(texts_path, "rb") as f:
        d = pickle.load(f)
    result = RUNNERS[name](d, threads)
    result.update(framework=name, threads=threads, peak_rss_mb=_peak_mb())
    print("RESULT " + json.dumps(result))


def _median_run(rs: list[dict]) -> dict:
    """One framework's rounds as one result: each phase's median, the total's median (not the
    sum of the medians), every round's total kept."""
    import statistics

    r = dict(rs[-1])
    r["phases"] = {k: statistics.median(x["phases"][k] for x in rs) for k in rs[0]["phases"]}
    r["totals_s"] = [sum(x["phases"].values()) for x in rs]
    r["total_s"] = statistics.median(r["totals_s"])
    r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in rs)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--keras-python", default=sys.executable,
                    help="the Python that runs keras-vectorize (needs Keras 3 and TensorFlow)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (medians are reported)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--texts", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.threads, args.texts)
        return
    import importlib.util

    import numpy as np

    from imdbfast.datasets import imdb
    from imdbfast.datasets._sources import locate

    t = time.perf_counter()
    archive = locate("aclImdb_v1.tar.gz")  # (IMDBFAST_DATA, ~/.keras/datasets, the cache)
    (tr, y, _), (te, yt, _) = imdb.read_aclimdb_splits(archive)
    read_s = time.perf_counter() - t
    order = np.random.default_rng(0).permutation(len(tr))
    tr, y = [tr[i] for i in order], y[order]
    d = {"train": tr[HELD:], "y_train": y[HELD:], "val": tr[:HELD], "y_val": y[:HELD],
         "test": te, "y_test": yt}
    runs: dict[str, list[dict]] = {}
    names = args.frameworks.split(",")
    for name in names:
        if name not in RUNNERS:
            sys.exit(f"compare_text.py: unknown framework {name!r}; valid: {', '.join(FRAMEWORKS)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "texts.pkl")
        with open(path, "wb") as f:
            pickle.dump(d, f)
        skipped: set[str] = set()
        for _ in range(args.repeat):
            for name in names:
                exe = args.keras_python if name.startswith("keras") else sys.executable
                if name in skipped:
                    continue
                if exe == sys.executable and name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
                    print(f"# {name}: skipped ({NEEDS[name]} is not installed)", file=sys.stderr)
                    skipped.add(name)
                    continue
                out = subprocess.run([exe, __file__, "--worker", name, "--threads", str(args.threads),
                                      "--texts", path], capture_output=True, text=True)
                line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
                if out.returncode != 0 or line is None:
                    print(f"# {name}: failed:\n{out.stderr[-1500:]}", file=sys.stderr)
                    skipped.add(name)
                    continue
                runs.setdefault(name, []).append(json.loads(line[7:]))
    results = [_median_run(runs[name]) for name in names if name in runs]
    base = next((r for r in results if r["framework"] == "imdbfast"), None)
    for r in results:
        if base:
            r["total_vs_imdbfast"] = r["total_s"] / base["total_s"]
    if args.json:
        print(json.dumps({"read_s": read_s, "results": results}))
        return
    print(f"{'framework':<17}{'adapt':>8}{'vectorise':>10}{'train':>8}{'evaluate':>9}{'total':>8}"
          f"{'test acc':>9}{'peak RSS':>10}{'total x':>9}")
    for r in results:
        p = r["phases"]
        print(f"{r['framework']:<17}{p['adapt_s']:>7.2f}s{p['vectorize_s']:>9.2f}s"
              f"{p.get('train_s', 0):>7.2f}s{p.get('evaluate_s', 0):>8.3f}s{r['total_s']:>7.2f}s"
              f"{r['test_accuracy']:>9.4f}{r['peak_rss_mb']:>8.0f}MB"
              f"{r.get('total_vs_imdbfast', float('nan')):>8.1f}x")
    for r in results:
        print(f"# {r['framework']}: totals " + " ".join(f"{t:.2f}s" for t in r["totals_s"]))
    print(f"# medians of {args.repeat} rounds; {args.threads} threads; reading the archive "
          f"({read_s:.2f}s, imdbfast's reader) is "
          "shared and excluded; keras-vectorize: TextVectorization's adapt and calls only")


if __name__ == "__main__":
    main()
