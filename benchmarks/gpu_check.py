"""Everything a session with a lent GPU runs, in one call, offline: build, what the build and
device are, the CUDA tests (`pytest -m cuda`), the CUDA benchmarks, and a table against the
targets, written into an output folder.

    bash benchmarks/gpu_check.sh --out DIR [--data FOLDER] [--budget 480]
    python3 benchmarks/gpu_check.py --build --out DIR ...     # the same (the .sh calls this)
    python3 benchmarks/gpu_check.py --out DIR                 # imdbfast already importable

--build installs the checkout with `pip --no-build-isolation --no-deps` (the GPU machine has
no network) into a local prefix (a temporary folder), for sm_90 only
(--arch), simulator off, and runs everything against that install from outside the checkout.
--data is a folder holding imdb.npz (or the file), e.g. a copy carried in the tree
(`.data/imdb.npz`); IMDBFAST_DATA is used when it is not given. Each step has its own time
limit inside the overall budget, and a failed step does not stop the later ones.

DIR receives (at most 6 files): gpu_check.md (the table), gpu_check.json (everything, raw),
build.log, tests.log, bench.log, gpu_bench.json (pytest-benchmark's JSON). Exit status: 0
when every step that could run passed (without a GPU: the build and import, the device steps
reported as "no GPU: skipped"); 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # benchmark -> (label, target seconds)
    "test_cuda_epoch_batch512": ("epoch, batch 512", 1e-3),
    "test_cuda_epoch_batch512_unfused": ("epoch, batch 512, small layers unfused", None),
    "test_cuda_epoch_batch512_graph": ("epoch, batch 512, as a CUDA graph", None),
    "test_cuda_book_20_epochs": ("book's 20-epoch run", 30e-3),
    "test_cuda_predict": ("predict 25,000 reviews", 0.5e-3),
    "test_cuda_epoch_batch5": ("epoch, batch 5", None),
}
# Each step's own limit (seconds); all of them together stay within --budget.
LIMITS = {"build": 300, "info": 60, "tests": 240, "bench": 240}


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def limit(self, step: str) -> float:
        return max(0.0, min(LIMITS[step], self.end - time.monotonic()))


def run_step(cmd: list[str], log: Path, limit: float, env: dict, cwd: Path) -> dict:
    """cmd with its output in log, killed (its whole process group) after `limit` seconds."""
    t = time.monotonic()
    if limit <= 0:
        log.write_text("skipped: the overall budget is spent\n")
        return {"status": "skipped (budget spent)", "seconds": 0.0}
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            f.write(f"\n[gpu_check: killed after its limit of {limit:.0f} s]\n")
            return {"status": f"timed out ({limit:.0f} s)", "seconds": time.monotonic() - t}
    return {"status": "passed" if rc == 0 else f"failed (exit {rc})", "rc": rc,
            "seconds": time.monotonic() - t}


def data_folder(arg: str | None) -> str | None:
    d = arg or os.environ.get("IMDBFAST_DATA")
    if not d:
        return None
    p = Path(d).expanduser().resolve()
    if p.is_file():
        p = p.parent
    return str(p) if (p / "imdb.npz").is_file() else None


def tail(path: Path, n: int = 3) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return " / ".join(lines[-n:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the output folder (created)")
    ap.add_argument("--data", help="a folder holding imdb.npz (default: IMDBFAST_DATA)")
    ap.add_argument("--build", action="store_true", help="build and install into a local prefix first")
    ap.add_argument("--arch", default="90", help="CUDA architectures for --build (default 90: H100/H200)")
    ap.add_argument("--budget", type=float, default=480, help="seconds for all the steps (default 480)")
    args = ap.parse_args()
    budget = Budget(args.budget)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    data = data_folder(args.data)
    if data:
        env["IMDBFAST_DATA"] = data
    else:
        env.pop("IMDBFAST_DATA", None)
    where = args.data or os.environ.get("IMDBFAST_DATA")
    said = data or (f"{where} holds no imdb.npz: synthetic data" if where else "none (synthetic)")
    report: dict = {"date": str(datetime.date.today()), "data": said,
                    "steps": {}}
    work = Path(tempfile.mkdtemp(prefix="imdbfast-gpu-check-"))
    elsewhere = work / "run"  # the tests run from here: they import the install, not ./imdbfast
    elsewhere.mkdir()

    ok = True
    if args.build:
        prefix = work / "prefix"
        cmd = [py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
               "--target", str(prefix), str(ROOT), "-Ccmake.define.IMDBFAST_CUDA=ON",
               f"-Ccmake.define.IMDBFAST_CUDA_ARCHS={args.arch}", "-Ccmake.define.IMDBFAST_CUDA_SIM=OFF",
               f"-Cbuild-dir={work / 'build'}", "-Cbuild.verbose=true"]
        step = run_step(cmd, out / "build.log", budget.limit("build"), env, elsewhere)
        report["steps"]["build"] = step
        ok &= step["status"] == "passed"
        env["PYTHONPATH"] = os.pathsep.join([str(prefix)] + [p for p in [env.get("PYTHONPATH")] if p])
    info_file = work / "info.json"
    probe = ("import json, sys, imdbfast; i = imdbfast.build_info(); "
             "i['file'] = imdbfast.__file__; i['usable'] = imdbfast.cuda_available(); "
             f"open({str(info_file)!r}, 'w').write(json.dumps(i, default=str))")
    step = run_step([py, "-c", probe], work / "info.log", budget.limit("info"), env, elsewhere)
    report["steps"]["import"] = step
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    report["info"] = info
    ok &= step["status"] == "passed"
    gpu = bool(info.get("usable"))
    device = info["cuda_devices"][0]["name"] if info.get("cuda_devices") else None
    report["device"] = device
    raw = out / "gpu_bench.json"
    if gpu:
        tests = [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                 "-c", str(ROOT / "pyproject.toml"), str(ROOT / "tests")]
        report["steps"]["tests"] = run_step(tests, out / "tests.log", budget.limit("tests"), env, elsewhere)
        bench = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                 "-c", str(ROOT / "pyproject.toml"), str(ROOT / "benchmarks" / "bench_cuda.py"),
                 "--benchmark-only", f"--benchmark-json={raw}"]
        report["steps"]["bench"] = run_step(bench, out / "bench.log", budget.limit("bench"), env, elsewhere)
        ok &= all(report["steps"][s]["status"] == "passed" for s in ("tests", "bench"))
    else:
        why = info.get("cuda_reason") or "imdbfast did not import"
        for s in ("tests", "bench"):
            report["steps"][s] = {"status": f"no GPU: skipped ({why})", "seconds": 0.0}
    medians = {}
    if raw.exists():
        for b in json.loads(raw.read_text()).get("benchmarks", []):
            medians[b["name"]] = b["stats"]["median"]
    report["medians_s"] = medians

    lines = [f"# imdbfast GPU check, {report['date']}", "",
             f"- device: {device or 'none'} (usable: {gpu})",
             f"- build: CUDA architectures {info.get('cuda_architectures', '?')}, runtime "
             f"{info.get('cuda_runtime', '?')}, driver {info.get('cuda_driver', '?')}",
             f"- data: {report['data']}", "", "| step | status | seconds |", "|---|---|---|"]
    for name, s in report["steps"].items():
        lines.append(f"| {name} | {s['status']} | {s['seconds']:.1f} |")
    lines += ["", "| benchmark | median | target | |", "|---|---|---|---|"]
    for name, (label, target) in TARGETS.items():
        m = medians.get(name)
        mark = "" if m is None or target is None else ("met" if m <= target else "MISSED")
        lines.append(f"| {label} | {f'{m * 1e3:.3f} ms' if m is not None else '-'} | "
                     f"{f'{target * 1e3:.1f} ms' if target else '-'} | {mark} |")
    for name in ("build", "tests", "bench"):
        log = out / f"{name}.log"
        if log.exists() and report["steps"].get(name, {}).get("status") != "passed":
            lines += ["", f"{name}.log ends: {tail(log)}"]
    table = "\n".join(lines) + "\n"
    (out / "gpu_check.md").write_text(table)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(table)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
