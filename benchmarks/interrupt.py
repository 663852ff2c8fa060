"""How long Ctrl-C takes to stop a wide model: Dense(1024) x 2 on 25,000 synthetic reviews.

    python benchmarks/interrupt.py [--repeats 3]

A thread sends SIGINT to the process while `fit` (batch 512 and 32) or `predict` runs; the
delay until KeyboardInterrupt reaches the caller is printed in milliseconds (docs/RELIABILITY.md).
Every compiled call does about imdbfast._loop.WORK_PER_CALL multiply-adds (at least one
training step), so the delay is at most one call's time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from datautil import run_until_interrupted, synthetic_imdb  # noqa: E402

import imdbfast  # noqa: E402
from imdbfast import layers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tok, off, y = synthetic_imdb(n=25000, seed=0)
    x = imdbfast.multi_hot(imdbfast.Sequences(tok, off), 10000)
    sent: dict = {}

    def interrupt(after: float, key: str) -> None:
        time.sleep(after)
        sent[key] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)

    m = imdbfast.Sequential([layers.Input((10000,)), layers.Dense(1024, activation="relu"),
                             layers.Dense(1024, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=0)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    delays: dict = {}
    for what, batch in (("fit, batch 512", 512), ("fit, batch 32", 32), ("predict", None)):
        delays[what] = []
        for rep in range(args.repeats):
            threading.Thread(target=interrupt, args=(1.0 + 0.37 * rep, what)).start()
            if run_until_interrupted(m, x, y, batch):
                delays[what].append(round((time.perf_counter() - sent[what]) * 1e3))
    print(json.dumps({"delay_ms": delays}))


if __name__ == "__main__":
    main()
