"""Everything a session with a lent GPU runs, in one call: what the build and device are, the
CUDA test cases (`pytest -m cuda`), the CUDA benchmarks, and a short table against the targets.

    python benchmarks/gpu_check.py [--out DIR]      # after `pip install .` on the GPU machine
    bash benchmarks/gpu_check.sh [--out DIR]        # builds first (no network needed if the
                                                    # build requirements are installed)

Writes DIR/gpu_check.json (info, test outcome, benchmark medians) when --out is given; exits
non-zero if the tests fail or there is no usable GPU. Record the table in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # benchmark -> (label, target seconds)
    "test_cuda_epoch_batch512": ("epoch, batch 512", 1e-3),
    "test_cuda_book_20_epochs": ("book's 20-epoch run", 30e-3),
    "test_cuda_predict": ("predict 25,000 reviews", 0.5e-3),
    "test_cuda_epoch_batch5": ("epoch, batch 5", None),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for gpu_check.json and the raw benchmark JSON")
    args = ap.parse_args()
    import imdbfast

    info = imdbfast.build_info()
    print(json.dumps({k: v for k, v in info.items() if k.startswith("cuda") or k == "version"}, indent=1))
    if not imdbfast.cuda_available():
        print("gpu_check: no usable GPU here:", info.get("cuda_reason"), file=sys.stderr)
        return 2
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                            str(ROOT / "tests")], cwd=ROOT, env=env)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "gpu_bench.json"
    bench = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(ROOT / "benchmarks" / "bench_cuda.py"), "--benchmark-only",
                            f"--benchmark-json={raw}"], cwd=ROOT, env=env)
    medians = {}
    if raw.exists():
        for b in json.loads(raw.read_text())["benchmarks"]:
            medians[b["name"]] = b["stats"]["median"]
    device = info["cuda_devices"][0]["name"] if info.get("cuda_devices") else "?"
    print(f"\nimdbfast {imdbfast.__version__} on {device}, {datetime.date.today()}")
    print(f"CUDA tests: {'passed' if tests.returncode == 0 else 'FAILED'}")
    print(f"{'benchmark':28} {'median':>12} {'target':>10}")
    for name, (label, target) in TARGETS.items():
        m = medians.get(name)
        got = f"{m * 1e3:9.3f} ms" if m is not None else "   (none)"
        tgt = f"{target * 1e3:7.1f} ms" if target else "        -"
        mark = "" if m is None or target is None else ("  met" if m <= target else "  MISSED")
        print(f"{label:28} {got:>12} {tgt:>10}{mark}")
    if args.out:
        (out / "gpu_check.json").write_text(json.dumps(
            {"date": str(datetime.date.today()), "device": device, "info": info,
             "tests_passed": tests.returncode == 0, "bench_returncode": bench.returncode,
             "medians_s": medians}, indent=1, default=str))
    return 0 if tests.returncode == 0 and bench.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
