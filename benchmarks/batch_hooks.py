"""What per-batch callbacks cost: the book's model for one epoch on the real data (15,000
rows, as the book's partial_x_train), with no callback (chunks of batches per compiled call)
and with a callback that overrides on_train_batch_end (one compiled call per batch, Keras's
semantics), at batch sizes 512, 32 and 5. Also AUC as a compile metric (the rows' outputs
come back for it).

    python benchmarks/batch_hooks.py [--rounds 5] [--json out.json]

Rounds interleave the cases so that a slow phase of the machine hits them all alike; the table
gives medians and the ratio to the no-callback case at the same batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import imdbfast  # noqa: E402
from imdbfast import callbacks, layers  # noqa: E402


class EveryBatch(callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.last = logs["loss"]


def epoch_seconds(x, y, batch_size: int, case: str) -> float:
    m = imdbfast.Sequential([layers.Input((10000,)), layers.Dense(16, activation="relu"),
                             layers.Dense(16, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=0)
    m.compile("rmsprop", "binary_crossentropy", ["AUC"] if case == "auc" else ["accuracy"])
    cbs = [EveryBatch()] if case == "per-batch hook" else []
    start = time.perf_counter()
    m.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, callbacks=cbs)
    return time.perf_counter() - start


def main() -> None:
    from datautil import data_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    d = data_dir()
    if d is None:
        sys.exit("real IMDB data not found: set IMDBFAST_DATA")
    (xt, yt), _ = imdbfast.datasets.imdb.load_data(num_words=10000)
    x, y = imdbfast.multi_hot(xt[10000:], 10000), yt[10000:]
    cases = [(b, c) for b in (512, 32, 5) for c in ("chunks", "per-batch hook", "auc")]
    times: dict = {k: [] for k in cases}
    for _ in range(args.rounds):
        for b, c in cases:
            times[(b, c)].append(epoch_seconds(x, y, b, c))
    print(f"{'batch':>6} {'case':>16} {'median s':>10} {'vs chunks':>10}")
    rows = []
    for b, c in cases:
        med = statistics.median(times[(b, c)])
        ratio = med / statistics.median(times[(b, "chunks")])
        rows.append({"batch_size": b, "case": c, "median_s": med, "ratio": ratio})
        print(f"{b:>6} {c:>16} {med:>10.3f} {ratio:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
