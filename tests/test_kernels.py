"""Each compiled kernel against the float64 reference (tests/reference.py), on every backend
(the `kernels` fixture: the CPU core, the CUDA kernels on the host simulator and on a GPU).

Tolerances, |out - ref| <= atol + rtol |ref|, and why:
  ELEMENT   rtol 1e-6, atol 1e-7  one float32 operation (eps 6e-8) or a libm call (<= 2 ulp)
  REDUCE    rtol 1e-5, atol 1e-6  float32 sums of up to a few hundred terms of |x| < 1: the
                                  rounding error grows like sqrt(n) * eps * sum|x|
  OPTIMIZER rtol 2e-6, atol 1e-9  a handful of float32 ops per element per step (sqrt, divide)
"""

import numpy as np
import pytest

import imdbfast
from imdbfast import _core

import reference as ref
from conftest import assert_close, synthetic_sequences

ELEMENT = dict(rtol=1e-6, atol=1e-7)
REDUCE = dict(rtol=1e-5, atol=1e-6)
OPTIMIZER = dict(rtol=2e-6, atol=1e-9)


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


@pytest.fixture
def sparse_batch(rng):
    """A multi-hot matrix with empty rows, duplicates, the largest index, and a batch of rows."""
    D = 500
    seqs = synthetic_sequences(rng, 64, D, mean_len=30, empty_every=9)
    seqs[1] = [D - 1, D - 1, 0]
    x = imdbfast.multi_hot(seqs, D)
    rows = rng.permutation(64)[:37].astype(np.int64)  # a partial, shuffled batch
    rows[0] = 1
    return x, rows, ref.multi_hot(seqs, D)


@pytest.mark.parametrize("H", [1, 3, 16, 32, 64, 70])
def test_sparse_forward(kernels, rng, sparse_batch, H):
    x, rows, dense = sparse_batch
    W = f32(rng.normal(0, 0.1, (x.n_cols, H)))
    b = f32(rng.normal(0, 0.1, H))
    z = kernels.sparse_forward(x, rows, W, b)
    assert z.dtype == np.float32
    assert_close(z, dense[rows] @ W.astype(np.float64) + b, **REDUCE, what="sparse_forward")


@pytest.mark.parametrize("H", [70, 512, 600])
def test_sparse_forward_wide_rows_keep_the_gather_order(rng, sparse_batch, H):
    """Wide rows are gathered in slices of up to 512 (one slice for 512, two for 600): each
    element must still be common.h's gather_sum, as the simulator computes it, bit for bit."""
    from conftest import _gpu_module
    sim = _gpu_module("sim")
    x, rows, _ = sparse_batch
    W = f32(rng.normal(0, 0.1, (x.n_cols, H)))
    b = f32(rng.normal(0, 0.1, H))
    np.testing.assert_array_equal(_core.sparse_forward(x, rows, W, b),
                                  sim.sparse_forward(x, rows, W, b))


def test_sparse_forward_with_values(kernels, rng):
    dense = (rng.random((20, 40)) < 0.3) * rng.normal(0, 2, (20, 40))
    x = imdbfast.to_csr(dense)
    W, b = f32(rng.normal(0, 0.1, (40, 16))), f32(rng.normal(0, 0.1, 16))
    rows = np.arange(20, dtype=np.int64)
    assert_close(kernels.sparse_forward(x, rows, W, b), f32(dense).astype(np.float64) @ W + b,
                 **REDUCE, what="sparse_forward with values")


def lane_csr(dense, lo, hi):
    """The matrix with only columns [lo, hi) kept: lane k of every row, as a CSR of its own."""
    kept = np.zeros_like(dense)
    kept[:, lo:hi] = dense[:, lo:hi]
    return imdbfast.to_csr(kept)


@pytest.mark.parametrize("H", [1, 16, 70])
@pytest.mark.parametrize("with_values", [False, True])
def test_sparse_forward_lanes(rng, sparse_batch, H, with_values):
    """The training loop's first layer (CPU): against the reference, and lane by lane against
    sparse_forward on each lane's columns alone, combined ((P0 + P1) + (P2 + P3)) + b exactly."""
    x, rows, dense = sparse_batch
    if with_values:
        dense = dense * rng.normal(0, 2, dense.shape)
        x = imdbfast.to_csr(dense)
    D = x.n_cols
    W = f32(rng.normal(0, 0.1, (D, H)))
    b = f32(rng.normal(0, 0.1, H))
    bounds = np.array([0, 3, 40, 41, D], np.int64)  # a narrow lane and an empty one
    z, P = _core.sparse_forward_lanes(x, rows, W, b, bounds)
    assert z.shape == (len(rows), H) and P.shape == (4, len(rows), H)
    assert_close(z, f32(dense)[rows].astype(np.float64) @ W + b, **REDUCE, what="lanes")
    zero = np.zeros(H, np.float32)
    for k in range(4):
        lane = _core.sparse_forward(lane_csr(f32(dense), bounds[k], bounds[k + 1]), rows, W, zero)
        np.testing.assert_array_equal(P[k], lane)
    np.testing.assert_array_equal(z, ((P[0] + P[1]) + (P[2] + P[3])) + b)
    # pairs: each pair added by its owner (one or two threads), the same floats
    zp, Pp = _core.sparse_forward_lanes(x, rows, W, b, bounds, pairs=True)
    np.testing.assert_array_equal(zp, z)
    np.testing.assert_array_equal(Pp[0], P[0] + P[1])
    np.testing.assert_array_equal(Pp[2], P[2] + P[3])
    # all columns in lane 0: the whole-row gather of inference, bit for bit
    whole, _ = _core.sparse_forward_lanes(x, rows, W, b, np.array([0, D, D, D, D], np.int64))
    np.testing.assert_array_equal(whole, _core.sparse_forward(x, rows, W, b))


@pytest.mark.parametrize("bounds, match", [
    ([0, 5, 4, 9, 500], "ascending"), ([1, 5, 6, 9, 500], "from 0"), ([0, 5, 6, 9, 499], "from 0"),
    ([0, 5, 500], r"bounds: expected dimension 0"),
])
def test_sparse_forward_lanes_bad_bounds(rng, sparse_batch, bounds, match):
    x, rows, _ = sparse_batch
    W, b = f32(np.zeros((x.n_cols, 4))), f32(np.zeros(4))
    with pytest.raises(ValueError, match=match):
        _core.sparse_forward_lanes(x, rows, W, b, np.array(bounds, np.int64))


@pytest.mark.parametrize("H", [1, 16, 5])
def test_dense_forward_and_backward(kernels, rng, H):
    B, I = 33, 16
    x, W, b = f32(rng.normal(size=(B, I))), f32(rng.normal(0, 0.3, (I, H))), f32(rng.normal(size=H))
    dz = f32(rng.normal(size=(B, H)))
    xd, Wd, dzd = x.astype(np.float64), W.astype(np.float64), dz.astype(np.float64)
    assert_close(kernels.dense_forward(x, W, b), xd @ Wd + b, **REDUCE, what="dense_forward")
    dx, dW, db = kernels.dense_backward(dz, x, W)
    assert_close(dx, dzd @ Wd.T, **REDUCE, what="dx")
    assert_close(dW, xd.T @ dzd, **REDUCE, what="dW")
    assert_close(db, dzd.sum(axis=0), **REDUCE, what="db")


@pytest.mark.parametrize("H", [1, 16, 5, 83, 130])
def test_dense_layer_summation_orders(rng, H):
    """The CPU's weight gradient reads dz once for four rows (H = 16, and wide layers in column
    tiles) or runs across the rows (H = 1), and its forward runs four rows at a time (six over
    column strips for other widths, with the last columns apart); every element must still be
    common.h's batch_sum_elem / dense_sum, which the simulator computes element by element: bit
    for bit, with partial blocks of rows, of columns and of batch rows."""
    from conftest import _gpu_module
    sim = _gpu_module("sim")
    for B, I in [(1, 16), (6, 37), (33, 16), (514, 37), (13, 100)]:
        dz, x = f32(rng.normal(size=(B, H))), f32(rng.normal(size=(B, I)))
        W, b = f32(rng.normal(size=(I, H))), f32(rng.normal(size=H))
        np.testing.assert_array_equal(_core.dense_forward(x, W, b), sim.dense_forward(x, W, b))
        for got, want in zip(_core.dense_backward(dz, x, W), sim.dense_backward(dz, x, W)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["linear", "relu", "tanh", "sigmoid"])
def test_activations(kernels, rng, name):
    z = f32(np.concatenate([rng.normal(0, 3, 200), [0.0, -0.0, 30.0, -30.0, 100.0, -100.0]]))
    a = kernels.act_forward(z, name)
    assert_close(a, ref.act(name, z.astype(np.float64)), **ELEMENT, what=name)
    da = f32(rng.normal(size=z.size))
    dz = kernels.act_backward(da, z, a, name)
    # The derivative is evaluated from the float32 output a, as TF does.
    assert_close(dz, ref.act_grad(name, da.astype(np.float64), z.astype(np.float64),
                                  a.astype(np.float64)), **ELEMENT, what=name + "'")


def test_tanh_is_within_two_ulp_of_float64(kernels, rng):
    # tanh is imdbfast's own float32 implementation (vectorisable, identical on every machine):
    # check it at 2 ulp against float64 over its whole range, the branch points included.
    x = np.concatenate([rng.normal(0, 2, 200_000), rng.uniform(-12, 12, 200_000),
                        rng.normal(0, 1e-3, 50_000), np.linspace(-0.7, 0.7, 50_001),
                        [0.0, -0.0, 0.625, -0.625, 9.0, 9.1, -9.1, 1e-30, 1e-40, 88.0, 1e30]]).astype(np.float32)
    got = kernels.act_forward(x, "tanh").astype(np.float64)
    want = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / np.maximum(ulp, 1e-45)) <= 2.0
    special = kernels.act_forward(np.array([np.nan, np.inf, -np.inf], np.float32), "tanh")
    assert np.isnan(special[0]) and special[1] == 1.0 and special[2] == -1.0


@pytest.mark.parametrize("loss, last", [("bce_logits", "sigmoid"), ("bce_probs", "sigmoid"),
                                        ("bce_probs", "linear"), ("mse", "sigmoid"), ("mse", "linear")])
@pytest.mark.parametrize("weighted", [False, True])
def test_losses(kernels, rng, loss, last, weighted):
    B, O = 41, 2
    z = f32(np.concatenate([rng.normal(0, 4, (B - 3, O)), [[40, -40], [0, 1e-9], [-20, 20]]]))
    if last == "linear" and loss == "bce_probs":
        z = f32(rng.uniform(-0.2, 1.2, (B, O)))  # probabilities outside [0, 1] get clipped
    a = kernels.act_forward(z.ravel(), last).reshape(B, O)
    y = f32(rng.integers(0, 2, (B, O)))
    sw = f32(rng.uniform(0, 3, B)) if weighted else None
    dz, lrow, acc = kernels.loss_forward_backward(z, a, y, sw, last, loss)
    zd, ad, yd = z.astype(np.float64), a.astype(np.float64), y.astype(np.float64)
    lref, dref, aref = ref.loss_and_grad(loss, zd, ad, yd, sw)
    if loss != "bce_logits":
        dref = ref.act_grad(last, dref, zd, ad)
    # The loss is accumulated in double from float32 inputs; BCE-from-probabilities clips at
    # 1 - 1e-7, which float32 represents as 0.99999988 (relative error 1e-7 of the clip point).
    assert_close(lrow, lref, rtol=1e-6, atol=1e-6, what="loss")
    assert_close(dz, dref, **ELEMENT, what="dz")
    np.testing.assert_array_equal(acc, aref)


def test_bce_saturation_caps_like_keras(kernels):
    z = f32([[40.0], [-40.0]])
    a = kernels.act_forward(z.ravel(), "sigmoid").reshape(2, 1)
    y = f32([[0.0], [1.0]])
    _, from_logits, _ = kernels.loss_forward_backward(z, a, y, None, "sigmoid", "bce_logits")
    _, clipped, _ = kernels.loss_forward_backward(z, a, y, None, "sigmoid", "bce_probs")
    assert from_logits == pytest.approx([40.0, 40.0], rel=1e-9)  # no cap from logits
    assert clipped[0] == pytest.approx(15.942385, rel=1e-6)  # -log(1 - 0.99999988)
    assert clipped[1] == pytest.approx(16.118095, rel=1e-6)  # -log(1e-7)


def test_accuracy_threshold_is_strict(kernels):
    a = f32([[0.5], [0.5000001], [0.4999]])
    y = f32([[0.0], [1.0], [0.0]])
    _, _, acc = kernels.loss_forward_backward(a, a, y, None, "linear", "mse")
    np.testing.assert_array_equal(acc, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("H", [16, 7])
@pytest.mark.parametrize("n_rows", [37, 2])
@pytest.mark.parametrize("with_values", [False, True])
def test_sparse_backward_matches_reference_for_any_split(kernels, rng, sparse_batch, H, n_rows,
                                                         with_values):
    x, rows, dense = sparse_batch
    rows = rows[:n_rows]
    if with_values:
        dense = dense * rng.normal(0, 2, dense.shape)
        x = imdbfast.to_csr(dense)
    dz = f32(rng.normal(size=(len(rows), H)))
    expected = dense[rows].T @ dz.astype(np.float64)
    touched_ref = np.flatnonzero(dense[rows].any(axis=0))
    results = [kernels.sparse_backward(dz, x, rows, parts) for parts in (1, 2, 3, 7)]
    for touched, g in results:
        np.testing.assert_array_equal(touched, touched_ref)  # ascending, exactly the touched rows
        assert_close(g, expected[touched_ref], **REDUCE, what="dW1 rows")
    for touched, g in results[1:]:  # the column split never changes a bit
        np.testing.assert_array_equal(g, results[0][1])


OPTIMIZERS = [
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "momentum": 0.5, "learning_rate": 0.01, "rho": 0.8}),
    ("adam", {}),
    ("adam", {"amsgrad": True, "learning_rate": 0.01}),
    ("sgd", {"learning_rate": 0.01}),
    ("sgd", {"learning_rate": 0.01, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True}),
]


@pytest.mark.parametrize("kind, cfg", OPTIMIZERS, ids=[f"{k}-{c}" for k, c in OPTIMIZERS])
def test_optimizer_steps(kernels, rng, kind, cfg):
    n = 257
    w = f32(rng.normal(size=n))
    slots = [np.zeros(n, np.float32) for _ in ref.optimizer_slots(kind, cfg, n)]
    w_ref = w.astype(np.float64)
    slots_ref = ref.optimizer_slots(kind, cfg, n)
    full = {"learning_rate": 1e-3 if kind != "sgd" else 0.01, **cfg}
    for it in range(6):
        g = f32(rng.normal(0, 10 ** rng.uniform(-5, 0), n))
        g[::5] = 0.0
        w_prev = w.astype(np.float64)
        kernels.optimizer_update(kind, it, w, g, slots, **full)
        w_ref = ref.optimizer_step(kind, full, it, w_ref, g, slots_ref)
        tol = dict(OPTIMIZER)
        # The step itself is a few float32 operations (square, sqrt, divide, the centered
        # difference), good to a few ulps of the step: 5e-7 of it (4 ulps). Where w - step
        # nearly cancels, that and not rtol * |w| is the bound.
        tol["atol"] = np.maximum(tol["atol"], 5e-7 * np.abs(w_ref - w_prev))
        if kind == "adam":
            # Like Keras, the bias correction lr*sqrt(1 - b2^t)/(1 - b1^t) is computed in float32,
            # where 1 - 0.999^t cancels to ~3e-5 relative error at small t: allow that much of a
            # step (each step moves w by at most ~lr).
            tol["atol"] = np.maximum(tol["atol"], 5e-5 * full["learning_rate"])
        assert_close(w, w_ref, **tol, what=f"{kind} w step {it}")
        for s, sr in zip(slots, slots_ref):
            # Momentum slots sum increments of both signs: near zero the error is relative to
            # the terms (the slot's scale), not to the cancelled result.
            assert_close(s, sr, rtol=1e-5, atol=1e-6 * np.abs(sr).max(), what=f"{kind} slot step {it}")


def test_rmsprop_keras_docstring_golden_value(kernels):
    # keras.optimizers.RMSprop(learning_rate=0.1): var 10.0, loss var**2 / 2 -> 9.683772
    w = f32([10.0])
    v = [np.zeros(1, np.float32)]
    kernels.optimizer_update("rmsprop", 0, w, f32([10.0]), v, learning_rate=0.1)
    assert w[0] == pytest.approx(9.683772, abs=1e-6)


@pytest.mark.parametrize("kind, centered", [("rmsprop", False), ("rmsprop", True), ("sgd", False)])
def test_lazy_row_updates_equal_dense_updates(rng, kind, centered):
    D, H, steps = 50, 16, 40
    W = f32(rng.normal(size=(D, H)))
    nslots = 0 if kind == "sgd" else 1 + centered
    lazy_W, dense_W = W.copy(), W.copy()
    lazy_s = [np.zeros((D, H), np.float32) for _ in range(nslots)]
    dense_s = [np.zeros(D * H, np.float32) for _ in range(nslots)]
    synced = np.zeros(D, np.int64)
    cfg = dict(learning_rate=1e-2, centered=centered) if kind == "rmsprop" else dict(learning_rate=1e-2)
    for it in range(steps):
        rows = np.flatnonzero(rng.random(D) < 0.2).astype(np.int64)  # rows untouched for a while
        G = np.zeros((D, H), np.float32)
        G[rows] = rng.normal(size=(len(rows), H))
        _core.optimizer_update_rows(kind, it, lazy_W, f32(G[rows]), [s.reshape(-1) for s in lazy_s],
                                    rows, synced, **cfg)
        flat_W = dense_W.reshape(-1)
        _core.optimizer_update(kind, it, flat_W, G.reshape(-1), dense_s, **cfg)
    if nslots:
        _core.optimizer_catch_up(kind, steps, [s.reshape(-1) for s in lazy_s], synced, H,
                                 centered=centered)
        assert np.all(synced == steps)
    # The lazy decay multiplies by rho^k rounded once, the dense one rounds k times: they agree to
    # about k float32 ulps in the slots (k < 40 here) and far closer in the weights.
    assert_close(lazy_W, dense_W, rtol=1e-6, atol=1e-7, what="weights")
    for s, d in zip(lazy_s, dense_s):
        # the centered average gradient is signed: its error is relative to its scale
        assert_close(s.reshape(-1), d, rtol=40 * 1.2e-7, atol=40 * 1.2e-7 * np.abs(d).max(), what="slots")
    if kind == "sgd":
        np.testing.assert_array_equal(lazy_W, dense_W)  # no decay at all: identical


def test_shuffle_order_is_a_seeded_permutation():
    a = _core.shuffle_order(1000, 42, 0)
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))
    np.testing.assert_array_equal(a, _core.shuffle_order(1000, 42, 0))
    assert not np.array_equal(a, _core.shuffle_order(1000, 42, 1))
    assert not np.array_equal(a, _core.shuffle_order(1000, 43, 0))
    assert _core.shuffle_order(0, 1, 0).size == 0
    # Fisher-Yates with an unbiased draw: every position is uniform (chi-square, 6 dof).
    counts = np.zeros((4, 4))
    for e in range(4000):
        counts[np.arange(4), _core.shuffle_order(4, 7, e)] += 1
    chi2 = ((counts - 1000) ** 2 / 1000).sum()
    assert chi2 < 40  # p < 1e-6 under uniformity with 9 effective degrees of freedom


@pytest.mark.parametrize("call, exc, match", [
    (lambda k: k.sparse_forward(imdbfast.multi_hot([[1]], 5), np.array([1], np.int64),
                                  np.zeros((5, 2), np.float32), np.zeros(2, np.float32)), IndexError, "rows"),
    (lambda k: k.sparse_forward(imdbfast.multi_hot([[1]], 5), np.array([0], np.int64),
                                  np.zeros((4, 2), np.float32), np.zeros(2, np.float32)), ValueError, "W"),
    (lambda k: k.dense_forward(np.zeros((2, 3)), np.zeros((3, 2), np.float32),
                                 np.zeros(2, np.float32)), TypeError, "x: expected a float32"),
    (lambda k: k.act_forward(np.zeros(3, np.float32), "gelu"), ValueError, "activation"),
    (lambda k: k.optimizer_update("nadam", 0, np.zeros(1, np.float32), np.zeros(1, np.float32),
                                    [], learning_rate=0.1), ValueError, "optimizer"),
    (lambda k: k.optimizer_update("rmsprop", 0, np.zeros(1, np.float32), np.zeros(1, np.float32),
                                    [], learning_rate=0.1), ValueError, "slots"),
    (lambda k: k.optimizer_update("rmsprop", 0, np.zeros(4, np.float32)[::2], np.zeros(2, np.float32),
                                    [np.zeros(2, np.float32)], learning_rate=0.1), ValueError, "contiguous"),
    (lambda k: k.optimizer_update("rmsprop", 0, np.zeros(1, np.float32), np.zeros(1, np.float32),
                                    [np.zeros(1, np.float32)], learning_rate=0.1, rho=1.5), ValueError, "rho"),
])
def test_bad_kernel_arguments(kernels, call, exc, match):
    with pytest.raises(exc, match=match):
        call(kernels)


def test_read_only_output_is_refused(kernels):
    w = np.zeros(3, np.float32)
    w.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        kernels.optimizer_update("sgd", 0, w, np.zeros(3, np.float32), [], learning_rate=0.1)
