"""The book's whole workflow in a fresh process, for timing and peak memory:

    encode (multi-hot) -> fit 4 epochs at batch 512 -> evaluate -> predict

    python benchmarks/workflow.py [--threads N]     # prints one JSON line

Loading imdb.npz is timed separately (``load_s``) with the trusted test loader, numpy plus a
Python transform (~2 s); imdbfast's own fast loader is a separate issue. Peak RSS is the whole
process's, imports and data included.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    from datautil import data_dir, keras_load_data, synthetic_imdb

    import imdbfast

    t0 = time.perf_counter()
    d = data_dir()
    if d is not None:
        (tok, off, y), (tt, to, ty) = keras_load_data(d)
    else:
        (tok, off, y), (tt, to, ty) = synthetic_imdb(seed=0), synthetic_imdb(seed=1)
    import gc

    gc.collect()
    rss_loaded = current_rss_mb()
    t1 = time.perf_counter()
    x = imdbfast.multi_hot(SimpleNamespace(tokens=tok, offsets=off), 10000, threads=args.threads)
    xt = imdbfast.multi_hot(SimpleNamespace(tokens=tt, offsets=to), 10000, threads=args.threads)
    t2 = time.perf_counter()
    model = imdbfast.fit(x, y, epochs=4, batch_size=512, seed=0, verbose=0, threads=args.threads or None)
    t3 = time.perf_counter()
    loss, acc = model.evaluate(xt, ty, verbose=0)
    p = model.predict(xt, verbose=0)
    t4 = time.perf_counter()
    print(json.dumps({
        "data": "real" if d is not None else "synthetic",
        "load_s": t1 - t0, "encode_s": t2 - t1, "fit_s": t3 - t2, "evaluate_predict_s": t4 - t3,
        "workflow_s": t4 - t1, "test_accuracy": acc, "test_loss": loss,
        "predicted": int(p.shape[0]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_load_mb": rss_loaded, "rss_at_end_mb": current_rss_mb(),
    }))


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
