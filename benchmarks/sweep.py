"""The book's "things to try" grid (108 models x 20 epochs, 15,000 training and 10,000
validation reviews) on each sweep engine, side by side in one run, rounds interleaved:

    python benchmarks/sweep.py [--rounds 2] [--engines local,local-2t,dask,ray]

local: 2 models at a time, 1 thread each (the default); local-2t: 1 model at a time on 2
threads; dask: a LocalCluster of 2 worker processes (1 thread each) on loopback; ray: a local Ray
with 2 CPUs. Each sweep runs in a fresh process, its cluster started before the timing. Needs IMDBFAST_DATA (or
../shared/data); the cluster engines need ``.[dask]`` / ``.[ray]``. Prints a markdown table of
medians, and checks that every engine's rows equal the first engine's bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def numbers(rows):
    return {r["config_key"]: {k: v for k, v in r.items() if k != "time_s"} for r in rows}


def load():
    from datautil import data_dir

    import imdbfast
    from imdbfast.datasets import imdb

    (x_train, y_train), (x_test, y_test) = imdb.load_data(path=str(data_dir() / "imdb.npz"),
                                                          num_words=10000)
    x, xt = imdbfast.multi_hot(x_train, 10000), imdbfast.multi_hot(x_test, 10000)
    y, yt = np.asarray(y_train, np.float32), np.asarray(y_test, np.float32)
    return (x.take(np.arange(10000, 25000)), y[10000:], x.take(np.arange(10000)), y[:10000], xt, yt)


def one(name: str, out: str) -> None:
    """One engine's sweep, in this process: the cluster started (untimed), then the grid."""
    from imdbfast import experiments

    data = load()
    if name == "local":
        kw = dict(engine="local", workers=2, threads=1)
    elif name == "local-2t":
        kw = dict(engine="local", workers=1, threads=2)
    elif name == "dask":
        import distributed

        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        kw = dict(engine="dask", cluster=distributed.Client(cluster), threads=1)
    elif name == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
        kw = dict(engine="ray", threads=1)
    else:
        raise SystemExit(f"--engines: unknown {name!r}")
    t0 = time.perf_counter()
    rows = experiments.run(experiments.things_to_try(), data, **kw)
    seconds = time.perf_counter() - t0
    with open(out, "w") as f:
        json.dump({"seconds": seconds, "rows": numbers(rows)}, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--engines", default="local,local-2t,dask,ray")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args.one, args.out)
    engines = args.engines.split(",")
    times = {name: [] for name in engines}
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run.json")
        for _ in range(args.rounds):
            for name in engines:  # a fresh process each: no engine's idle cluster beside another
                subprocess.run([sys.executable, __file__, "--one", name, "--out", out], check=True)
                with open(out) as f:
                    res = json.load(f)
                times[name].append(res["seconds"])
                first = first or res["rows"]
                assert res["rows"] == first, f"{name}: rows differ from {engines[0]}'s"
    print(f"| engine | median of {args.rounds} (s) | runs (s) | vs {engines[0]} |")
    print("|---|---|---|---|")
    base = statistics.median(times[engines[0]])
    for name in engines:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.1f} | {', '.join(f'{t:.1f}' for t in times[name])} | "
              f"{med / base:.2f} |")
    best = max(first.values(), key=lambda r: r["best_val_accuracy"])
    print(f"rows identical on every engine; best: {best['config_key']} "
          f"val {best['best_val_accuracy']:.4f} test {best['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
