"""imdbfast inside other people's programs: forked workers and busy machines.

The fork tests run in a fresh interpreter (pytest's own process is not forked): the parent uses
2 threads first (encoding, fit, predict), which is what leaves an OpenMP runtime without workers
in a child; every child must then train and predict on 2 threads, with the parent's bits, within
a timeout instead of hanging.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import core_switches

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# ThreadSanitizer stops a child that starts threads after a multi-threaded fork (.ci/tsan).
no_fork_under_tsan = pytest.mark.skipif("libtsan" in os.environ.get("LD_PRELOAD", ""),
                                        reason="ThreadSanitizer forbids threads after fork")

COMMON = r"""
import io, json, multiprocessing as mp, os, signal, sys
import numpy as np
sys.path.insert(0, {tests!r})
from datautil import synthetic_sequences
import imdbfast
from imdbfast import layers

rng = np.random.default_rng(0)
seqs = synthetic_sequences(rng, 3000, 2000, mean_len=60)
y = rng.integers(0, 2, 3000).astype(np.float32)

def job(seed):
    # ~45 words a row: batches of 512 and a predict of 3000 rows run on 2 threads
    x = imdbfast.multi_hot(seqs, 2000, threads=2)
    m = imdbfast.Sequential([layers.Input((2000,)), layers.Dense(16, activation="relu"),
                             layers.Dense(8, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    m.fit(x, y, epochs=2, batch_size=512, verbose=0, threads=2)
    p = m.predict(x, verbose=0, threads=2)
    buf = io.BytesIO()
    np.savez(buf, p=p, *m.get_weights())
    return buf.getvalue()

def same(a, b):
    fa, fb = np.load(io.BytesIO(a)), np.load(io.BytesIO(b))
    return sorted(fa.files) == sorted(fb.files) and all(
        np.array_equal(fa[k], fb[k]) for k in fa.files)

parent = {{s: job(s) for s in (1, 2)}}  # the parent has used its threads
"""

FORK_JOB = r"""
def fork_job(seed):
    # job(seed) in a child made by os.fork(); returns (its bytes, its wait status)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)  # a hang ends as a signal, not a stuck test
        data = job(seed)
        os.write(w, len(data).to_bytes(8, "little"))
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        n = int.from_bytes(f.read(8) or bytes(8), "little")
        data = f.read(n)
    return data, os.waitpid(pid, 0)[1]
"""

OS_FORK = COMMON + FORK_JOB + r"""
child, status = fork_job(1)
print(json.dumps({{"status": status, "same": bool(child) and same(child, parent[1])}}))
"""

FORK_POOL = COMMON + FORK_JOB + r"""
with mp.get_context("fork").Pool(2) as pool:
    got = pool.map_async(job, [1, 2]).get(timeout=60)
    # a second generation: a worker that forks again (os.fork: pool workers are daemons)
    deep, status = pool.apply_async(fork_job, (2,)).get(timeout=90)
print(json.dumps({{"same": [same(g, parent[s]) for g, s in zip(got, (1, 2))],
                  "grandchild": status == 0 and bool(deep) and same(deep, parent[2])}}))
"""


def run_script(tmp_path, source, timeout):
    script = tmp_path / "fork.py"
    script.write_text(source.format(tests=os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@no_fork_under_tsan
def test_os_fork_child_trains_and_predicts_with_the_parents_bits(tmp_path):
    out = run_script(tmp_path, OS_FORK, timeout=180)
    assert out["status"] == 0, f"child ended with wait status {out['status']} (a hang is SIGALRM)"
    assert out["same"]


@no_fork_under_tsan
def test_fork_pool_workers_and_their_children_train_with_the_parents_bits(tmp_path):
    out = run_script(tmp_path, FORK_POOL, timeout=300)
    assert out["same"] == [True, True]
    assert out["grandchild"]


# ---- the default thread count ------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and 2 CPUs")
def test_default_threads_follow_the_cpu_affinity():
    import imdbfast

    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert imdbfast.get_num_threads() == 1
        assert imdbfast.build_info()["available_cpus"] == 1
    finally:
        os.sched_setaffinity(0, before)
    assert imdbfast.get_num_threads() == min(len(before), imdbfast._core.available_cpus())


@pytest.mark.skipif("OMP_NUM_THREADS" in os.environ, reason="OMP_NUM_THREADS set for this run")
def test_omp_num_threads_set_after_import_changes_nothing(monkeypatch):
    """libgomp reads OMP_NUM_THREADS once, at load: a program that sets it later (Dask's
    LocalCluster does, in its own process) must not make the default stop following the CPUs."""
    import imdbfast

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert imdbfast.get_num_threads() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert imdbfast.get_num_threads() == min(len(before), imdbfast._core.available_cpus())


def test_omp_num_threads_is_respected():
    code = "import imdbfast; print(imdbfast.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd="/", timeout=60)
    assert r.stdout.strip() == "3", r.stderr


def _tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.mark.parametrize("proc, files, want", [
    # cgroup v2: the tightest quota from the process's cgroup up to the root, rounded up
    ("0::/a/b\n", {"cpu.max": "max 100000\n", "a/cpu.max": "150000 100000\n",
                   "a/b/cpu.max": "max 100000\n"}, 2),
    ("0::/a/b\n", {"a/cpu.max": "400000 100000\n", "a/b/cpu.max": "50000 100000\n"}, 1),
    ("0::/\n", {"cpu.max": "200000 100000\n"}, 2),          # a container: its cgroup is "/"
    ("0::/a\n", {"a/cpu.max": "max 100000\n"}, 0),          # no limit
    ("0::/a\n", {}, 0),                                     # nothing to read
    ("0::/a\n", {"a/cpu.max": "garbage\n"}, 0),
    # cgroup v1: the cpu controller's quota and period
    ("5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n",
     {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "100000\n",
      "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, 1),
    ("4:cpu,cpuacct:/docker/x\n", {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "-1\n",
                                   "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, 0),
])
def test_cgroup_cpu_quota(tmp_path, proc, files, want):
    testing = core_switches()
    _tree(tmp_path, files)
    assert testing.cgroup_cpu_limit(proc, str(tmp_path)) == want


# ---- a busy machine ------------------------------------------------------------------------------

BUSY_FIT = r"""
import json, multiprocessing as mp, sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from datautil import synthetic_sequences
import imdbfast
from imdbfast import layers

def busy():
    while True:
        pass

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    x = imdbfast.multi_hot(synthetic_sequences(rng, 6000, 2000, mean_len=60), 2000)
    y = rng.integers(0, 2, 6000).astype(np.float32)
    def fit(threads):
        m = imdbfast.Sequential([layers.Input((2000,)), layers.Dense(16, activation="relu"),
                                 layers.Dense(1, activation="sigmoid")], seed=0)
        m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
        t0 = time.perf_counter()
        m.fit(x, y, epochs=4, batch_size=512, verbose=0, threads=threads)
        return time.perf_counter() - t0, m.get_weights()
    alone = fit(1)
    hogs = [mp.get_context("spawn").Process(target=busy, daemon=True) for _ in range(2)]
    for h in hogs:
        h.start()
    time.sleep(0.3)
    try:
        shared = fit(None)  # the default thread count, beside busy processes
    finally:
        for h in hogs:
            h.terminate()
    print(json.dumps({{"same": all(np.array_equal(a, b) for a, b in zip(alone[1], shared[1])),
                      "alone_s": alone[0], "shared_s": shared[0]}}))
"""


def test_fit_beside_busy_processes_finishes_with_the_same_bits(tmp_path):
    # Times are printed, never asserted (benchmarks/contention.py measures them): the test is
    # that a crowded machine neither hangs a fit nor changes its bits.
    out = run_script(tmp_path, BUSY_FIT, timeout=300)
    print(f"fit alone {out['alone_s']:.3f} s, beside busy processes {out['shared_s']:.3f} s")
    assert out["same"]


# ---- the system refuses threads -----------------------------------------------------------------

REFUSED_THREADS = r"""
import json, os, resource, sys, warnings
import numpy as np
import imdbfast
from imdbfast import layers

rng = np.random.default_rng(0)
seqs = [rng.integers(1, 2000, rng.integers(1, 120)).tolist() for _ in range(3000)]
y = rng.integers(0, 2, 3000).astype(np.float32)
from imdbfast import _testing
_testing.split_all_work(True)  # every call below asks for its 2 threads

def job(threads):
    x = imdbfast.multi_hot(seqs, 2000, threads=threads)
    m = imdbfast.Sequential([layers.Input((2000,)), layers.Dense(16, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=3)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    m.fit(x, y, epochs=2, batch_size=256, verbose=0, threads=threads)
    return m.get_weights() + [m.predict(x, verbose=0, threads=threads), x.to_dense()]

# the limit comes before any call that would start a worker thread
if {limit!r} == "address_space":
    # OMP_STACKSIZE=1G (set by the test): a worker's stack cannot fit in what is left
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
    resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + (768 << 20), resource.RLIM_INFINITY))
else:
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))  # no new thread for this user
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = job(2)
    again = job(2)
said = [str(w.message) for w in caught if "refused to start more threads" in str(w.message)]
want = job(1)
print(json.dumps({{"said": said,
                  "same": all(np.array_equal(a, b) for a, b in zip(want, got + again))}}))
"""

UNDER_SANITIZER = any(s in os.environ.get("LD_PRELOAD", "") for s in ("libasan", "libtsan"))


@pytest.mark.skipif(UNDER_SANITIZER, reason="sanitizers reserve terabytes of address space and "
                                            "start threads of their own")
@pytest.mark.parametrize("limit", ["address_space", "process_count"])
def test_refused_threads_fall_back_to_fewer_with_one_warning(limit):
    # libgomp itself ends the process when pthread_create fails; imdbfast checks first.
    import shutil

    core_switches()  # (the script uses its switches)
    cmd, env = [sys.executable, "-c", REFUSED_THREADS.format(limit=limit)], dict(os.environ)
    if limit == "address_space":
        env["OMP_STACKSIZE"] = "1G"
    elif os.geteuid() == 0:
        # root is not held to RLIMIT_NPROC: run as nobody
        if not shutil.which("setpriv"):
            pytest.skip("root ignores RLIMIT_NPROC and setpriv is missing to drop it")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
        probe = subprocess.run(cmd[:-2] + ["-c", "import imdbfast"], cwd="/", capture_output=True,
                               env=env, timeout=60)
        if probe.returncode != 0:
            pytest.skip("user nobody cannot import this installation of imdbfast")
    r = subprocess.run(cmd, cwd="/", capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["same"]
    assert len(out["said"]) == 1 and "running on 1 of the 2 threads" in out["said"][0]


# ---- out of memory -------------------------------------------------------------------------------

OUT_OF_MEMORY = r"""
import json, resource
import numpy as np
import imdbfast
from imdbfast import layers

rng = np.random.default_rng(0)
x = imdbfast.multi_hot([rng.integers(0, 8, 5).tolist() for _ in range(300)], 8)
y = rng.integers(0, 2, 300).astype(np.float32)
from imdbfast import _testing
_testing.split_all_work(True)

def model():
    # a hidden layer of 2**18 units: a tile of rows needs far more scratch than the weights
    m = imdbfast.Sequential([layers.Input((8,)), layers.Dense(1 << 18, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=0)
    m.compile("rmsprop", "binary_crossentropy")
    m.build(8)
    return m

want = model().predict(x, verbose=0, threads=2)
m = model()
before = m.get_weights()
vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (24 << 20), resource.RLIM_INFINITY))
said = {{}}
for name, call in [("predict", lambda: m.predict(x, verbose=0, threads=2)),
                   ("evaluate", lambda: m.evaluate(x, y, verbose=0, threads=2)),
                   ("fit", lambda: m.fit(x, y, epochs=1, batch_size=512, verbose=0, threads=2))]:
    try:
        call()
        said[name] = "ran"
    except MemoryError as e:  # the compiled core's message, not NumPy's
        said[name] = "MemoryError" if "compiled core" in str(e) else repr(e)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(json.dumps({{"said": said,
                  "untouched": all(np.array_equal(a, b) for a, b in zip(before, m.get_weights())),
                  "iterations": int(m._net.iterations),
                  "predicts": bool(np.array_equal(m.predict(x, verbose=0, threads=2), want))}}))
"""


@pytest.mark.skipif(UNDER_SANITIZER, reason="sanitizers reserve terabytes of address space")
def test_out_of_memory_inside_threads_is_a_memory_error():
    # The scratch is allocated by the region's threads: a bad_alloc there must reach Python as
    # MemoryError (not std::terminate), and the model must work again once memory is back.
    core_switches()  # (the script uses its switches)
    r = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY.format()], cwd="/",
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["said"] == {"predict": "MemoryError", "evaluate": "MemoryError",
                           "fit": "MemoryError"}
    assert out["untouched"] and out["iterations"] == 0 and out["predicts"]
