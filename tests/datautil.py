"""Data helpers shared by the tests and the benchmarks (which put this folder on sys.path).

The real IMDB data is read from $IMDBFAST_DATA (a folder holding imdb.npz), else from
../shared/data beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    env = os.environ.get("IMDBFAST_DATA")
    candidates = [Path(env).expanduser().resolve()] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "imdb.npz").is_file():
            return c
    return None


def keras_load_data_lists(path, num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1,
                    oov_char=2, index_from=3):
    """keras/src/datasets/imdb.py, line for line, on Python lists."""
    with np.load(path, allow_pickle=True) as f:
        x_train, labels_train = f["x_train"], f["y_train"]
        x_test, labels_test = f["x_test"], f["y_test"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train, labels_train = x_train[indices], labels_train[indices]
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test, labels_test = x_test[indices], labels_test[indices]
    if start_char is not None:
        x_train = [[start_char] + [w + index_from for w in x] for x in x_train]
        x_test = [[start_char] + [w + index_from for w in x] for x in x_test]
    elif index_from:
        x_train = [[w + index_from for w in x] for x in x_train]
        x_test = [[w + index_from for w in x] for x in x_test]
    else:
        x_train = [list(x) for x in x_train]
        x_test = [list(x) for x in x_test]
    if maxlen:
        keep = [i for i, x in enumerate(x_train) if len(x) < maxlen]
        x_train, labels_train = [x_train[i] for i in keep], labels_train[keep]
        keep = [i for i, x in enumerate(x_test) if len(x) < maxlen]
        x_test, labels_test = [x_test[i] for i in keep], labels_test[keep]
        if not x_train or not x_test:
            raise ValueError("maxlen")
    xs = x_train + x_test
    labels = np.concatenate([labels_train, labels_test])
    if not num_words:
        num_words = max(max(x) for x in xs if x)
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]
    idx = len(x_train)
    return (xs[:idx], labels[:idx]), (xs[idx:], labels[idx:])


def keras_load_data(path: Path, num_words: int = 10000):
    """The trusted test copy of the real data, via the transcription above, flat:
    ((tokens, offsets, y) for train, (tokens, offsets, y) for test)."""
    out = []
    for xs, ys in keras_load_data_lists(Path(path) / "imdb.npz", num_words=num_words):
        lengths = np.array([len(s) for s in xs], dtype=np.int64)
        offsets = np.zeros(len(xs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.fromiter((w for s in xs for w in s), np.int32, int(offsets[-1]))
        out.append((tokens, offsets, np.asarray(ys, dtype=np.float32)))
    return out


def synthetic_imdb(n: int = 25000, num_words: int = 10000, seed: int = 0):
    """An IMDB-shaped set, flat: review lengths log-normal around the real mean (239 tokens),
    word ranks Zipf-distributed over the real 88,584-word vocabulary, start token and OOV mapped
    as load_data does (about 131 distinct words per review, like the real data)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(5.2, 0.75, n), 10, 2500).astype(np.int64)
    ranks = np.arange(1, 88585)
    p = 1.0 / ranks ** 1.05
    p /= p.sum()
    words = rng.choice(ranks, size=int(lengths.sum()), p=p) + 3
    words[words >= num_words] = 2
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=offsets[1:])
    tokens = np.empty(offsets[-1], dtype=np.int32)
    starts = offsets[:-1]
    mask = np.ones(offsets[-1], dtype=bool)
    mask[starts] = False
    tokens[starts] = 1
    tokens[mask] = words
    y = rng.integers(0, 2, n).astype(np.float32)
    return tokens, offsets, y


def synthetic_sequences(rng: np.random.Generator, n: int, num_words: int, mean_len: int = 40,
                        empty_every: int = 0):
    """IMDB-shaped ragged data: Zipf-distributed word ids, varied lengths, duplicates."""
    seqs = []
    for i in range(n):
        if empty_every and i % empty_every == 0:
            seqs.append([])
            continue
        length = int(rng.integers(1, 2 * mean_len))
        words = np.minimum(rng.zipf(1.3, size=length) - 1, num_words - 1)
        seqs.append([int(w) for w in words])
    return seqs


def flat(seqs):
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.array([t for s in seqs for t in s], dtype=np.int32)
    return tokens, offsets




def net_spec(dims, acts, loss, optimizer, learning_rate=1e-3, layers=None, **hyper) -> dict:
    """The compiled Net's description (cpp/spec.h) of a Dense stack: dims (D, H_1, ..., O),
    one activation per layer, a loss, an optimizer kind and its hyper-parameters; `layers`:
    more fields per layer (e.g. {"kernel_l2": 0.01}), or None."""
    more = layers or [{}] * len(acts)
    return {"input_dim": dims[0],
            "layers": [{"kind": "dense", "units": u, "activation": a, **m}
                       for u, a, m in zip(dims[1:], acts, more)],
            "loss": loss,
            "optimizer": {"kind": optimizer, "learning_rate": learning_rate, **hyper}}


def make_net(module, dims, acts, loss, optimizer, learning_rate=1e-3, device=None, **hyper):
    """module.Net (_core, _cuda or _cuda_sim) built from net_spec's arguments."""
    spec = net_spec(dims, acts, loss, optimizer, learning_rate, **hyper)
    return module.Net(spec) if device is None else module.Net(spec, device=device)


def run_until_interrupted(model, x, y, batch_size) -> bool:
    """Long work for a SIGINT to stop: 100 epochs of fit (batch_size), or 100 predicts over x
    (batch_size None). True when a KeyboardInterrupt ended it."""
    try:
        if batch_size:
            model.fit(x, y, epochs=100, batch_size=batch_size, verbose=0)
        else:
            for _ in range(100):
                model.predict(x, verbose=0)
    except KeyboardInterrupt:
        return True
    return False


def assert_gradients_match(grads, params, f, what=""):
    """grads (one array per parameter) against central differences of the scalar f(params),
    in float64 with h = 1e-6: truncation O(h^2) ~ 1e-12 and rounding ~ eps |f| / h ~ 1e-10, so
    1e-6 relative agreement is a strict check (tests/test_gradcheck.py)."""
    import numpy as np
    h = 1e-6
    for i, p in enumerate(params):
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[i][idx] += h
            minus[i][idx] -= h
            numeric[idx] = (f(plus) - f(minus)) / (2 * h)
        np.testing.assert_allclose(grads[i], numeric, rtol=1e-6, atol=1e-9,
                                   err_msg=f"parameter {i} {what}")


def assert_gpu_fit_matches_cpu(module, cpu, x, y, loss="binary_crossentropy", check=None):
    """A copy of the compiled CPU model `cpu` on the GPU backend `module` (its config and
    weights), then the same 2-epoch fit on both: the histories agree to 1e-5 and the weights to
    1e-4 (the backends sum the first layer in different orders, common.h: rounding apart).
    check(gpu), if given, runs on the GPU model before its fit."""
    import numpy as np
    import imdbfast
    from imdbfast import _backend
    previous = _backend.use_cuda_module(module)
    try:
        gpu = imdbfast.Sequential.from_config(cpu.get_config(), device="cuda")
        gpu.compile("rmsprop", loss, metrics=["accuracy"])
        gpu.set_weights(cpu.get_weights())
        if check is not None:
            check(gpu)
        hg = gpu.fit(x, y, epochs=2, batch_size=64, verbose=0, seed=2, validation_split=0.2)
        wg = gpu.get_weights()
    finally:
        _backend.use_cuda_module(previous)
    hc = cpu.fit(x, y, epochs=2, batch_size=64, verbose=0, seed=2, validation_split=0.2)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(hg.history[key], hc.history[key], rtol=1e-5, err_msg=key)
    for a, b in zip(wg, cpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def assert_epochs_follow_reference(net, model, x, y, dense, batch_size, epochs, seed=2):
    """`epochs` epochs of the Net (one thread) and of the float64 reference model in the same
    batch order: every batch loss within reference.TRAJECTORY."""
    import numpy as np
    import reference as ref
    from conftest import assert_close
    from imdbfast import _core
    n = x.n_rows
    for epoch in range(epochs):
        order = _core.shuffle_order(n, seed, epoch)
        per_batch = net.train_batches(x, y, None, order, batch_size, 0, -(-n // batch_size), 1,
                                      True)[3]
        ref_batches = model.train_epoch(dense, y.astype(np.float64), order, batch_size)[0]
        assert_close(per_batch, [b[0] for b in ref_batches], **ref.TRAJECTORY,
                     what=f"epoch {epoch} batch losses")

