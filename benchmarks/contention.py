"""The book's fit (4 epochs, batch 512, real data) on an idle machine and beside a busy process.

    python benchmarks/contention.py [--rounds 7] [--json out.json]

The busy process is a pure-Python loop started (and stopped) by this script, standing for
whatever else runs on a shared machine. Rounds interleave the four cases (idle/busy x default
threads/1 thread) so that a slow phase of the machine hits them all alike; the table gives
medians; each fit runs in a fresh process. Targets (docs/PERFORMANCE.md): beside the busy process the default thread count takes
at most 1.3x the 1-thread time; idle, it keeps the 2-thread speed-up (within 10 %).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
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


def measure(threads):
    """One fit in this process (after a warm-up), printed as JSON: time and a weights digest."""
    import hashlib

    from datautil import data_dir
    from imdbfast.datasets import imdb

    d = data_dir()
    if d is None:
        sys.exit("real IMDB data not found: set IMDBFAST_DATA to the folder holding imdb.npz")
    (x_train, y_train), _ = imdb.load_data(path=str(d / "imdb.npz"), num_words=10000)
    x = imdbfast.multi_hot(x_train, 10000)
    y = np.asarray(y_train, dtype=np.float32)
    book_fit(x, y, threads)  # warm up
    dt, w = book_fit(x, y, threads)
    digest = hashlib.sha256(b"".join(a.tobytes() for a in w)).hexdigest()
    print(json.dumps({"seconds": dt, "weights": digest}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    ap.add_argument("--one", choices=["default", "1"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return measure(None if args.one == "default" else 1)
    # Every measurement in a fresh process: what one process learnt about contention (it
    # remembers it for up to a second) must not leak from a busy case into an idle one.
    times = {(load, t): [] for load in ("idle", "busy") for t in ("default", "1")}
    digests = set()
    ctx = mp.get_context("spawn")
    for _ in range(args.rounds):
        for load in ("idle", "busy"):
            proc = None
            if load == "busy":
                proc = ctx.Process(target=busy, daemon=True)
                proc.start()
            try:
                for t in ("default", "1"):
                    out = subprocess.run([sys.executable, __file__, "--one", t], check=True,
                                         capture_output=True, text=True).stdout
                    r = json.loads(out.strip().splitlines()[-1])
                    times[(load, t)].append(r["seconds"])
                    digests.add(r["weights"])
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.join()
    assert len(digests) == 1, "the weights differ between cases"
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"book's fit, 4 epochs at batch 512, {imdbfast.get_num_threads()} default threads, "
          f"{args.rounds} interleaved rounds, a fresh process each (medians)")
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
