"""Interleaved A/B of two builds of imdbfast: the book's epoch (real data when IMDBFAST_DATA is
set, else the synthetic set), each round a fresh process per build, builds alternated, so both
see the same minutes of this noisy machine.

    python benchmarks/ab.py --a /path/to/site-dir-A --b "" --rounds 8 --threads 2

A site dir is put first on sys.path (empty: the installed imdbfast). Prints JSON: per build the
median epoch (ms) of each round, their median, and the ratio B / A.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
sys.path.insert(0, {site!r}) if {site!r} else None
sys.path.insert(0, {tests!r})
import numpy as np
import imdbfast
from imdbfast import layers
from datautil import data_dir, synthetic_imdb
d = data_dir()
if d is not None:
    (x, y), _ = imdbfast.datasets.imdb.load_data(path=str(d / "imdb.npz"), num_words=10000)
else:
    tok, off, y = synthetic_imdb(n=25000, seed=0)
    x = imdbfast.Sequences(tok, off)
xs = imdbfast.multi_hot(x, 10000)
y = np.asarray(y, dtype=np.float32)
m = imdbfast.Sequential([layers.Input((10000,)), layers.Dense(16, activation="relu"),
                         layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid")],
                        seed=0, threads={threads})
m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
times = []
class T(imdbfast.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t)
m.fit(xs, y, epochs={epochs} + 1, batch_size={batch}, verbose=0, callbacks=[T()])
print(json.dumps(sorted(times[1:])[len(times[1:]) // 2] * 1e3))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
    out: dict = {"A": [], "B": []}
    for r in range(args.rounds):
        for name in (("A", "B") if r % 2 == 0 else ("B", "A")):
            site = args.a if name == "A" else args.b
            code = CHILD.format(site=site, tests=tests, threads=args.threads, epochs=args.epochs,
                                batch=args.batch)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 cwd="/", check=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
            out[name].append(round(json.loads(res.stdout.strip().splitlines()[-1]), 2))
    med = {k: statistics.median(v) for k, v in out.items()}
    print(json.dumps({"rounds": out, "median_ms": med, "B_over_A": round(med["B"] / med["A"], 3),
                      "threads": args.threads, "batch": args.batch}))


if __name__ == "__main__":
    main()
