"""The compiled training loop, inference and evaluation against the float64 Keras-math model,
on every backend (the `kernels` fixture: CPU core, CUDA kernels on the simulator and on a GPU).

Trajectories are compared within reference.TRAJECTORY (justified there); determinism checks are
bitwise.
"""

import numpy as np
import pytest

import imdbfast
from imdbfast import _core

import reference as ref
from conftest import assert_close, synthetic_sequences
from datautil import make_net

def make(rng, n, D, mean_len=40):
    seqs = synthetic_sequences(rng, n, D, mean_len=mean_len, empty_every=50)
    x = imdbfast.multi_hot(seqs, D)
    y = rng.integers(0, 2, (n, 1)).astype(np.float32)
    return x, y, ref.multi_hot(seqs, D)


def net_for(weights, acts, loss="bce_logits", optimizer="rmsprop", module=_core, **cfg):
    """A Net of `module` (_core, or a CUDA module from the `kernels` fixture) with `weights`."""
    dims = [weights[0].shape[0]] + [w.shape[1] for w in weights[0::2]]
    net = make_net(module, dims, acts, loss, optimizer, **cfg)
    net.set_weights(weights)
    return net


CONFIGS = [
    # (acts, units, loss, optimizer, cfg, batch_size, n_rows, epochs)
    (["relu", "relu", "sigmoid"], 16, "bce_logits", "rmsprop", {}, 512, 1600, 3),   # the book
    (["relu", "relu", "sigmoid"], 16, "bce_logits", "rmsprop", {}, 5, 60, 1),       # batch 5
    (["tanh", "tanh", "tanh", "sigmoid"], 32, "mse", "adam", {}, 64, 300, 2),
    (["relu", "sigmoid"], 64, "bce_logits", "sgd", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}, 50, 230, 3),
    (["relu", "relu", "sigmoid"], 16, "bce_logits", "rmsprop", {"centered": True, "momentum": 0.5}, 100, 450, 3),
    (["relu", "sigmoid"], 16, "bce_probs", "rmsprop", {}, 128, 520, 3),
]


@pytest.mark.parametrize("acts, units, loss, opt, cfg, bs, n, epochs", CONFIGS,
                         ids=[f"{c[3]}-{c[2]}-bs{c[5]}" for c in CONFIGS])
def test_trajectory_matches_reference(kernels, rng, threads, acts, units, loss, opt, cfg, bs, n, epochs):
    D = 1000
    x, y, dense = make(rng, n, D)
    dims = [D] + [units] * (len(acts) - 1) + [1]
    weights = ref.init_weights(rng, dims)
    sw = rng.uniform(0.5, 1.5, n).astype(np.float32) if opt == "adam" else None
    net = net_for(weights, acts, loss, opt, module=kernels,
                  **dict(cfg, learning_rate=cfg.get("learning_rate", 1e-3)))
    model = ref.Model(weights, acts, loss, opt, **dict(cfg, learning_rate=cfg.get("learning_rate", 1e-3)))
    n_batches = -(-n // bs)
    steps = 0
    for epoch in range(epochs):
        order = _core.shuffle_order(n, 7, epoch)
        loss_sum, correct, rows, per_batch, per_acc = net.train_batches(
            x, y, sw, order, bs, 0, n_batches, threads, True)
        ref_batches, ref_loss, ref_acc = model.train_epoch(dense, y.astype(np.float64), order, bs,
                                                           None if sw is None else sw.astype(np.float64))
        assert rows == n
        assert_close(per_batch, [b[0] for b in ref_batches], **ref.TRAJECTORY, what=f"epoch {epoch} batch losses")
        np.testing.assert_allclose(per_acc, [b[1] for b in ref_batches], atol=1e-12)
        assert loss_sum / rows == pytest.approx(ref_loss, rel=1e-5)
        assert correct / rows == pytest.approx(ref_acc, abs=1e-12)
        steps += n_batches
    assert steps >= 10
    assert net.iterations == steps
    for got, want in zip(net.get_weights(), model.params):
        # after a dozen steps the float32 weights are within ~1e-6 of the float64 ones
        assert_close(got, want, rtol=1e-4, atol=1e-5, what="weights")


def test_predict_and_evaluate_match_reference(kernels, rng, threads):
    D = 300
    x, y, dense = make(rng, 700, D)
    weights = ref.init_weights(rng, [D, 16, 16, 1])
    net = net_for(weights, ["relu", "relu", "sigmoid"], module=kernels)
    model = ref.Model(weights, ["relu", "relu", "sigmoid"])
    p = net.predict(x, threads)
    assert p.dtype == np.float32 and p.shape == (700, 1)
    assert_close(p, model.predict(dense), rtol=1e-5, atol=1e-7, what="predict")
    loss_sum, correct, rows = net.evaluate(x, y, None, threads)
    want_loss, want_acc = model.evaluate(dense, y.astype(np.float64))
    assert rows == 700
    assert loss_sum / rows == pytest.approx(want_loss, rel=1e-5)
    assert correct / rows == pytest.approx(want_acc, abs=1e-12)


def epoch_weights(x, y, weights, threads, seed, optimizer="rmsprop", epochs=2):
    net = net_for(weights, ["relu", "relu", "sigmoid"], optimizer=optimizer)
    n = x.n_rows
    for e in range(epochs):
        net.train_batches(x, y, None, _core.shuffle_order(n, seed, e), 512, 0, -(-n // 512), threads)
    return net.get_weights(), net.get_slots()


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_bitwise_identical_for_any_thread_count(rng, optimizer):
    # ~45 distinct words a row: a batch of 512 has enough non-zeros to run on several threads.
    x, y, _ = make(rng, 3000, 2000, mean_len=60)
    weights = ref.init_weights(rng, [2000, 16, 16, 1])
    w1, s1 = epoch_weights(x, y, weights, 1, 3, optimizer)
    for threads in (2, 3, 4, 5):  # 3: lanes shared 1/1/2; 5: a thread with none
        wt, st = epoch_weights(x, y, weights, threads, 3, optimizer)
        for a, b in zip(w1, wt):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(s1, st):
            for sa, sb in zip(a, b):
                np.testing.assert_array_equal(sa, sb)
    again, _ = epoch_weights(x, y, weights, 2, 3, optimizer)
    for a, b in zip(w1, again):
        np.testing.assert_array_equal(a, b)
    other, _ = epoch_weights(x, y, weights, 2, 4, optimizer)
    assert not np.array_equal(w1[0], other[0])  # the seed matters


def test_lanes_follow_the_batch_size(rng):
    """The lanes (CSR.lane_bounds) depend on the data and the batch size, and are cached on the
    matrix: training at another batch size in between must not leave stale lanes behind."""
    x, y, _ = make(rng, 2000, 1500, mean_len=40)
    weights = ref.init_weights(rng, [1500, 16, 16, 1])
    b512, b64 = x.lane_bounds(512), x.lane_bounds(64)
    for b in (b512, b64):
        assert b[0] == 0 and b[-1] == 1500 and len(b) == 5 and np.all(np.diff(b) >= 0)
    assert not np.array_equal(b512, b64)  # rarer words touch more rows at 512: other splits

    def train(xm, bs):
        net = net_for(weights, ["relu", "relu", "sigmoid"])
        net.train_batches(xm, y, None, _core.shuffle_order(2000, 1, 0), bs, 0, -(-2000 // bs), 2)
        return net.get_weights()

    fresh = train(x.take(np.arange(2000, dtype=np.int64)), 64)  # a new matrix: new cache
    train(x, 512)
    for a, b in zip(train(x, 64), fresh):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_vocabulary_beyond_uint16_trains_the_same(rng, threads):
    # Up to 65,536 columns the training loop reads a uint16 copy of the column indices; beyond,
    # the int32 indices themselves. The same reviews in a wider vocabulary must train the same.
    seqs = synthetic_sequences(rng, 1500, 2000, mean_len=60, empty_every=50)
    y = rng.integers(0, 2, (1500, 1)).astype(np.float32)
    narrow_x, wide_x = imdbfast.multi_hot(seqs, 2000), imdbfast.multi_hot(seqs, 70000)
    weights = ref.init_weights(rng, [2000, 16, 16, 1])
    wide = [np.concatenate([weights[0], ref.init_weights(rng, [68000, 16])[0]])] + weights[1:]
    got, _ = epoch_weights(narrow_x, y, weights, threads, 5)
    want, _ = epoch_weights(wide_x, y, wide, threads, 5)
    np.testing.assert_array_equal(got[0], want[0][:2000])
    np.testing.assert_array_equal(want[0][2000:], wide[0][2000:])  # never touched
    for a, b in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(a, b)


def test_chunked_epoch_equals_whole_epoch(kernels, rng):
    # Python may run an epoch in chunks of batches (progress, Ctrl-C): same math.
    x, y, _ = make(rng, 1000, 500)
    weights = ref.init_weights(rng, [500, 16, 16, 1])
    order = _core.shuffle_order(1000, 1, 0)
    whole = net_for(weights, ["relu", "relu", "sigmoid"], module=kernels)
    whole.train_batches(x, y, None, order, 64, 0, 16)
    parts = net_for(weights, ["relu", "relu", "sigmoid"], module=kernels)
    for b0, b1 in ((0, 3), (3, 4), (4, 16)):
        parts.train_batches(x, y, None, order, 64, b0, b1)
    for a, b in zip(whole.get_weights(), parts.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_optimizer_state_round_trip(kernels, rng):
    x, y, _ = make(rng, 600, 400)
    weights = ref.init_weights(rng, [400, 16, 1])
    acts = ["relu", "sigmoid"]
    a = net_for(weights, acts, module=kernels)
    a.train_batches(x, y, None, _core.shuffle_order(600, 0, 0), 50, 0, 12)
    b = net_for(weights, acts, module=kernels)
    b.set_state(*a.state())  # exact: W1's lazy rows keep their own steps
    order = _core.shuffle_order(600, 0, 1)
    a.train_batches(x, y, None, order, 50, 0, 12)
    b.train_batches(x, y, None, order, 50, 0, 12)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_bad_training_arguments_change_nothing(kernels, rng):
    x, y, _ = make(rng, 100, 50)
    weights = ref.init_weights(rng, [50, 4, 1])
    net = net_for(weights, ["relu", "sigmoid"], module=kernels)
    order = np.arange(100, dtype=np.int64)
    bad = [
        (dict(y=y[:99]), ValueError, "y"),
        (dict(y=y.astype(np.float64)), TypeError, "y"),
        (dict(y=np.where(np.arange(100)[:, None] == 3, np.nan, y).astype(np.float32)), ValueError, "NaN"),
        (dict(order=np.full(100, 100, np.int64)), IndexError, "order"),
        (dict(order=order[:50]), ValueError, "order"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_end=11), IndexError, "batches"),
        (dict(batch_begin=5, batch_end=4), IndexError, "batches"),
        (dict(x=imdbfast.multi_hot([[1]] * 100, 51)), ValueError, "input dimension"),
        (dict(sw=np.ones(99, np.float32)), ValueError, "sample_weight"),
    ]
    for change, exc, match in bad:
        args = dict(x=x, y=y, sw=None, order=order, batch_size=10, batch_begin=0, batch_end=10)
        args.update(change)
        with pytest.raises(exc, match=match):
            net.train_batches(args["x"], args["y"], args["sw"], args["order"], args["batch_size"],
                              args["batch_begin"], args["batch_end"])
    assert net.iterations == 0
    for a, b in zip(net.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="weights"):
        net.set_weights(weights[:-1])
    with pytest.raises(ValueError, match=r"weights\[2\]"):
        net.set_weights(weights[:2] + [np.zeros((5, 1), np.float32), weights[3]])
    with pytest.raises(ValueError, match="bce_logits"):
        make_net(kernels, [5, 1], ["linear"], "bce_logits", "rmsprop", 1e-3)
    with pytest.raises(ValueError, match="units"):
        make_net(kernels, [5, 0, 1], ["relu", "sigmoid"], "mse", "rmsprop", 1e-3)


def test_no_threads_for_tiny_inputs_still_correct(rng):
    x, y, dense = make(rng, 5, 20, mean_len=3)
    weights = ref.init_weights(rng, [20, 3, 1])
    net = net_for(weights, ["relu", "sigmoid"])
    p = net.predict(x, 8)  # far more threads than work: runs on one, same answer
    np.testing.assert_array_equal(p, net.predict(x, 1))


@pytest.mark.parametrize("optimizer, cfg", [("rmsprop", {}), ("rmsprop", {"centered": True}),
                                            ("adam", {}), ("sgd", {})])
def test_reading_the_state_between_chunks_changes_no_bit(kernels, rng, optimizer, cfg):
    # W1's untouched rows catch up lazily; reading the slots (get_slots, snapshot, save) must
    # bring them up to date in the copy only, or later steps would round differently.
    x, y, _ = make(rng, 1200, 800)
    weights = ref.init_weights(rng, [800, 16, 8, 1])
    acts = ["relu", "relu", "sigmoid"]

    def run(peek):
        net = net_for(weights, acts, optimizer=optimizer, module=kernels, **cfg)
        for e in range(3):
            order = _core.shuffle_order(1200, 2, e)
            for b0 in range(0, 19, 5):
                net.train_batches(x, y, None, order, 64, b0, min(19, b0 + 5))
                if peek:
                    net.get_slots()
                    net.state()
        return net.get_weights(), net.get_slots()

    (wa, sa), (wb, sb) = run(False), run(True)
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(sa, sb):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
