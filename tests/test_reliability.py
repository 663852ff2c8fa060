"""Hardening: leaks, Ctrl-C, concurrent use, durable files, hostile inputs, and property-based
agreement with the reference. docs/RELIABILITY.md summarises what is guaranteed."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from datautil import make_net
import imdbfast
from imdbfast import layers

import reference as ref
from conftest import synthetic_sequences

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def small_model(seed=0, dim=200):
    m = imdbfast.Sequential([layers.Input((dim,)), layers.Dense(8, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    return m


# AddressSanitizer (.ci/sanitize preloads it) keeps freed memory in a quarantine of up to 256 MB
# before reusing it: RSS grows ~240 MB over the first 1000 cycles of a fresh process and then
# stays flat, so there it measures how full the quarantine was when the test began (it depends
# on the tests run before), not leaks. The main CI run, without sanitizers, checks leaks.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's quarantine holds freed memory: RSS is no leak "
                                       "signal under ASan (the unsanitized run checks this)")
def test_no_leak_over_1000_build_fit_predict_cycles(rng):
    seqs = synthetic_sequences(rng, 200, 200, mean_len=20)
    y = rng.integers(0, 2, 200)
    x = imdbfast.multi_hot(seqs, 200)

    def cycle(i):
        m = small_model(i)
        m.fit(x, y, epochs=1, batch_size=32, verbose=0)
        m.predict(seqs, verbose=0)
        del m

    for i in range(100):  # warm up allocator pools, thread pools, caches
        cycle(i)
    before = rss_mb()
    for i in range(1000):
        cycle(i)
    growth = rss_mb() - before
    assert growth < 5.0, f"RSS grew by {growth:.2f} MB over 1000 cycles"


INTERRUPT_SCRIPT = r"""
import json, os, signal, sys, threading, time
import numpy as np
sys.path.insert(0, {tests!r})
from datautil import run_until_interrupted, synthetic_imdb
import imdbfast
from imdbfast import _loop, layers
tok, off, y = synthetic_imdb(n=25000, seed=0)
x = imdbfast.multi_hot(imdbfast.Sequences(tok, off), 10000)
rows = np.tile(np.arange(25000), 16)
x, y = x.take(rows), np.tile(y, 16)
out = {{}}
def interrupt(after, key):
    time.sleep(after)
    out[key + "_sent"] = time.perf_counter()
    out[key + "_steps_at_signal"] = m._net.iterations
    os.kill(os.getpid(), signal.SIGINT)
# a deep narrow model and a wide one (a step of Dense(1024) x 2 is ~1000 times the book's)
for name, units in (("narrow", [64] * 3), ("wide", [1024] * 2)):
    m = imdbfast.Sequential([layers.Input((10000,))] +
                            [layers.Dense(u, activation="relu") for u in units] +
                            [layers.Dense(1, activation="sigmoid")], seed=0)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    m.build()
    runs = (("fit", 512), ("fit_bs5", 5), ("predict", None)) if name == "narrow" else \
        (("fit", 32), ("predict", None))
    for run, batch in runs:
        what = name + "_" + run
        if batch:
            out[what + "_chunk_steps"] = max(1, min(8192, _loop.rows_per_call(m, x, train=True)) // batch)
        threading.Thread(target=interrupt, args=(0.3, what)).start()
        if not run_until_interrupted(m, x, y, batch):
            out[what] = "finished"
        else:
            out[what + "_delay_ms"] = (time.perf_counter() - out[what + "_sent"]) * 1e3
            out[what + "_steps_after_signal"] = m._net.iterations - out[what + "_steps_at_signal"]
        w = m.get_weights()
        out[what + "_weights_finite"] = bool(all(np.all(np.isfinite(a)) for a in w))
        p = m.predict(x.take(np.arange(100)), verbose=0)  # still usable
        out[what + "_usable"] = bool(p.shape == (100, 1) and np.all(np.isfinite(p)))
print(json.dumps(out))
"""


def test_ctrl_c_stops_fit_and_predict_after_a_bounded_amount_of_work(tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_SCRIPT.format(tests=os.path.dirname(__file__)))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # No wall-clock assertion (the delays are measured and recorded in docs/RELIABILITY.md);
    # the mechanism is asserted: work stops at the end of the compiled call in progress, which
    # does about WORK_PER_CALL multiply-adds whatever the layer sizes (at least one step).
    whats = ["narrow_fit", "narrow_fit_bs5", "narrow_predict", "wide_fit", "wide_predict"]
    for what in whats:
        assert f"{what}_delay_ms" in out, f"{what} was not interrupted: {out}"
        assert 0 <= out[f"{what}_steps_after_signal"] <= out.get(f"{what}_chunk_steps", 0), out
        assert out[f"{what}_weights_finite"] and out[f"{what}_usable"], out
    assert out["wide_fit_chunk_steps"] == 1  # a call of the wide model: one step of 32 rows
    print({k: round(v, 1) for k, v in out.items() if k.endswith("delay_ms")})


def test_inference_calls_share_whole_tiles_and_give_the_same_bits_for_any_thread_count(rng):
    # A wide model's predict/evaluate call holds a few tiles only (about WORK_PER_CALL
    # multiply-adds): each call must still hold whole tiles, at least MIN_TILES_PER_CALL, chosen
    # without the thread count (the chunks fix the order evaluate adds in).
    from imdbfast import _core, _loop

    dim = 2000
    x = imdbfast.multi_hot(synthetic_sequences(rng, 5000, dim, mean_len=150), dim)
    y = rng.integers(0, 2, 5000)
    m = imdbfast.Sequential([layers.Input((dim,)), layers.Dense(512, activation="relu"),
                             layers.Dense(512, activation="relu"),
                             layers.Dense(1, activation="sigmoid")], seed=3)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    chunk = _loop.rows_per_call(m, x)
    assert chunk % _core.INFERENCE_TILE == 0
    assert chunk >= _loop.MIN_TILES_PER_CALL * _core.INFERENCE_TILE
    assert chunk < x.n_rows  # several calls, so the test covers chunk boundaries
    class Huge:  # a model whose row is ~17 M multiply-adds: one tile a call, not eight
        _dims = staticmethod(lambda: [dim, 4096, 4096, 1])
    assert _loop.rows_per_call(Huge, x) == _core.INFERENCE_TILE
    preds = [m.predict(x, verbose=0, threads=t) for t in (1, 2, 3)]
    evals = [m.evaluate(x, y, verbose=0, threads=t) for t in (1, 2, 3)]
    for p, e in zip(preds[1:], evals[1:]):
        assert np.array_equal(p, preds[0]) and e == evals[0]


def test_two_models_trained_concurrently_equal_sequential(rng):
    seqs = synthetic_sequences(rng, 3000, 500, mean_len=60)
    y = rng.integers(0, 2, 3000)
    x = imdbfast.multi_hot(seqs, 500)

    def train(seed, out):
        m = small_model(seed, 500)
        m.fit(x, y, epochs=3, batch_size=256, verbose=0, threads=1)
        out[seed] = m.get_weights()

    sequential = {}
    train(1, sequential)
    train(2, sequential)
    concurrent = {}
    threads = [threading.Thread(target=train, args=(s, concurrent)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in (1, 2):
        for a, b in zip(sequential[s], concurrent[s]):
            np.testing.assert_array_equal(a, b)


def test_concurrent_predict_and_refused_concurrent_fit(rng):
    seqs = synthetic_sequences(rng, 20000, 500, mean_len=60)
    y = rng.integers(0, 2, 20000)
    x = imdbfast.multi_hot(seqs, 500)
    m = small_model(0, 500)
    m.fit(x, y, epochs=1, verbose=0)
    expected = m.predict(x, verbose=0)
    results = [None] * 4

    def predict(i):
        results[i] = m.predict(x, verbose=0)

    ts = [threading.Thread(target=predict, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)
    # A second fit of the same model while one runs is refused, and the first is unharmed.
    errors = []
    trainer = threading.Thread(target=lambda: m.fit(x, y, epochs=30, batch_size=64, verbose=0))
    trainer.start()
    time.sleep(0.05)
    try:
        m.fit(x, y, epochs=1, verbose=0)
    except RuntimeError as e:
        errors.append(str(e))
    trainer.join()
    assert errors and "already being trained" in errors[0]
    assert len(m.history.epoch) == 30


def test_interrupted_save_keeps_the_old_file(rng, tmp_path, monkeypatch):
    m = small_model(0)
    m.build()
    path = tmp_path / "m.npz"
    m.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        m.save(path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.npz"]


@pytest.mark.parametrize("name", ["m.npz", "m.keras", "m.weights.h5"])
def test_saves_follow_the_umask_keep_modes_and_write_through_symlinks(tmp_path, name):
    """As a plain open() would (and Keras does): a new file gets 0666 less the umask, an
    existing one keeps its mode, and a symlink's target is replaced, not the link."""
    if name != "m.npz":
        pytest.importorskip("h5py")
    m = small_model(0)
    m.build()
    save = m.save_weights if name.endswith(".weights.h5") else m.save
    old = os.umask(0o027)
    try:
        save(tmp_path / name)
        assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(0o640)
    finally:
        os.umask(old)
    os.chmod(tmp_path / name, 0o604)
    save(tmp_path / name)
    assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(0o604)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / name
    save(target)
    first = target.read_bytes()
    os.symlink(target, tmp_path / ("ln." + name))
    m.set_weights([w + 1 for w in m.get_weights()])
    save(tmp_path / ("ln." + name))
    assert os.path.islink(tmp_path / ("ln." + name)) and target.read_bytes() != first
    assert sorted(os.listdir(tmp_path / "real")) == [name]


def test_corrupt_model_file_is_refused(tmp_path):
    m = small_model(0)
    m.build()
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path) as f:
        arrays = {k: f[k].copy() for k in f.files}
    arrays["weight_0"][0, 0] += 1.0  # a flipped value: still a valid npz
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="checksum"):
        imdbfast.load_model(tmp_path / "bad.npz")
    raw = bytearray(path.read_bytes())
    import zipfile

    with zipfile.ZipFile(path) as z:  # a damaged byte inside the largest member's data
        info = max(z.infolist(), key=lambda i: i.compress_size)
    local = info.header_offset
    data = local + 30 + int.from_bytes(raw[local + 26:local + 28], "little") + \
        int.from_bytes(raw[local + 28:local + 30], "little")
    raw[data + info.compress_size // 2] ^= 0xFF
    (tmp_path / "damaged.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        imdbfast.load_model(tmp_path / "damaged.npz")


class Liar:
    """A sequence whose len() promises more than it holds."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        if i >= 3:
            raise IndexError(i)
        return [1, 2]


@pytest.mark.parametrize("x, exc, match", [
    (Liar(), ValueError, "len"),
    ([[1, 2], None], TypeError, "element 1"),
    ([[1, 2**40]], IndexError, "does not fit"),
    ([[1], [float("nan")]], TypeError, "integers"),
    (np.full((3, 200), np.inf), ValueError, "NaN or infinity"),
    (np.zeros((3, 200), dtype=complex), TypeError, "numeric"),
    (np.zeros((2, 3, 200)), ValueError, "2-D"),
    (np.zeros((0, 200)), ValueError, "no training rows"),
])
def test_hostile_inputs_are_refused(x, exc, match):
    m = small_model(0)
    m.build()
    before = m.get_weights()
    y = np.zeros(len(x) if hasattr(x, "__len__") else 5)
    with pytest.raises(exc, match=match):
        m.fit(x, y, verbose=0)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_huge_batch_size_and_read_only_inputs(rng):
    seqs = synthetic_sequences(rng, 100, 200)
    dense = imdbfast.multi_hot_dense(seqs, 200)
    dense.setflags(write=False)
    y = rng.integers(0, 2, 100).astype(np.float64)
    y.setflags(write=False)
    a, b = small_model(1), small_model(1)
    a.fit(dense[:, :], y, batch_size=2**62, epochs=2, verbose=0, shuffle=False)  # one batch
    b.fit(seqs, y, batch_size=100, epochs=2, verbose=0, shuffle=False)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    c = small_model(1)
    c.fit(np.asfortranarray(dense), y[::1], batch_size=100, epochs=2, verbose=0, shuffle=False)
    np.testing.assert_array_equal(c.get_weights()[0], b.get_weights()[0])  # non-contiguous: copied


ragged = st.lists(st.lists(st.integers(0, 39), max_size=12), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seqs=ragged)
def test_property_encode_matches_reference(seqs):
    np.testing.assert_array_equal(imdbfast.multi_hot(seqs, 40).to_dense(), ref.multi_hot(seqs, 40))


@settings(max_examples=40, deadline=None)
@given(seqs=ragged, seed=st.integers(0, 2**16), batch=st.integers(1, 30))
def test_property_fit_and_predict_match_reference(seqs, seed, batch):
    y = (np.arange(len(seqs)) % 2).astype(np.float64)
    m = imdbfast.Sequential([layers.Input((40,)), layers.Dense(4, activation="tanh"),
                             layers.Dense(1, activation="sigmoid")], seed=seed)
    m.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    m.build()
    model = ref.Model(m.get_weights(), ["tanh", "sigmoid"])
    h = m.fit(seqs, y, batch_size=batch, epochs=2, shuffle=False, verbose=0)
    x = ref.multi_hot(seqs, 40)
    for epoch in range(2):
        _, loss, acc = model.train_epoch(x, y.reshape(-1, 1), np.arange(len(seqs)), batch)
        assert h.history["loss"][epoch] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(m.predict(seqs, verbose=0), model.predict(x), rtol=1e-4, atol=1e-6)


def test_readers_never_break_a_fit_and_see_one_moment(rng):
    """predict, evaluate, get_weights and snapshots from other threads during a fit wait for a
    step boundary: the fit runs to the end, and every snapshot is the state after exactly its
    step count (replayed bit for bit on a fresh net)."""
    from imdbfast import _core

    n, D = 3000, 2000
    seqs = synthetic_sequences(rng, n, D, mean_len=60)
    x = imdbfast.multi_hot(seqs, D)
    y = rng.integers(0, 2, (n, 1)).astype(np.float32)
    weights = ref.init_weights(rng, [D, 16, 8, 1])
    acts = ["relu", "relu", "sigmoid"]

    def fresh():
        net = make_net(_core, [D, 16, 8, 1], acts, "bce_logits", "rmsprop", 1e-3)
        net.set_weights(weights)
        return net

    bs, nb, epochs = 64, -(-n // 64), 6
    net, stop, snaps, errors = fresh(), threading.Event(), [], []

    def train():
        try:
            for e in range(epochs):
                order = _core.shuffle_order(n, 3, e)
                for b0 in range(0, nb, 7):  # chunks of 7 steps, as fit runs them
                    net.train_batches(x, y, None, order, bs, b0, min(nb, b0 + 7), 2)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            stop.set()

    def read():
        while not stop.is_set():
            try:
                snaps.append(net.state())
                net.predict(x, 2)
                net.evaluate(x, y, None, 2)
                net.get_weights()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=train)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert net.iterations == epochs * nb
    assert snaps
    for weights_at, slots_at, synced_at, it in snaps[:: max(1, len(snaps) // 8)]:
        replay = fresh()
        for e in range(it // nb + 1):
            steps = min(nb, it - e * nb)
            if steps > 0:
                replay.train_batches(x, y, None, _core.shuffle_order(n, 3, e), bs, 0, steps, 1)
        assert replay.iterations == it
        for a, b in zip(replay.get_weights(), weights_at):
            np.testing.assert_array_equal(a, b)
        w, slots, synced, _ = replay.state()
        np.testing.assert_array_equal(synced, synced_at)
        for a, b in zip(slots, slots_at):
            for sa, sb in zip(a, b):
                np.testing.assert_array_equal(sa, sb)


def test_predict_and_save_during_fit_do_not_abort_it(rng, tmp_path):
    seqs = synthetic_sequences(rng, 4000, 500, mean_len=60)
    y = rng.integers(0, 2, 4000)
    x = imdbfast.multi_hot(seqs, 500)
    m = small_model(0, 500)
    m.fit(x, y, epochs=1, verbose=0)
    stop, errors, saved = threading.Event(), [], []

    def read(i):
        k = 0
        while not stop.is_set():
            try:
                m.predict(x, verbose=0)
                path = tmp_path / f"m{i}_{k}.npz"
                m.save(path)
                saved.append(path)
                k += 1
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return

    readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    for t in readers:
        t.start()
    try:
        m.fit(x, y, epochs=15, batch_size=64, verbose=0)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors
    assert len(m.history.epoch) == 15
    for path in saved[:: max(1, len(saved) // 5)]:
        loaded = imdbfast.load_model(path)  # checksummed: a torn file would be refused
        assert loaded._net.iterations % 1 == 0 and loaded._net.iterations >= 63
