"""The command line, run as a user would (a subprocess, outside the source tree), on a small
synthetic data set, and on the real data when present."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import data_dir


def run(args, cwd, env=None, stdin=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "imdbfast", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, input=stdin, timeout=300)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small imdb.npz + word index: word 3 ("good") marks positive reviews."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 2, n)
        x = np.empty(n, dtype=object)
        x[:] = [list(rng.integers(4, 60, size=rng.integers(5, 30))) + ([3] if t else [5]) for t in y]
        return x, y

    (xt, yt), (xv, yv) = split(600), split(300)
    np.savez(d / "imdb.npz", x_train=xt, y_train=yt, x_test=xv, y_test=yv)
    words = {f"w{i}": i for i in range(1, 60)}
    words.update({"good": 3, "bad": 5})
    (d / "imdb_word_index.json").write_text(json.dumps(words))
    return d


@pytest.fixture
def env(synthetic, tmp_path):
    return {"IMDBFAST_DATA": str(synthetic), "IMDBFAST_CACHE": str(tmp_path / "cache"),
            "IMDBFAST_OFFLINE": "1"}


def test_train_prints_progress_and_results(tmp_path, env):
    r = run(["train", "--num-words", "60", "--epochs", "3", "--batch-size", "64",
             "--validation", "100", "--seed", "0"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Epoch 1/3" and any("val_accuracy:" in l for l in lines)
    assert lines[-2].startswith("Test loss: ") and lines[-1].startswith("Time: load ")


def test_train_json_save_plot_and_predict(tmp_path, env):
    pytest.importorskip("matplotlib")
    model, png = tmp_path / "m.npz", tmp_path / "curves.png"
    r = run(["train", "--num-words", "60", "--epochs", "30", "--batch-size", "32", "--seed", "1",
             "--validation", "100", "--json", "--save", str(model), "--plot", str(png),
             "--optimizer", "adam", "--layers", "1", "--units", "8"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert sorted(out["history"]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(out["history"]["loss"]) == 30 and out["test_accuracy"] > 0.9
    assert set(out["times"]) == {"load_s", "encode_s", "train_s", "evaluate_s"}
    assert png.stat().st_size > 10000 and png.read_bytes()[:4] == b"\x89PNG"
    r = run(["predict", "--model", str(model), "--json", "w7 w9 good", "bad w7 w9"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)
    assert [p["label"] for p in preds] == [1, 0]
    r = run(["predict", "--model", str(model), "-"], tmp_path, env, stdin="good w8\nw8 bad\n")
    assert r.returncode == 0 and "positive" in r.stdout.splitlines()[0]


def test_experiments_grid(tmp_path, env):
    pytest.importorskip("matplotlib")
    png = tmp_path / "grid.png"
    r = run(["experiments", "--num-words", "60", "--epochs", "4", "--batch-size", "64",
             "--validation", "100", "--optimizers", "rmsprop,adam", "--depths", "1,2",
             "--units", "8", "--losses", "binary_crossentropy,mse", "--activations", "relu",
             "--plot", str(png), "--json"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = out["results"]
    assert len(rows) == 8
    assert [r["best_val_accuracy"] for r in rows] == sorted((r["best_val_accuracy"] for r in rows), reverse=True)
    assert all(1 <= r["best_epoch"] <= 4 and 0 < r["test_accuracy"] <= 1 for r in rows)
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = run(["experiments", "--num-words", "60", "--epochs", "2", "--validation", "100",
             "--optimizers", "sgd", "--depths", "1", "--units", "4", "--losses", "mse",
             "--activations", "tanh", "--top", "1"], tmp_path, env)
    assert r.returncode == 0 and "sgd 1x4 tanh mse" in r.stdout and "1 models" in r.stdout


def test_experiments_results_and_resume(tmp_path, env):
    """--results streams one JSON line a model; --resume FILE trains only what FILE lacks."""
    jsonl = tmp_path / "sweep.jsonl"
    base = ["experiments", "--num-words", "60", "--epochs", "2", "--validation", "100",
            "--depths", "1", "--units", "4", "--losses", "mse", "--activations", "relu", "--json"]
    r = run(base + ["--optimizers", "sgd", "--results", str(jsonl)], tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert len(jsonl.read_text().splitlines()) == 1 and r.stderr == ""  # no terminal: quiet
    r = run(base + ["--optimizers", "sgd,adam", "--resume", str(jsonl), "--verbose"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert "2/2 models" in r.stderr
    rows = [json.loads(s) for s in jsonl.read_text().splitlines()]
    assert sorted(x["optimizer"] for x in rows) == ["adam", "sgd"]
    assert len(json.loads(r.stdout)["results"]) == 2
    r = run(base + ["--optimizers", "sgd", "--results", str(jsonl)], tmp_path, env)
    assert r.returncode == 1 and "resume" in r.stderr


def test_experiments_on_a_dask_scheduler(tmp_path, env):
    """--engine dask --scheduler ADDRESS: the same rows as the local engine, numbers bit for bit."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed "
                                      "(pip install 'imdbfast[dask]')")
    base = ["experiments", "--num-words", "60", "--epochs", "2", "--validation", "100",
            "--depths", "1,2", "--units", "4", "--losses", "mse", "--activations", "relu",
            "--optimizers", "sgd,adam", "--json"]
    local = run(base, tmp_path, env)
    assert local.returncode == 0, local.stderr
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        r = run(base + ["--engine", "dask", "--scheduler", cluster.scheduler_address], tmp_path, env)
    assert r.returncode == 0, r.stderr

    def numbers(out):
        return {x["config_key"]: {k: v for k, v in x.items() if k != "time_s"}
                for x in json.loads(out)["results"]}

    assert numbers(r.stdout) == numbers(local.stdout) and len(numbers(r.stdout)) == 4


def test_info(tmp_path, env, synthetic):
    r = run(["info", "--json"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["data"]["imdb.npz"] == str(synthetic / "imdb.npz")
    assert info["build"]["version"] == info["version"]
    assert run(["info"], tmp_path, env).stdout.startswith("imdbfast ")


@pytest.mark.parametrize("args, code, message", [
    (["train", "--bogus"], 2, "unrecognized arguments"),
    ([], 2, "choose a command"),
    (["train", "--epochs", "x"], 2, "invalid int value"),
    (["train", "--save", "/no/such/folder/m.npz"], 1, "cannot write"),
    (["train", "--data", "/no/such/imdb.npz"], 1, "no such file"),
    (["train", "--num-words", "60", "--validation", "100000"], 1, "--validation"),
    (["experiments", "--optimizers", "nadam"], 1, "unknown ['nadam']"),
    (["experiments", "--num-words", "60", "--engine", "dask"], 1, "--scheduler: --engine dask needs"),
    (["experiments", "--num-words", "60", "--scheduler", "tcp://h:1"], 1, "--scheduler: needs --engine"),
    (["experiments", "--num-words", "60", "--engine", "ray", "--workers", "2"], 1, "--workers: applies"),
    (["experiments", "--engine", "spark"], 2, "invalid choice: 'spark'"),
    (["predict", "--model", "/no/such/model.npz", "text"], 1, "file not found"),
    (["train", "--num-words", "60", "--device", "cuda:99"], 1, "device='cuda:99': "),
    (["train", "--num-words", "60", "--device", "tpu"], 1, "device: unknown 'tpu'"),
    # checked before any work: numbers, the model file's kind, the figure's format and path
    (["train", "--text", "x", "--ngrams", "0"], 2, "--ngrams: expected an int >= 1, got 0"),
    (["train", "--num-words", "-3"], 2, "--num-words: expected an int >= 1, got -3"),
    (["experiments", "--top", "-1"], 2, "--top: expected an int >= 0, got -1"),
    (["experiments", "--workers", "0"], 2, "--workers: expected an int >= 1, got 0"),
    (["train", "--save", "legacy.h5"], 1, "legacy Keras H5 model files are not supported"),
    (["train", "--save", "w.weights.h5"], 1, "a .weights.h5 file holds weights only"),
    (["train", "--plot", "grid.xyz"], 1, "--plot: grid.xyz: the file name must end in one of"),
    (["experiments", "--plot", "curves"], 1, "--plot: curves: the file name must end in one of"),
    (["train", "--plot", "."], 1, "--plot: . is a folder"),
    (["predict", "--model", "m.npz", "caf\udce9"], 1, "predict: text 1 is not valid UTF-8"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, env, args, code, message):
    r = run(args, tmp_path, env)
    assert r.returncode == code
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(tmp_path, env):
    r = run(["predict", "--debug", "--model", "/no/such/model.npz", "text"], tmp_path, env)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_model_from_another_format_version(tmp_path, env):
    bad = tmp_path / "old.npz"
    np.savez(bad, config=np.array('{"format": "imdbfast-model", "version": 99}'))
    r = run(["predict", "--model", str(bad), "text"], tmp_path, env)
    assert r.returncode == 1 and "unsupported format" in r.stderr


@pytest.mark.realdata
def test_train_on_the_real_data(tmp_path):
    d = data_dir()
    if d is None:
        pytest.skip("real IMDB data not found: set IMDBFAST_DATA to the folder holding imdb.npz")
    r = run(["train", "--json", "--seed", "0"], tmp_path,
            {"IMDBFAST_DATA": str(d), "IMDBFAST_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["test_accuracy"] > 0.865 and len(out["history"]["loss"]) == 4


def write_acl(root, n=200, seed=0):
    """A synthetic aclImdb folder: "good"/"bad" words mark the labels."""
    rng = np.random.default_rng(seed)
    filler = [f"w{i}" for i in range(40)]
    for split in ("train", "test"):
        for label, sub, word in ((1, "pos", "good"), (0, "neg", "bad")):
            folder = root / "aclImdb" / split / sub
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                words = list(rng.choice(filler, size=20)) + [word, "not so " + word]
                rng.shuffle(words)
                (folder / f"{i}_{8 if label else 2}.txt").write_text(" ".join(words) + "!")
    return root


def test_train_text_road_times_each_phase_and_saves_a_model_that_reads_text(tmp_path, env):
    write_acl(tmp_path)
    model = tmp_path / "text.npz"
    r = run(["train", "--text", str(tmp_path), "--validation", "100", "--epochs", "5",
             "--max-tokens", "300", "--json", "--save", str(model), "--seed", "0"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["times"]) == {"read_s", "adapt_s", "vectorize_s", "train_s", "evaluate_s"}
    assert out["test_accuracy"] > 0.95 and len(out["history"]["loss"]) == 5
    r = run(["predict", "--model", str(model), "--json", "w1 good w2", "w3 bad w1"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert [p["label"] for p in json.loads(r.stdout)] == [1, 0]
    r = run(["train", "--text", str(tmp_path), "--output-mode", "tf_idf", "--ngrams", "1",
             "--validation", "100", "--epochs", "2", "--verbose", "0"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Test loss: ") and "tf_idf, ngrams=1" in r.stdout
    assert "Time: read " in r.stdout and "total " in r.stdout
    r = run(["train", "--text", str(tmp_path / "nowhere")], tmp_path, env)
    assert r.returncode == 1 and "no such file" in r.stderr


@pytest.mark.realdata
@pytest.mark.slow
def test_train_text_on_the_real_reviews_reaches_chapter_elevens_accuracy(tmp_path):
    d = data_dir()
    if d is None or not (d / "aclImdb_v1.tar.gz").exists():
        pytest.skip("the aclImdb archive was not found (IMDBFAST_DATA or ../shared/data)")
    accs = []
    for seed in range(5):
        r = run(["train", "--text", str(d / "aclImdb_v1.tar.gz"), "--json", "--seed", str(seed)],
                tmp_path)
        assert r.returncode == 0, r.stderr
        accs.append(json.loads(r.stdout)["test_accuracy"])
    # bigram multi-hot, Dense(16) + Dropout(0.5), the best of 10 epochs by validation loss:
    # 0.8973-0.9017 over seeds 0-4, mean 0.899 (docs/PERFORMANCE.md); #20's bar is a mean of
    # 0.895, and any one seed above 0.89
    assert np.mean(accs) >= 0.895 and min(accs) > 0.89, accs
