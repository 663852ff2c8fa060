"""The book's workflow end to end (encode -> fit 4 epochs at batch 512 -> evaluate -> predict).

Target (issue: Keras-compatible API; 2 cores, real data): <= 0.3 s, excluding interpreter
start-up, imports and loading (a separate issue), with peak RSS <= 200 MB.
"""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import imdbfast


@pytest.mark.benchmark(group="workflow")
def test_workflow(benchmark, data):
    def workflow():
        x = imdbfast.multi_hot(SimpleNamespace(tokens=data.tokens, offsets=data.offsets), 10000)
        xt = imdbfast.multi_hot(SimpleNamespace(tokens=data.t_tokens, offsets=data.t_offsets), 10000)
        model = imdbfast.fit(x, data.y, epochs=4, batch_size=512, seed=0, verbose=0)
        loss, acc = model.evaluate(xt, data.t_y, verbose=0)
        return acc, model.predict(xt, verbose=0)

    acc, p = benchmark.pedantic(workflow, rounds=7, warmup_rounds=1)
    assert p.shape == (data.xt.n_rows, 1)
    if "real" in data.source:
        assert acc > 0.865
    benchmark.extra_info["test_accuracy"] = acc


@pytest.mark.benchmark(group="workflow")
def test_workflow_peak_memory(benchmark):
    script = Path(__file__).resolve().parent / "workflow.py"

    def run():
        out = subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["predicted"] == 25000
