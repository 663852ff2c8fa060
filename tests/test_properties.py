"""Properties of the compiled training loop over random networks and data (hypothesis).

For every architecture (1-4 hidden layers of 1-70 units, mixed activations, 1-3 outputs, with or
without Dropouts after hidden layers and L1/L2 penalties on kernels and biases), every optimizer
variant and loss, batch sizes 1-600 with a partial last batch, multi-hot or valued inputs, with
and without sample weights:

  (a) the weights and optimizer slots are bitwise identical for 1, 2, 3 and 4 threads, when a
      run is repeated (no race, no split that depends on the thread count), and when calls
      shed their threads midway, as on a busy machine (`_testing.fake_busy`);
  (b) the per-batch and per-epoch losses follow the float64 Keras-math reference
      (tests/reference.py) within its trajectory tolerance, up to the first ill-conditioned
      step: a relu pre-activation within rounding of its kink (kink_margin), for RMSprop and
      Adam a gradient cancelled among the rows below 1e-3 (cancellation_margin), or an L1
      penalized weight within 1e-5 of 0 (l1_margin: |w|'s kink). ~2/3 of all steps are compared.

Training normally runs small steps on one thread (the work is too small to share); these tests
make every call use all the threads asked for (`_testing.split_all_work`), so even a batch of one
row is split. The CUDA simulator runs the same property: (a) across runs and across the orders
it can run a kernel's elements in (`_cuda_sim._set_launch_order`), and (b).

Profiles (tests/conftest.py): `ci` (default, derandomised, 40 examples), `long` (400, the
sanitizer runs) and `hunt` (2,000, new examples every run); IMDBFAST_HYPOTHESIS=name.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

import imdbfast
from imdbfast import _core

import reference as ref
from conftest import assert_close, core_switches
from datautil import make_net

ACTS = ["relu", "tanh", "sigmoid", "linear"]
OPTIMIZERS = [
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"centered": True}),
    ("adam", {}),
    ("adam", {"amsgrad": True}),
    ("sgd", {"learning_rate": 0.01}),
    ("sgd", {"learning_rate": 0.01, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True}),
]


@st.composite
def problems(draw):
    hidden = draw(st.lists(st.integers(1, 70), min_size=1, max_size=4))
    loss = draw(st.sampled_from(["bce_logits", "bce_probs", "mse", "cce_logits"]))
    outputs = draw(st.sampled_from([2, 3, 5] if loss == "cce_logits" else [1, 1, 2, 3]))
    acts = [draw(st.sampled_from(ACTS)) for _ in hidden]
    if loss == "cce_logits":
        acts.append("softmax")
    else:  # (mse also through a softmax output: its Jacobian in the core's row_loss)
        acts.append("sigmoid" if loss != "mse" else draw(st.sampled_from(ACTS + ["softmax"])))
    optimizer, cfg = draw(st.sampled_from(OPTIMIZERS))
    batch_size = draw(st.integers(1, 600))
    n_batches = draw(st.integers(1, max(1, min(6, 2400 // batch_size))))
    last = draw(st.integers(1, batch_size))  # rows of the last, possibly partial, batch
    factor = st.sampled_from([0.0, 0.0, 1e-3, 1e-2])
    penalties = [((draw(factor), draw(factor)), (draw(factor), draw(factor)))
                 for _ in range(len(hidden) + 1)] if draw(st.booleans()) else None
    dropouts = [(draw(st.sampled_from([0.1, 0.5])), draw(st.integers(0, 2**63 - 1)))
                if draw(st.booleans()) else None for _ in hidden] + [None] \
        if draw(st.booleans()) else None
    return dict(
        penalties=penalties, dropouts=dropouts,
        dims=[draw(st.integers(1, 300))] + hidden + [outputs], acts=acts, loss=loss,
        optimizer=optimizer, cfg=cfg, batch_size=batch_size,
        n=(n_batches - 1) * batch_size + last,
        epochs=draw(st.integers(1, 2)),
        mean_len=draw(st.integers(0, 60)),
        valued=draw(st.booleans()),  # a dense matrix of values, not 0/1 (CSR with values)
        weighted=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def make_data(p):
    """x (CSR), y, sample weights and the dense float64 x of the reference."""
    rng = np.random.default_rng(p["seed"])
    n, D, O = p["n"], p["dims"][0], p["dims"][-1]
    # Below 1: at density 1 every multi-hot row is the same all-ones vector, and a rounding-
    # level event (a kink, a cancelled gradient) hits every row of a batch at once, which the
    # per-row margins of check_reference do not bound.
    density = min(0.5, p["mean_len"] / D)
    mask = rng.random((n, D)) < density
    if p["valued"]:
        dense = np.where(mask, rng.uniform(0.1, 1.0, (n, D)), 0.0).astype(np.float32)
        x = _core.csr_from_dense(dense)
    else:
        dense = mask.astype(np.float32)
        x = imdbfast.multi_hot([np.flatnonzero(r) for r in mask], D)
    if p["loss"] == "cce_logits":  # one-hot rows
        y = np.eye(O, dtype=np.float32)[rng.integers(0, O, n)]
    else:
        y = rng.integers(0, 2, (n, O)).astype(np.float32)
    sw = rng.uniform(0.5, 1.5, n).astype(np.float32) if p["weighted"] else None
    return x, y, sw, dense.astype(np.float64), rng


def layer_fields(p):
    """The penalties' and dropouts' fields of each layer's description."""
    fields = [{} for _ in p["acts"]]
    for f, pen in zip(fields, p["penalties"] or []):
        (k1, k2), (b1, b2) = pen
        f.update(kernel_l1=k1, kernel_l2=k2, bias_l1=b1, bias_l2=b2)
    for f, d in zip(fields, p["dropouts"] or []):
        if d is not None:
            f.update(dropout=d[0], dropout_seed=d[1])
    return fields


def penalties(p):
    """(l1, l2) per parameter, for the reference (None without penalties)."""
    return None if p["penalties"] is None else [f for k, b in p["penalties"] for f in (k, b)]


def train(module, p, weights, x, y, sw, threads):
    """Weights, slots and per-epoch (per-batch losses, loss sum, correct sum) of one run."""
    lr = p["cfg"].get("learning_rate", 1e-3)
    cfg = {k: v for k, v in p["cfg"].items() if k != "learning_rate"}
    net = make_net(module, p["dims"], p["acts"], p["loss"], p["optimizer"], lr,
                   layers=layer_fields(p), **cfg)
    net.set_weights(weights)
    n, bs = p["n"], p["batch_size"]
    epochs = []
    for e in range(p["epochs"]):
        loss_sum, correct, rows, per_batch, _ = net.train_batches(
            x, y, sw, _core.shuffle_order(n, p["seed"], e), bs, 0, -(-n // bs), threads, True)
        assert rows == n
        epochs.append((per_batch, loss_sum, correct))
    return net.get_weights(), net.get_slots(), epochs


def kink_margin(model, x, masks=None):
    """How far the batch's relu pre-activations are from 0, relative to their rounding scale.

    z = inp @ W + b carries a float32 rounding error of ~1e-7 * (|inp| @ |W| + |b|). Where the
    ratio is small, float32 and float64 may put a row on different sides of the kink, and from
    there the trajectories part by more than rounding (RMSprop and Adam turn even a tiny
    gradient into a whole step), so the reference comparison stops after such a step.
    """
    zs, as_ = ref.forward(model.params, model.acts, x, masks)
    margin = np.inf
    for l, name in enumerate(model.acts):  # the output layer too (mse allows a relu output)
        if name == "relu":
            inp = x if l == 0 else as_[l - 1] * mask_of(masks, l - 1)
            scale = np.abs(inp) @ np.abs(model.params[2 * l]) + np.abs(model.params[2 * l + 1])
            margin = min(margin, float(np.min(np.abs(zs[l]) / np.maximum(scale, 1e-30))))
    return margin


def mask_of(masks, l):
    return 1.0 if masks is None or masks[l] is None else masks[l]


def l1_margin(model):
    """The smallest |w| > 0 among the L1-penalized weights (inf without any): within rounding
    of 0, float32 and float64 may take |w|'s gradient with opposite signs. (An exact 0, the
    initial biases, is 0 in both.)"""
    margin = np.inf
    for w, (l1, _) in zip(model.params, model.penalties):
        if l1 and np.any(w != 0):
            margin = min(margin, float(np.min(np.abs(w[w != 0]))))
    return margin


def cancellation_margin(model, x, y, sw, masks=None):
    """How much of a weight's gradient survives cancellation among the batch rows: |g| over the
    sum of its rows' |contributions|, the smallest over the weights that have any. float32
    knows g only to ~1e-7 of that sum; RMSprop and Adam divide by the gradient's own scale, so
    a gradient cancelled to 1e-3 moves float32 and float64 apart by more than rounding."""
    zs, as_ = ref.forward(model.params, model.acts, x, masks)
    _, dz, _ = ref.loss_and_grad(model.loss, zs[-1], as_[-1], y, sw)
    if model.loss not in ("bce_logits", "cce_logits"):
        dz = ref.act_grad(model.acts[-1], dz, zs[-1], as_[-1])
    margin = np.inf
    for l in range(len(model.acts) - 1, -1, -1):
        inp = x if l == 0 else as_[l - 1] * mask_of(masks, l - 1)
        for g, scale in ((inp.T @ dz, np.abs(inp).T @ np.abs(dz)),
                         (dz.sum(axis=0), np.abs(dz).sum(axis=0))):
            live = scale > 0
            if np.any(live):
                margin = min(margin, float(np.min(np.abs(g[live]) / scale[live])))
        if l > 0:
            da = (dz @ model.params[2 * l].T) * mask_of(masks, l - 1)
            dz = ref.act_grad(model.acts[l - 1], da, zs[l - 1], as_[l - 1])
    return margin


def loss_slack(model, x, y, sw, masks=None):
    """The part of a batch loss's float32 error that comes through its outputs: TRAJECTORY is
    a bound on the outputs (float32 knows them to ~1e-6 relative after a dozen steps), and a
    loss's error follows from it by the loss's derivative. For mse that is 2 |a - y| rtol |a|
    per element, relative to the loss 2 |a| / |a - y|, unbounded as a nears y (a 0.74 output
    for a target of 1, 2.5e-6 off after eight Adam steps, moves the loss by 1.4e-5 relative).
    binary cross-entropy's derivative is bounded by its value, so it needs none."""
    if model.loss != "mse":
        return 0.0
    zs, as_ = ref.forward(model.params, model.acts, x, masks)
    a = as_[-1]
    w = np.ones(len(x)) if sw is None else sw
    per_row = np.mean(2.0 * np.abs(a - y) * ref.TRAJECTORY["rtol"] * np.abs(a), axis=1)
    return float(np.sum(w * per_row) / len(x))


def undecided_rows(model, x, masks) -> int:
    """Rows whose accuracy float32 may decide the other way: an output within the trajectory
    tolerance of 0.5 (one output), or two top outputs within it of each other (several: argmax).
    A batch of identical rows (no words at all) decides them all at once."""
    a = ref.forward(model.params, model.acts, x, masks)[1][-1]
    tol = 2 * ref.TRAJECTORY["rtol"] * np.abs(a).max(axis=1) + 1e-7
    if a.shape[1] == 1:
        return int(np.sum(np.abs(a[:, 0] - 0.5) < tol))
    top = np.sort(a, axis=1)
    return int(np.sum(top[:, -1] - top[:, -2] < tol))


def check_reference(p, weights, dense, y, sw, epochs):
    """Per-batch and per-epoch losses against the float64 reference, step by step, while the
    trajectory is well conditioned (kink_margin); returns the number of steps compared."""
    cfg = dict(p["cfg"], learning_rate=p["cfg"].get("learning_rate", 1e-3))
    model = ref.Model(weights, p["acts"], p["loss"], p["optimizer"], penalties=penalties(p),
                      dropouts=p["dropouts"], **cfg)
    n, bs, compared = p["n"], p["batch_size"], 0
    y64, sw64 = y.astype(np.float64), None if sw is None else sw.astype(np.float64)
    for e, (per_batch, loss_sum, correct) in enumerate(epochs):
        order = _core.shuffle_order(n, p["seed"], e)
        ref_loss = ref_correct = epoch_slack = undecided = 0.0
        for k, start in enumerate(range(0, n, bs)):
            rows = order[start:start + bs]
            w_rows = None if sw is None else sw64[rows]
            masks = model.masks(rows)
            ill = kink_margin(model, dense[rows], masks) < 1e-5 or l1_margin(model) < 1e-5 or (
                p["optimizer"] != "sgd" and cancellation_margin(model, dense[rows], y64[rows],
                                                                w_rows, masks) < 1e-3)
            slack = loss_slack(model, dense[rows], y64[rows], w_rows, masks)
            undecided += undecided_rows(model, dense[rows], masks)
            loss, acc = model.train_step(dense[rows], y64[rows], w_rows, rows)
            assert_close(per_batch[k], loss, rtol=ref.TRAJECTORY["rtol"],
                         atol=ref.TRAJECTORY["atol"] + slack, what=f"epoch {e} batch {k} loss")
            compared += 1
            if ill:  # the next steps may part by more than rounding
                return compared
            ref_loss += loss * len(rows)
            epoch_slack += slack * len(rows)
            ref_correct += acc
        assert_close(loss_sum / n, ref_loss / n, rtol=ref.TRAJECTORY["rtol"],
                     atol=ref.TRAJECTORY["atol"] + epoch_slack / n, what=f"epoch {e} loss")
        # accuracy counts a threshold (or an argmax): a float32 output within rounding of it may
        # decide the other way, so it is compared to one row plus the undecided ones
        assert abs(correct - ref_correct) <= 1.0 + undecided + 1e-9
    return compared


def assert_same_bits(a, b, what):
    (wa, sa, ea), (wb, sb, eb) = a, b
    for i, (u, v) in enumerate(zip(wa, wb)):
        np.testing.assert_array_equal(u, v, err_msg=f"{what}: weights[{i}]")
    for i, (u, v) in enumerate(zip(sa, sb)):
        for s, (su, sv) in enumerate(zip(u, v)):
            np.testing.assert_array_equal(su, sv, err_msg=f"{what}: slot {s} of weights[{i}]")
    for e, ((pa, la, ca), (pb, lb, cb)) in enumerate(zip(ea, eb)):
        np.testing.assert_array_equal(pa, pb, err_msg=f"{what}: epoch {e} batch losses")
        assert (la, ca) == (lb, cb), f"{what}: epoch {e} totals"


@contextlib.contextmanager
def switched(setter, value):
    """setter(value) for the block (the core's test switches return their previous value)."""
    previous = setter(value)
    try:
        yield
    finally:
        setter(previous)


@given(p=problems())
def test_any_network_trains_the_same_on_any_thread_count(p):
    x, y, sw, dense, rng = make_data(p)
    weights = ref.init_weights(rng, p["dims"])
    testing = core_switches()
    with switched(testing.split_all_work, True):
        runs = {t: train(_core, p, weights, x, y, sw, t) for t in (1, 2, 3, 4)}
        for t in (2, 3, 4):
            assert_same_bits(runs[1], runs[t], f"threads={t} vs 1")
        for t in (2, 4):  # a race shows as a difference between two runs of one thread count
            assert_same_bits(runs[t], train(_core, p, weights, x, y, sw, t), f"threads={t}, run 2")
        with switched(testing.fake_busy, True):  # every call sheds its threads midway
            for t in (2, 3):
                assert_same_bits(runs[1], train(_core, p, weights, x, y, sw, t),
                                 f"threads={t} shedding to 1 midway")
    check_reference(p, weights, dense, y, sw, runs[1][2])


@given(p=problems())
def test_any_network_on_the_cuda_simulator(p):
    sim = pytest.importorskip("imdbfast._cuda_sim", reason="built without the CUDA simulator")
    x, y, sw, dense, rng = make_data(p)
    weights = ref.init_weights(rng, p["dims"])
    first = train(sim, p, weights, x, y, sw, 0)
    assert_same_bits(first, train(sim, p, weights, x, y, sw, 0), "simulator, run 2")
    # The GPU runs a kernel's elements in no fixed order: a race there shows here as other bits
    # when the simulator runs them in another order.
    for order in (1, 2):
        with switched(sim._set_launch_order, order):
            assert_same_bits(first, train(sim, p, weights, x, y, sw, 0), f"launch order {order}")
    # the small layers in one launch a step (where the network allows) or layer by layer: the
    # same formulas element by element, so the same bits
    with switched(sim._set_fuse_small_layers, False):
        assert_same_bits(first, train(sim, p, weights, x, y, sw, 0), "small layers unfused")
    check_reference(p, weights, dense, y, sw, first[2])


@given(p=problems())
def test_inference_is_the_same_on_every_pass_over_a_matrix(p):
    """Inference reads a matrix's int32 column indices on its first pass and its uint16 copy
    from the second on (CSR::inference_view): the outputs must not change by a bit, for any
    width, values or none, and any thread count."""
    x, y, sw, dense, rng = make_data(p)
    net = make_net(_core, p["dims"], p["acts"], p["loss"], p["optimizer"], 1e-3,
                   layers=layer_fields(p), **{k: v for k, v in p["cfg"].items()
                                              if k != "learning_rate"})
    net.set_weights(ref.init_weights(rng, p["dims"]))
    first = net.predict(x, 1)
    stats = net.evaluate(x, y, sw, 1)
    for t in (1, 3):
        np.testing.assert_array_equal(first, net.predict(x, t), err_msg=f"pass 2+, threads={t}")
        assert net.evaluate(x, y, sw, t) == stats
