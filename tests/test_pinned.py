"""Weights pinned from before the redesign of the network description: seeded fits of four
architectures and optimizers must keep these exact bits (SHA-256 of every weight's float32
bytes) on any thread count, and the CUDA simulator its own (the GPU path sums in other orders
and updates the first kernel densely, so its bits are its own). A change to the training math
changes a hash; a refactoring must not."""

import hashlib

import numpy as np
import pytest

import imdbfast
from imdbfast import layers, optimizers

from conftest import synthetic_sequences

PINNED = {  # name: (layers, activation, optimizer, loss, batch, sha256[:32] of the weights)
    "book-rmsprop": ((16, 16), "relu", lambda: "rmsprop", "binary_crossentropy", 512,
                     "9be851ce1650a0d5345d68d1aee6687a"),
    "adam-32-8": ((32, 8), "relu", lambda: optimizers.Adam(learning_rate=3e-3),
                  "binary_crossentropy", 64, "e685dc0f5c33e9e58658f86dd2bbc2bc"),
    "sgd-nesterov-tanh-mse": ((8,), "tanh",
                              lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9,
                                                     nesterov=True),
                              "mse", 32, "e0a5b0233973435ecba374326efd5ef3"),
    "rmsprop-centered-sigmoid": ((12, 12, 6), "sigmoid",
                                 lambda: optimizers.RMSprop(centered=True, momentum=0.5),
                                 "binary_crossentropy", 100, "dc468e6f39b1b2caf83a65a108eb6c12"),
}


# Re-pinned when the device's W1 gradient became four partial sums a column (common.h's
# group_part); the same with the small layers fused or launched layer by layer.
PINNED_SIM = {"book-rmsprop": "c1626d0d0e5a4f9c9427cc92bec5ec6f",
              "adam-32-8": "3d936d8b31fd6add85668dfa43c51b9f",
              "sgd-nesterov-tanh-mse": "40cd4b8e5abe8a274ecebee2465aa0a1",
              "rmsprop-centered-sigmoid": "e8c5c33a686988c686351b45f9eaecc4"}


def weights_hash(name, threads=None, device="cpu"):
    units, act, opt, loss, batch, _ = PINNED[name]
    rng = np.random.default_rng(1234)
    seqs = synthetic_sequences(rng, 1500, 3000, mean_len=40)
    y = np.array([int(sum(w % 3 == 0 for w in s) > len(s) / 3) for s in seqs])
    m = imdbfast.Sequential([layers.Input((3000,))] +
                            [layers.Dense(u, activation=act) for u in units] +
                            [layers.Dense(1, activation="sigmoid")], seed=42, device=device)
    m.compile(opt(), loss, ["accuracy"])
    m.fit(seqs, y, epochs=3, batch_size=batch, verbose=0, seed=7, threads=threads)
    h = hashlib.sha256()
    for w in m.get_weights():
        h.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", PINNED)
def test_seeded_fits_keep_their_pinned_bits(name, threads):
    assert weights_hash(name, threads) == PINNED[name][-1]


@pytest.mark.parametrize("name", PINNED)
def test_the_cuda_simulator_keeps_its_pinned_bits(name):
    try:
        from imdbfast import _cuda_sim
    except ImportError:
        pytest.skip("imdbfast was built without the CUDA simulator")
    from imdbfast import _backend

    previous = _backend.use_cuda_module(_cuda_sim)
    try:
        assert weights_hash(name, device="cuda") == PINNED_SIM[name]
    finally:
        _backend.use_cuda_module(previous)
