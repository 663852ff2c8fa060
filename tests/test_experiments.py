"""Sweeps (imdbfast.experiments): grids, seeds that depend only on the sweep's seed and the
config, results streamed to a JSON-lines file, and resuming an interrupted sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest

import imdbfast
from imdbfast import experiments

from conftest import synthetic_sequences


@pytest.fixture(scope="module")
def sweep_data():
    rng = np.random.default_rng(7)
    x = imdbfast.multi_hot(synthetic_sequences(rng, 700, 300, mean_len=20, empty_every=50), 300)
    y = rng.integers(0, 2, (700, 1)).astype(np.float32)
    return (x.take(np.arange(200, 600)), y[200:600], x.take(np.arange(200)), y[:200],
            x.take(np.arange(600, 700)), y[600:])


GRID = {"optimizer": ["rmsprop", "adam"], "layers": [[8], [8, 4]], "epochs": [2],
        "batch_size": [64]}


def _weights_free(rows):
    return {r["config_key"]: {k: v for k, v in r.items() if k != "time_s"} for r in rows}


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
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        experiments.run(GRID, sweep_data, results=tmp_path / "none.jsonl", resume=True)


def test_bad_arguments(sweep_data):
    with pytest.raises(ValueError, match="engine: 'spark'"):
        experiments.run(GRID, sweep_data, engine="spark")
    with pytest.raises(ValueError, match="threads: expected an int >= 1"):
        experiments.run(GRID, sweep_data, threads=0)
    with pytest.raises(ValueError, match="workers: expected an int >= 1"):
        experiments.run(GRID, sweep_data, workers=0)
    with pytest.raises(ValueError, match="data: expected"):
        experiments.run(GRID, sweep_data[:3])


def test_progress_line(sweep_data, capsys):
    experiments.run({"epochs": [1], "layers": [[4], [8]]}, sweep_data, verbose=True)
    err = capsys.readouterr().err
    assert "2/2 models" in err and "best val_accuracy" in err and err.endswith("\n")
    experiments.run({"epochs": [1], "layers": [[4]]}, sweep_data)  # not a terminal: silent
    assert capsys.readouterr().err == ""
