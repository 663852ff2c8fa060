"""Sweeps (imdbfast.experiments): grids, seeds that depend only on the sweep's seed and the
config, results streamed to a JSON-lines file, and resuming an interrupted sweep."""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import pytest

import imdbfast
from imdbfast import experiments

from conftest import synthetic_sequences


def make_sweep_data():
    rng = np.random.default_rng(7)
    x = imdbfast.multi_hot(synthetic_sequences(rng, 700, 300, mean_len=20, empty_every=50), 300)
    y = rng.integers(0, 2, (700, 1)).astype(np.float32)
    return (x.take(np.arange(200, 600)), y[200:600], x.take(np.arange(200)), y[:200],
            x.take(np.arange(600, 700)), y[600:])


@pytest.fixture(scope="module")
def sweep_data():
    return make_sweep_data()


GRID = {"optimizer": ["rmsprop", "adam"], "layers": [[8], [8, 4]], "epochs": [2],
        "batch_size": [64]}


def _weights_free(rows):
    return {r["config_key"]: {k: v for k, v in r.items() if k not in ("time_s", "model")}
            for r in rows}


def test_expand_grids():
    configs = experiments.expand(GRID)
    assert len(configs) == 4 and configs[0] == {"optimizer": "rmsprop", "layers": [8], "epochs": 2,
                                                "batch_size": 64}
    assert experiments.expand([{"layers": 16}]) == [{"layers": [16]}]
    with pytest.raises(ValueError, match="unknown keys \\['units_'\\]"):
        experiments.expand({"units_": [1]})
    with pytest.raises(TypeError, match="'optimizer' must be a list"):
        experiments.expand({"optimizer": "adam"})
    with pytest.raises(ValueError, match="more than once"):
        experiments.expand([{"epochs": 1}, {"epochs": 1}])
    with pytest.raises(ValueError, match="config 0: layers: expected an int >= 1"):
        experiments.expand({"layers": [[0]]})
    with pytest.raises(ValueError, match="no configuration"):
        experiments.expand([])
    # every value is checked before anything trains, named with its config
    for bad, err, msg in [({"optimizer": "nadam"}, ValueError, "config 0: .*nadam"),
                          ({"activation": "gelu"}, ValueError, "config 0: activation: unknown"),
                          ({"loss": "hinge"}, ValueError, "config 0: .*hinge"),
                          ({"learning_rate": -1.0}, ValueError, "config 0: .*learning_rate"),
                          ({"epochs": 0}, ValueError, "config 0: epochs: expected an int >= 1"),
                          ({"batch_size": 2.5}, ValueError, "config 0: batch_size"),
                          ({"shuffle": "yes"}, ValueError, "config 0: shuffle"),
                          ({"seed": -1}, ValueError, "config 0: seed")]:
        with pytest.raises(err, match=msg):
            experiments.expand([bad])


def test_things_to_try_and_longest_first(sweep_data):
    grid = experiments.things_to_try()
    assert len(grid) == 108 and len({experiments.config_key(c) for c in grid}) == 108
    assert grid[0] == {"optimizer": "rmsprop", "layers": [16], "loss": "binary_crossentropy",
                       "activation": "relu", "epochs": 20, "batch_size": 512}
    cost = experiments.expected_cost
    assert cost({"layers": [64], "epochs": 20}) > cost({"layers": [16, 16, 16], "epochs": 20}) > \
        cost({"layers": [16], "epochs": 20}) > cost({"layers": [16], "epochs": 4})
    # one worker trains them in that order, the longest first (the others cannot wait on it)
    seen = []
    experiments.run({"layers": [[4], [16, 16], [8]], "epochs": [1]}, sweep_data, workers=1,
                    on_result=seen.append)
    assert [r["layers"] for r in seen] == [[16, 16], [8], [4]]


def test_results_do_not_depend_on_workers_or_order(sweep_data):
    """Seeds come from (sweep seed, config): one worker or two, in grid order or reversed, the
    same rows bit for bit (metrics are computed from the same weights)."""
    a = experiments.run(GRID, sweep_data, workers=1, verbose=False)
    b = experiments.run(list(reversed(experiments.expand(GRID))), sweep_data, workers=2,
                        verbose=False)
    assert len(a) == 4 and _weights_free(a) == _weights_free(b)
    assert [r["best_val_accuracy"] for r in a] == sorted((r["best_val_accuracy"] for r in a),
                                                         reverse=True)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and len(r["val_accuracy"]) == 2 for r in a)
    other = experiments.run(GRID, sweep_data, workers=2, seed=1, verbose=False)
    assert _weights_free(other) != _weights_free(a)  # another sweep seed, other models
    # a model returned is the one measured
    one = experiments.run([experiments.expand(GRID)[0]], sweep_data, return_models=True,
                          verbose=False)[0]
    assert one["model"].evaluate(sweep_data[4], sweep_data[5], verbose=0)[1] == one["test_accuracy"]


def test_results_file_and_resume(sweep_data, tmp_path):
    path = tmp_path / "sweep.jsonl"
    first = experiments.run({**GRID, "optimizer": ["rmsprop"]}, sweep_data, results=path,
                            verbose=False)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and {json.loads(s)["config_key"] for s in lines} == {
        r["config_key"] for r in first}
    with pytest.raises(FileExistsError, match="resume=True"):
        experiments.run(GRID, sweep_data, results=path, verbose=False)
    # interrupted while writing a row: the cut line is dropped and its config trained again
    path.write_text(path.read_text() + lines[0][:25])
    seen = []
    full = experiments.run(GRID, sweep_data, results=path, resume=True, verbose=False,
                           on_result=seen.append)
    assert len(seen) == 2 and all(r["optimizer"] == "adam" for r in seen)  # only the new ones
    rows = experiments.read_results(path)
    assert len(rows) == 4 and len({r["config_key"] for r in rows}) == 4
    assert _weights_free(full) == _weights_free(experiments.run(GRID, sweep_data, verbose=False))
    # the engine's arguments are checked before the file is touched, even with nothing to train
    before = path.read_text()
    with pytest.raises(ValueError, match="cluster: engine='local'"):
        experiments.run(GRID, sweep_data, results=path, resume=True, cluster="tcp://h:1")
    assert path.read_text() == before
    with pytest.raises(ValueError, match="another sweep seed than seed=1"):
        experiments.run(GRID, sweep_data, results=path, resume=True, seed=1)
    # other data (here: one validation label flipped) must not be resumed into this sweep
    y_val = np.array(sweep_data[3], copy=True)
    y_val[0] = 1 - y_val[0]
    other = sweep_data[:3] + (y_val,) + tuple(sweep_data[4:])
    with pytest.raises(ValueError, match="was recorded on other data"):
        experiments.run(GRID, other, results=path, resume=True)
    assert path.read_text() == before
    assert experiments.data_key(other) != experiments.data_key(sweep_data) == rows[0]["data_key"]
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        experiments.run(GRID, sweep_data, results=tmp_path / "none.jsonl", resume=True)
    with pytest.raises(IsADirectoryError, match="results: .* is a folder"):
        experiments.run(GRID, sweep_data, results=tmp_path, resume=True)


def test_bad_arguments(sweep_data):
    with pytest.raises(ValueError, match="engine: 'spark'"):
        experiments.run(GRID, sweep_data, engine="spark")
    with pytest.raises(ValueError, match="threads: expected an int >= 1"):
        experiments.run(GRID, sweep_data, threads=0)
    with pytest.raises(ValueError, match="workers: expected an int >= 1"):
        experiments.run(GRID, sweep_data, workers=0)
    with pytest.raises(ValueError, match="data: expected"):
        experiments.run(GRID, sweep_data[:3])


@pytest.mark.parametrize("engine, module, extra", [("dask", "distributed", "imdbfast[dask]"),
                                                   ("ray", "ray", "imdbfast[ray]")])
def test_a_missing_engine_names_its_extra(sweep_data, monkeypatch, engine, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=re.escape(f"pip install '{extra}'")):
        experiments.run(GRID, sweep_data, engine=engine)


def test_progress_line(sweep_data, capsys):
    experiments.run({"epochs": [1], "layers": [[4], [8]]}, sweep_data, verbose=True)
    err = capsys.readouterr().err
    assert "2/2 models" in err and "best val_accuracy" in err and err.endswith("\n")
    experiments.run({"epochs": [1], "layers": [[4]]}, sweep_data)  # not a terminal: silent
    assert capsys.readouterr().err == ""


def test_every_config_is_checked_as_a_network_before_any_trains(sweep_data, tmp_path):
    """An activation or a loss valid alone but not in this network fails before the first
    model, with nothing recorded; numpy ints are ints; no layers is a logistic regression."""
    bad = [[{"layers": [4], "epochs": 1}, {"layers": [4], "activation": "softmax", "epochs": 1}],
           [{"layers": [4], "epochs": 1}, {"loss": "categorical_crossentropy", "epochs": 1}]]
    for grid, match in zip(bad, (r"softmax is supported on the output layer only",
                                 r"loss: categorical_crossentropy needs a softmax output")):
        path = tmp_path / "r.jsonl"
        with pytest.raises(ValueError, match=match):
            experiments.run(grid, sweep_data, workers=1, results=path)
        assert not path.exists()
    rows = experiments.run({"epochs": [np.int64(1)], "layers": [[], [np.int32(3)]],
                            "batch_size": [np.int64(64)]}, sweep_data, workers=1)
    assert sorted(len(r["layers"]) for r in rows) == [0, 1]
    assert all(type(r["epochs"]) is int and type(r["batch_size"]) is int for r in rows)


def test_progress_eta_weighs_the_models_left_by_their_cost(monkeypatch, capsys):
    """Longest first: after the big model's 30 s, the two small ones left are estimated at
    their share of the expected cost, not at the big one's pace; resumed rows count for best."""
    big, small = {"layers": [64, 64], "epochs": 20}, {"layers": [16], "epochs": 20}
    small2 = dict(small, seed=1)
    cost = experiments.expected_cost
    clock = iter([100.0, 130.0, 131.0])
    monkeypatch.setattr(experiments.time, "perf_counter", lambda: next(clock))
    resumed = [{"config_key": "x", "best_val_accuracy": 0.9}]
    p = experiments._Progress(4, resumed, [big, small, small2], verbose=True)
    p.update({"config_key": experiments.config_key(big), "best_val_accuracy": 0.8})
    line = capsys.readouterr().err
    eta = 30.0 * 2 * cost(small) / cost(big)
    assert f"2/4 models, 30.0s elapsed, ETA {eta:.0f}s, best val_accuracy 0.9000" in line, line
    assert eta < 60 / 3  # 15 s; the old estimate (30 s a model, 2 left) said 60 s
    p.update({"config_key": experiments.config_key(small), "best_val_accuracy": 0.95})
    line = capsys.readouterr().err
    eta = 31.0 * cost(small) / (cost(big) + cost(small))
    assert f"3/4 models, 31.0s elapsed, ETA {eta:.0f}s, best val_accuracy 0.9500" in line, line


# Engines on real clusters: a Dask LocalCluster of 2 worker processes on loopback, and a local
# Ray with 2 CPUs. Each must give the local engine's rows bit for bit (the seeds depend only on
# the sweep's seed and the config), and a worker killed mid-task must be retried by the engine
# with its model recorded once.

KILL_GRID = {"optimizer": ["rmsprop", "adam", "sgd"], "layers": [[8], [8, 4]], "epochs": [150],
             "batch_size": [8]}  # ~0.2 s a model: long enough to be killed mid-way


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed "
                                      "(pip install 'imdbfast[dask]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_dask_engine_matches_local(sweep_data, dask_client):
    local = experiments.run(GRID, sweep_data, verbose=False)
    by_client = experiments.run(GRID, sweep_data, engine="dask", cluster=dask_client)
    assert _weights_free(by_client) == _weights_free(local)
    # by address, a client of its own (closed after); models come back pickled
    one = experiments.run(GRID, sweep_data, engine="dask", cluster=dask_client.scheduler.address,
                          return_models=True)
    assert _weights_free(one) == _weights_free(local)
    assert one[0]["model"].evaluate(sweep_data[4], sweep_data[5], verbose=0)[1] == \
        one[0]["test_accuracy"]
    with pytest.raises(ValueError, match="workers: applies to engine='local'"):
        experiments.run(GRID, sweep_data, engine="dask", cluster=dask_client, workers=2)
    with pytest.raises(TypeError, match="cluster: expected a distributed.Client"):
        experiments.run(GRID, sweep_data, engine="dask", cluster=3)
    with pytest.raises(ValueError, match="cluster: engine='local'"):
        experiments.run(GRID, sweep_data, cluster=dask_client)


def test_dask_worker_killed_mid_task(sweep_data, dask_client):
    """At the first result, the worker that is training a model is killed (SIGKILL): the
    scheduler reruns its tasks on a worker alive (the nanny restarts the dead one), and every
    model is recorded once, with the local engine's numbers."""
    import signal

    pids = dask_client.run(os.getpid)
    killed = []

    def kill_a_busy_worker(row):
        if killed:
            return
        busy = [addr for addr, keys in dask_client.processing().items() if keys]
        assert busy, "no worker was training when the first model finished"
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append(busy[0])

    rows = experiments.run(KILL_GRID, sweep_data, engine="dask", cluster=dask_client,
                           on_result=kill_a_busy_worker)
    assert killed and len(rows) == 6 and len({r["config_key"] for r in rows}) == 6
    assert _weights_free(rows) == _weights_free(experiments.run(KILL_GRID, sweep_data))
    dask_client.wait_for_workers(2, timeout=60)  # the nanny brought it back


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray not installed (pip install 'imdbfast[ray]')")
    if ray.is_initialized():
        pytest.skip("Ray already initialised in this process")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_matches_local(sweep_data, local_ray):
    local = experiments.run(GRID, sweep_data, verbose=False)
    rows = experiments.run(GRID, sweep_data, engine="ray", return_models=True)
    assert _weights_free(rows) == _weights_free(local)
    assert rows[0]["model"].evaluate(sweep_data[4], sweep_data[5], verbose=0)[1] == \
        rows[0]["test_accuracy"]
    # two threads a model: Ray reserves 2 CPUs a task, the rows do not change
    assert _weights_free(experiments.run(GRID, sweep_data, engine="ray", threads=2)) == \
        _weights_free(experiments.run(GRID, sweep_data, threads=2))
    with pytest.raises(ValueError, match="already initialised"):
        experiments.run(GRID, sweep_data, engine="ray", cluster="auto")
    with pytest.raises(TypeError, match="cluster: expected a Ray address"):
        experiments.run(GRID, sweep_data, engine="ray", cluster=3)
    if not local_ray.cluster_resources().get("GPU", 0):  # a GPU model must not wait forever
        with pytest.raises(ValueError, match="the Ray cluster has no GPU"):
            experiments.run(GRID, sweep_data, engine="ray", device="cuda")


def test_ray_worker_killed_mid_task(sweep_data, local_ray):
    """At the first result, a Ray worker process training a model (its title is
    ray::train_model) is killed: Ray retries the task, every model is recorded once."""
    psutil = pytest.importorskip("psutil")
    import signal

    killed = []

    def kill_a_busy_worker(row):
        if killed:
            return
        for p in psutil.process_iter(["cmdline"]):
            if p.info["cmdline"] and p.info["cmdline"][0].startswith("ray::train_model"):
                os.kill(p.pid, signal.SIGKILL)
                killed.append(p.pid)
                return

    rows = experiments.run(KILL_GRID, sweep_data, engine="ray", on_result=kill_a_busy_worker)
    assert killed, "no Ray worker was training when the first model finished"
    assert len(rows) == 6 and len({r["config_key"] for r in rows}) == 6
    assert _weights_free(rows) == _weights_free(experiments.run(KILL_GRID, sweep_data))


def test_resume_after_the_sweep_is_killed(tmp_path):
    """A sweep killed (SIGKILL) while it writes its results continues where it stopped: the
    recorded models are not trained again and the rows equal an uninterrupted sweep's."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "sweep.jsonl"
    script = f"""
import sys, numpy as np, imdbfast
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_experiments import make_sweep_data
from imdbfast import experiments
grid = {{"layers": [[4], [8], [16], [8, 4], [16, 8], [32]], "epochs": [40], "batch_size": [16]}}
experiments.run(grid, make_sweep_data(), workers=1, results={str(path)!r})
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recorded = experiments.read_results(path)
    assert 2 <= len(recorded) < 6, f"killed after {len(recorded)} of 6 models"
    grid = {"layers": [[4], [8], [16], [8, 4], [16, 8], [32]], "epochs": [40], "batch_size": [16]}
    seen = []
    rows = experiments.run(grid, make_sweep_data(), results=path, resume=True,
                           on_result=seen.append)
    assert len(seen) == 6 - len(recorded)
    assert {r["config_key"] for r in seen}.isdisjoint(r["config_key"] for r in recorded)
    assert _weights_free(rows) == _weights_free(experiments.run(grid, make_sweep_data()))
