"""The book's fit (4 epochs, batch 512, real data) on an idle machine and beside a busy process.

    python benchmarks/contention.py [--rounds 7] [--json out.json]

The busy process is a pure-Python loop started (and stopped) by this script, standing for
whatever else runs on a shared machine. Rounds interleave the four cases (idle/busy x default
threads/1 thread) so that a slow phase of the machine hits them all alike; the table gives
medians. Targets (docs/PERFORMANCE.md): beside the busy process the default thread count takes
at most 1.3x the 1-thread time; idle, it keeps the 2-thread speed-up (within 10 %).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402

import imdbfast  # noqa: E402
from imdbfast import layers  # noqa: E402


def busy():
    while True:
        pass


def book_fit(x, y, threads):
    model = imdbfast.Sequential([layers.Input((10000,)), layers.Dense(16, activation="relu"),
                                 layers.Dense(16, activation="relu"),
                                 layers.Dense(1, activation="sigmoid")], seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    t0 = time.perf_counter()
    model.fit(x, y, epochs=4, batch_size=512, verbose=0, threads=threads)
    return time.perf_counter() - t0, model.get_weights()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    from datautil import data_dir
    from imdbfast.datasets import imdb

    d = data_dir()
    if d is None:
        sys.exit("real IMDB data not found: set IMDBFAST_DATA to the folder holding imdb.npz")
    (x_train, y_train), _ = imdb.load_data(path=str(d / "imdb.npz"), num_words=10000)
    x = imdbfast.multi_hot(x_train, 10000)
    y = np.asarray(y_train, dtype=np.float32)
    book_fit(x, y, 0)  # warm up
    times = {(load, t): [] for load in ("idle", "busy") for t in ("default", "1")}
    reference = None
    ctx = mp.get_context("spawn")
    for _ in range(args.rounds):
        for load in ("idle", "busy"):
            proc = None
            if load == "busy":
                proc = ctx.Process(target=busy, daemon=True)
                proc.start()
                time.sleep(0.2)  # let it reach the scheduler's steady state
            try:
                for t in ("default", "1"):
                    dt, w = book_fit(x, y, 0 if t == "default" else 1)
                    times[(load, t)].append(dt)
                    if reference is None:
                        reference = w
                    assert all(np.array_equal(a, b) for a, b in zip(w, reference)), "bits differ"
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.join()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"book's fit, 4 epochs at batch 512, {imdbfast.get_num_threads()} default threads, "
          f"{args.rounds} interleaved rounds (medians)")
    print("| machine | default threads | 1 thread | default / 1 thread |")
    print("|---|---|---|---|")
    for load in ("idle", "busy"):
        a, b = med[(load, "default")], med[(load, "1")]
        print(f"| {load} | {a * 1e3:.0f} ms | {b * 1e3:.0f} ms | {a / b:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k[0]}/{k[1]}": v for k, v in times.items()}, f, indent=1)


if __name__ == "__main__":
    main()
