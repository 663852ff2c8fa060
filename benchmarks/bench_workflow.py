"""The book's workflow end to end: load_data -> encode -> fit 4 epochs at batch 512 ->
evaluate -> predict (real data only).

Target (issue: Keras-compatible API; 2 cores): <= 0.3 s, excluding interpreter start-up and
imports, with peak RSS <= 200 MB. Also load_data alone (issue: datasets): <= 150 ms.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import imdbfast
from imdbfast.datasets import imdb

from datautil import data_dir


@pytest.fixture(scope="module")
def real():
    d = data_dir()
    if d is None:
        pytest.skip("the workflow benchmarks need the real data: set IMDBFAST_DATA")
    os.environ["IMDBFAST_DATA"] = str(d)
    imdb.load_data(num_words=10000)  # converts into the cache once, outside the timings
    return d


@pytest.mark.benchmark(group="load_data")
def test_load_data(benchmark, real):
    (x, y), (xt, yt) = benchmark(imdb.load_data, num_words=10000)
    assert len(x) == 25000 and x[100][:3] == [1, 13, 244]
    benchmark.extra_info["reviews_per_s"] = 50000 / benchmark.stats["median"]


@pytest.mark.benchmark(group="workflow")
def test_workflow(benchmark, real):
    def workflow():
        (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=10000)
        x, xt = imdbfast.multi_hot(x_train, 10000), imdbfast.multi_hot(x_test, 10000)
        model = imdbfast.fit(x, y_train, epochs=4, batch_size=512, seed=0, verbose=0)
        loss, acc = model.evaluate(xt, y_test, verbose=0)
        return acc, model.predict(xt, verbose=0)

    acc, p = benchmark.pedantic(workflow, rounds=7, warmup_rounds=1)
    assert p.shape == (25000, 1) and acc > 0.865
    benchmark.extra_info["test_accuracy"] = acc


@pytest.mark.benchmark(group="workflow")
def test_workflow_peak_memory(benchmark, real):
    script = Path(__file__).resolve().parent / "workflow.py"

    def run():
        out = subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["predicted"] == 25000
