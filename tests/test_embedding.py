"""imdbfast objects inside other Python code: models, CSR matrices and Sequences pickle and
deep-copy exactly (the model's pickle is its saved file), and travel through process pools."""

import concurrent.futures
import copy
import io
import multiprocessing as mp
import pickle

import numpy as np
import pytest

import imdbfast
from imdbfast import layers

from conftest import synthetic_sequences

D = 300


def data(seed=0, n=400):
    rng = np.random.default_rng(seed)
    seqs = synthetic_sequences(rng, n, D, mean_len=25)
    y = np.array([int(sum(w % 2 for w in s) > len(s) / 2) for s in seqs])
    return imdbfast.multi_hot(seqs, D), y


def model(optimizer="rmsprop", seed=0):
    m = imdbfast.Sequential([layers.Input((D,)), layers.Dense(8, activation="relu"),
                             layers.Dense(4, activation="tanh"),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    m.compile(optimizer, "binary_crossentropy", ["accuracy"])
    return m


def same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def trained(optimizer="rmsprop"):
    x, y = data()
    m = model(optimizer)
    m.fit(x, y, epochs=2, batch_size=64, verbose=0, validation_split=0.25)
    m.text_encoding = {"num_words": D, "skip_top": 0, "start_char": 1, "oov_char": 2,
                       "index_from": 3}
    m.word_index = {"good": 1, "bad": 2}
    return m


COPIES = {"pickle": lambda m: pickle.loads(pickle.dumps(m)),
          "pickle protocol 5": lambda m: pickle.loads(pickle.dumps(m, protocol=5)),
          "deepcopy": copy.deepcopy}


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "sgd"])
def test_a_trained_model_copies_exactly_and_trains_on_with_the_same_bits(how, optimizer):
    x, y = data()
    m = trained(optimizer)
    c = COPIES[how](m)
    assert c is not m and c._net is not m._net
    assert same_weights(m, c)
    np.testing.assert_array_equal(c.predict(x, verbose=0), m.predict(x, verbose=0))
    assert c._net.iterations == m._net.iterations > 0
    assert c.history.history == m.history.history and c.history.epoch == m.history.epoch
    assert c.history.params == m.history.params and c.history.model is c
    assert c.text_encoding == m.text_encoding and c.word_index == m.word_index
    assert (c.name, c.seed, c.threads, c.device, c.metrics_names) == \
        (m.name, m.seed, m.threads, m.device, m.metrics_names)
    assert c.optimizer == m.optimizer
    for a in (m, c):  # same optimizer state: the same next steps
        a.fit(x, y, epochs=2, batch_size=32, verbose=0, seed=9)
    assert same_weights(m, c) and c._net.iterations == m._net.iterations
    # the copy is independent
    c.fit(x, y, epochs=1, verbose=0, seed=1)
    assert not same_weights(m, c)


@pytest.mark.parametrize("stage", ["unbuilt", "declared", "built", "compiled"])
def test_models_at_every_stage_copy(stage):
    m = imdbfast.Sequential([layers.Dense(5, activation="relu"), layers.Dense(1, "sigmoid")],
                            seed=3, threads=1, name="tiny")
    if stage in ("declared", "built", "compiled"):
        m = imdbfast.Sequential([layers.Input((7,)), layers.Dense(5, activation="relu"),
                                 layers.Dense(1, "sigmoid")], seed=3, threads=1, name="tiny")
    if stage in ("built", "compiled"):
        m.build()
    if stage == "compiled":
        m.compile("adam", "binary_crossentropy")
    c = pickle.loads(pickle.dumps(m))
    assert (c.built, c._input_dim, c.name, c.seed, c.threads) == \
        (m.built, m._input_dim, "tiny", 3, 1)
    assert [l.get_config() for l in c.layers] == [l.get_config() for l in m.layers]
    assert (c._compile_config is None) == (m._compile_config is None)
    if m.built:
        assert same_weights(m, c)
    x = imdbfast.multi_hot([[1, 2], [3, 6]] * 20, 7)
    for a in (m, c):  # both finish the same way
        if a._compile_config is None:
            a.compile("adam", "binary_crossentropy")
        a.fit(x, np.array([0, 1] * 20), epochs=2, verbose=0, seed=2)
    assert same_weights(m, c)


def test_the_pickle_holds_the_saved_file(tmp_path):
    m = trained()
    fn, (payload,) = m.__reduce__()
    path = tmp_path / "from_pickle.npz"
    path.write_bytes(payload)
    loaded = imdbfast.load_model(path)  # the documented format, nothing else
    assert same_weights(m, loaded) and loaded._net.iterations == m._net.iterations
    with np.load(io.BytesIO(payload), allow_pickle=False) as f:
        assert "checksum" in f.files and "weight_0" in f.files


def test_a_doctored_model_pickle_is_refused():
    m = trained()
    fn, (payload,) = m.__reduce__()
    bad = bytearray(payload)
    i = bad.find(b"weight_0")
    bad[i + 200] ^= 0xFF  # inside the member data
    with pytest.raises(ValueError):
        fn(bytes(bad))


def test_joblib_round_trip(tmp_path):
    joblib = pytest.importorskip("joblib")
    m = trained()
    joblib.dump(m, tmp_path / "m.joblib")
    assert same_weights(m, joblib.load(tmp_path / "m.joblib"))


def test_csr_and_sequences_pickle_as_arrays():
    rng = np.random.default_rng(0)
    seqs = synthetic_sequences(rng, 3000, 5000, mean_len=100)
    s = imdbfast.Sequences.from_lists(seqs, 5000)
    x = imdbfast.multi_hot(s, 5000)
    valued = imdbfast.CSR(x.indptr, x.indices, np.full(x.nnz, 0.5, np.float32), x.n_rows, x.n_cols)
    for obj in (x, valued, s):
        raw = pickle.dumps(obj, protocol=5)
        back = pickle.loads(raw)
        if isinstance(obj, imdbfast.CSR):
            assert (back.n_rows, back.n_cols, back.binary) == (obj.n_rows, obj.n_cols, obj.binary)
            for k in ("indptr", "indices"):
                assert np.array_equal(getattr(back, k), getattr(obj, k))
            assert (back.data is None) == (obj.data is None)
            n_bytes = obj.indptr.nbytes + obj.indices.nbytes + (0 if obj.binary else
                                                                obj.data.nbytes)
        else:
            assert back.equals(obj) and back.num_words == obj.num_words
            n_bytes = obj.tokens.nbytes + obj.offsets.nbytes
        # arrays, not Python lists (a list of ints pickles to ~2-5 bytes per int plus framing)
        assert len(raw) < n_bytes * 1.05 + 1000
        # out-of-band buffers work too (protocol 5)
        buffers = []
        data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        assert buffers and len(data) < 1000
        pickle.loads(data, buffers=buffers)


def test_a_doctored_csr_pickle_is_refused():
    x = imdbfast.multi_hot([[1, 2], [3]], 5)
    state = x.__getstate__()
    bad = (state[0], np.array([1, 9, 3], np.int32), None, 2, 5)  # column 9 of 5
    y = imdbfast.CSR.__new__(imdbfast.CSR)
    with pytest.raises(IndexError, match="outside"):
        y.__setstate__(bad)


# ---- process pools -----------------------------------------------------------------------------

def train_in_worker(seed):
    """Runs in a pool worker: a model trained there comes back pickled."""
    x, y = data()
    m = model(seed=seed)
    m.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return m


def predict_in_worker(m):
    x, _ = data()
    return m.predict(x, verbose=0), m._net.iterations


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_models_travel_through_process_pools(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    here = [train_in_worker(s) for s in (1, 2)]
    with mp.get_context(method).Pool(2) as pool:
        there = pool.map_async(train_in_worker, [1, 2]).get(timeout=240)
        # and a model sent to a worker predicts there what it predicts here
        back = pool.apply_async(predict_in_worker, (here[0],)).get(timeout=240)
    assert all(same_weights(a, b) for a, b in zip(here, there))
    x, _ = data()
    np.testing.assert_array_equal(back[0], here[0].predict(x, verbose=0))
    assert back[1] == here[0]._net.iterations


def test_models_travel_through_a_process_pool_executor():
    here = train_in_worker(4)
    ctx = mp.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        there = ex.submit(train_in_worker, 4).result(timeout=240)
    assert same_weights(here, there) and there._net.iterations == here._net.iterations
