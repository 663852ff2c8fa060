"""The book's whole workflow in a fresh process, for timing and peak memory:

    load_data(num_words=10000) -> multi-hot -> fit 4 epochs at batch 512 -> evaluate -> predict

    python benchmarks/workflow.py        # prints one JSON line; needs IMDBFAST_DATA (or ../shared)

Run it once first: the first load of an npz converts it into imdbfast's cache (~1.5 s). Peak RSS
is the whole process's, interpreter and imports included.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status. VmHWM is the peak RSS since
    exec (getrusage's ru_maxrss would include the memory of the process that forked us)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def current_rss_mb() -> float:
    return status_mb("VmRSS")


def main() -> None:
    from datautil import data_dir

    import imdbfast
    from imdbfast.datasets import imdb

    d = data_dir()
    if d is None:
        sys.exit("workflow.py needs the real data: set IMDBFAST_DATA")
    os.environ["IMDBFAST_DATA"] = str(d)
    rss_imported = current_rss_mb()
    t0 = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=10000)
    t1 = time.perf_counter()
    x = imdbfast.multi_hot(x_train, 10000)
    xt = imdbfast.multi_hot(x_test, 10000)
    t2 = time.perf_counter()
    model = imdbfast.fit(x, y_train, epochs=4, batch_size=512, seed=0, verbose=0)
    t3 = time.perf_counter()
    loss, acc = model.evaluate(xt, y_test, verbose=0)
    p = model.predict(xt, verbose=0)
    t4 = time.perf_counter()
    print(json.dumps({
        "load_s": t1 - t0, "encode_s": t2 - t1, "fit_s": t3 - t2, "evaluate_predict_s": t4 - t3,
        "workflow_s": t4 - t0, "test_accuracy": acc, "test_loss": loss, "predicted": int(p.shape[0]),
        "rss_after_imports_mb": rss_imported, "rss_at_end_mb": current_rss_mb(),
        "peak_rss_mb": status_mb("VmHWM"),
    }))


if __name__ == "__main__":
    main()
