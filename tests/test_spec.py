"""The network description (cpp/spec.h) every backend's Net is built from: what it accepts, what
it refuses and how, the optimizer's named slots, and Sequential's config round trip."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

import imdbfast
from imdbfast import _core, layers
from datautil import net_spec

# Keras's variable names and order for each configuration (keras/src/optimizers).
SLOTS = [
    ("rmsprop", {}, ["velocity"]),
    ("rmsprop", {"momentum": 0.5}, ["velocity", "momentum"]),
    ("rmsprop", {"centered": True}, ["velocity", "average_gradient"]),
    ("rmsprop", {"momentum": 0.5, "centered": True}, ["velocity", "momentum", "average_gradient"]),
    ("adam", {}, ["momentum", "velocity"]),
    ("adam", {"amsgrad": True}, ["momentum", "velocity", "velocity_hat"]),
    ("sgd", {}, []),
    ("sgd", {"momentum": 0.9, "nesterov": True}, ["momentum"]),
]


@pytest.mark.parametrize("kind, hyper, names", SLOTS)
def test_slots_are_named_as_keras_names_them(kernels, kind, hyper, names):
    net = kernels.Net(net_spec([7, 3, 1], ["relu", "sigmoid"], "bce_logits", kind, 0.01, **hyper))
    assert net.slot_names == names and net.n_slots == len(names)
    assert all(len(p) == len(names) for p in net.get_slots())


def test_a_tiny_momentum_keeps_the_slot_it_names(kernels):
    # 1e-50 rounds to 0 in float32, yet the configuration has a momentum slot: every kernel
    # finds the average gradient by name, after it, on every backend.
    spec = net_spec([6, 2, 1], ["relu", "sigmoid"], "bce_logits", "rmsprop", 0.01,
                    momentum=1e-50, centered=True)
    rng = np.random.default_rng(0)
    x = _core.multi_hot(rng.integers(0, 6, 20).astype(np.int32), np.arange(0, 21, 4, dtype=np.int64), 6)
    y = rng.integers(0, 2, (5, 1)).astype(np.float32)
    nets = [m.Net(spec) for m in {_core, kernels}]
    w = [rng.normal(0, 0.5, s).astype(np.float32) for s in [(6, 2), (2,), (2, 1), (1,)]]
    for n in nets:
        n.set_weights(w)
        n.train_batches(x, y, None, np.arange(5, dtype=np.int64), 5, 0, 1)
    assert nets[0].slot_names == ["velocity", "momentum", "average_gradient"]
    for a, b in zip(nets[0].get_slots(), nets[-1].get_slots()):
        for sa, sb in zip(a, b):
            np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-7)  # float rounding only
    mg = nets[0].get_slots()[1][2]
    assert np.any(mg != 0)  # the average gradient slot received the gradient


BAD = [
    ({"layers": []}, ValueError, "no layers"),
    ({"extra": 1}, ValueError, "unknown key 'extra'"),
    ({"input_dim": 0}, ValueError, r"input_dim: must be in \[1"),
    ({"input_dim": True}, TypeError, "input_dim: expected an int"),
    ({"input_dim": 3.0}, TypeError, "input_dim: expected an int"),
    ({"layers": [{"units": 2, "activation": "relu"}, {"units": 1, "activation": "gelu"}]},
     ValueError, "activation: unknown 'gelu'"),
    ({"layers": [{"units": 0}]}, ValueError, r"units: must be in \[1"),
    ({"layers": [{"kind": "conv", "units": 1}]}, ValueError, r"layers\[0\]: unknown kind 'conv'"),
    ({"layers": [{"units": 1, "dropout": 0.5, "activation": "sigmoid"}]}, ValueError,
     r"layers\[0\]: dropout on the output layer is not supported"),
    ({"layers": [{"units": 2, "dropout": 1.0, "activation": "relu"},
                 {"units": 1, "activation": "sigmoid"}]}, ValueError,
     r"layers\[0\]: dropout: the rate must be in \[0, 1\)"),
    ({"layers": [{"units": 2, "dropout": 0.5, "dropout_seed": -1, "activation": "relu"},
                 {"units": 1, "activation": "sigmoid"}]}, ValueError, r"dropout_seed: must be in"),
    ({"layers": [{"units": 1, "kernel_l2": -1e-4, "activation": "sigmoid"}]}, ValueError,
     r"layers\[0\]: kernel_l2: expected a finite number >= 0"),
    ({"layers": [{"units": 1, "bias_l1": float("nan"), "activation": "sigmoid"}]}, ValueError,
     r"layers\[0\]: bias_l1: expected a finite number >= 0"),
    ({"layers": [{"units": 1, "trainable": 0, "activation": "sigmoid"}]}, TypeError,
     "trainable: expected"),
    ({"layers": [{"units": 1, "activation": "linear"}]}, ValueError,
     "'bce_logits' needs a sigmoid output layer"),
    ({"loss": "hinge"}, ValueError, "loss: unknown 'hinge'"),
    ({"optimizer": {"kind": "adagrad"}}, ValueError, "optimizer: unknown 'adagrad'"),
    ({"optimizer": {"kind": "sgd", "rho": 0.9}}, ValueError, "optimizer: unknown key 'rho'"),
    ({"optimizer": {"kind": "adam", "beta_1": 1.0}}, ValueError, r"beta_1: must be in \[0, 1\)"),
    ({"optimizer": {"kind": "rmsprop", "learning_rate": "fast"}}, TypeError,
     "learning_rate: expected a number"),
    ({"optimizer": {"kind": "rmsprop", "centered": 1}}, TypeError, "centered: expected a bool"),
    ({"optimizer": {"kind": "rmsprop", "epsilon": float("nan")}}, ValueError,
     "epsilon: must be finite"),
    ({"optimizer": {"kind": "rmsprop", "rho": np.bool_(True)}}, TypeError, "rho: expected a number"),
    ({"optimizer": {"kind": "rmsprop", "rho": np.array([0.9])}}, TypeError,
     "rho: expected a number"),
]


def test_state_arrays_must_be_arrays_not_lists(kernels):
    # A list would be converted to a temporary array whose memory is gone before it is read.
    net = kernels.Net(net_spec([4, 2, 1], ["relu", "sigmoid"], "bce_logits", "rmsprop"))
    w = net.get_weights()
    with pytest.raises(TypeError, match=r"weights\[0\]: expected a NumPy array, got list"):
        net.set_weights([w[0].tolist()] + w[1:])
    slots = net.get_slots()
    slots[1] = [slots[1][0].tolist()]
    with pytest.raises(TypeError, match=r"slots\[1\]\[0\]: expected a NumPy array"):
        net.set_slots(slots)
    with pytest.raises(TypeError, match="synced: expected a NumPy array"):
        net.set_state(w, net.get_slots(), [0, 0, 0, 0], 0)


@pytest.mark.parametrize("change, error, match", BAD)
def test_a_bad_description_is_refused_by_name(kernels, change, error, match):
    spec = net_spec([4, 1], ["sigmoid"], "bce_logits", "rmsprop")
    spec.update(change)
    with pytest.raises(error, match=match):
        kernels.Net(spec)


def test_the_description_comes_from_the_layers_and_optimizer():
    m = imdbfast.Sequential([layers.Input((30,)), layers.Dense(4, "tanh"),
                             layers.Dense(1, "sigmoid")])
    m.compile(imdbfast.optimizers.Adam(0.01, amsgrad=True), "binary_crossentropy")
    assert m._spec() == {
        "input_dim": 30,
        "layers": [{"kind": "dense", "units": 4, "activation": "tanh", "kernel_l1": 0.0,
                    "kernel_l2": 0.0, "bias_l1": 0.0, "bias_l2": 0.0, "trainable": True},
                   {"kind": "dense", "units": 1, "activation": "sigmoid", "kernel_l1": 0.0,
                    "kernel_l2": 0.0, "bias_l1": 0.0, "bias_l2": 0.0, "trainable": True}],
        "loss": "bce_logits",
        "optimizer": {"kind": "adam", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999,
                      "epsilon": 1e-7, "amsgrad": True}}
    m.build()
    assert m._net.slot_names == ["momentum", "velocity", "velocity_hat"]


def test_config_round_trip_builds_the_same_model(rng):
    m = imdbfast.Sequential([layers.Dense(8, "relu", input_dim=50), layers.Dense(1, "sigmoid")],
                            name="rt", seed=5, threads=1)
    m.compile(imdbfast.optimizers.RMSprop(0.002, centered=True), "binary_crossentropy",
              ["accuracy"], bce="clip")
    c = imdbfast.Sequential.from_config(m.get_config())
    c.compile_from_config(m.get_compile_config())
    assert c.get_config() == m.get_config() and c.get_compile_config() == m.get_compile_config()
    x = rng.integers(0, 2, (64, 50)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    c.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(m.get_weights(), c.get_weights()):
        np.testing.assert_array_equal(a, b)  # same seed, same config: the same bits
    assert pickle.loads(pickle.dumps(c)).get_config() == c.get_config()


def test_core_stub_names_exist_in_the_module():
    """imdbfast/_core.pyi types the public part of _core: every name it declares (and every
    method of its classes) must exist in the compiled module, so the stub cannot drift."""
    stub = ast.parse((Path(imdbfast.__file__).parent / "_core.pyi").read_text())
    for node in stub.body:
        if isinstance(node, ast.FunctionDef) and node.name != "__getattr__":
            assert callable(getattr(_core, node.name)), node.name
        elif isinstance(node, ast.ClassDef):
            cls = getattr(_core, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name != "__init__":
                    assert hasattr(cls, item.name), f"{node.name}.{item.name}"
        elif isinstance(node, ast.AnnAssign):
            assert hasattr(_core, node.target.id), node.target.id
