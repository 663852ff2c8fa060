"""A plain float64 NumPy reference of every imdbfast kernel and of whole Keras training steps.

This is the source of truth the compiled float32 kernels are tested against. It follows Keras 3's
formulas (keras/src/layers, optimizers, losses): kernels stored (in, out), glorot-uniform
init, RMSprop with epsilon inside the square root, Adam and SGD as keras/src/optimizers, binary
cross-entropy from the logit of a sigmoid output (TF's graph-mode path) or on clipped
probabilities, MSE, batch loss = sum(w_i * l_i) / B plus the weight penalties
(keras/src/regularizers: l1 sum|w| + l2 sum w^2, on the weights before the step), strict ``> 0.5``
accuracy, epoch loss weighted by batch size. It is written for clarity, not speed, and is itself checked by finite
differences (tests/test_gradcheck.py).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7  # keras.config.epsilon()
# Keras clips float32 predictions, so the clip points are float32 numbers: 1 - 1e-7 is
# 0.99999988 there, which caps the loss of a confident mistake at 15.942 (not 16.118).
CLIP_LO = float(np.float32(EPS))
CLIP_HI = float(np.float32(1 - EPS))


# ---- encoding ------------------------------------------------------------------------------------

def multi_hot(sequences, num_words: int) -> np.ndarray:
    """The book's vectorize_sequences: (N, num_words) with 1.0 where a token occurs."""
    out = np.zeros((len(sequences), num_words))
    for i, seq in enumerate(sequences):
        out[i, list(seq)] = 1.0
    return out


# ---- activations ---------------------------------------------------------------------------------

def act(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "softmax":  # per row
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z.copy()


def act_grad(name: str, da: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """dL/dz from dL/da; relu'(0) = 0 as in TF."""
    if name == "relu":
        return da * (z > 0)
    if name == "tanh":
        return da * (1.0 - a * a)
    if name == "sigmoid":
        return da * a * (1.0 - a)
    if name == "softmax":  # the row's Jacobian: a (da - sum(da a))
        return a * (da - (da * a).sum(axis=1, keepdims=True))
    return da.copy()


# ---- losses: per-sample loss (mean over outputs) and d(batch loss)/d(output) ----------------------

def loss_and_grad(kind: str, z, a, y, sw=None):
    """Returns (per-sample weighted loss (B,), dz (B, O), per-sample accuracy (B,)).

    kind: 'bce_logits' (sigmoid output, loss from the logit z), 'bce_probs' (Keras's clipped
    probability form on a = the output), 'mse', 'cce_logits' (softmax output: categorical
    cross-entropy from z, summed over the outputs), 'cce_from_logits' (a is the logits). The
    gradient is of sum(w_i l_i) / B w.r.t. z (the caller applies the output activation's
    derivative but for the *_logits kinds of sigmoid / softmax outputs). Accuracy is Keras's
    "accuracy": binary for one output, categorical (first argmax) for several.
    """
    B, O = z.shape
    w = np.ones(B) if sw is None else np.asarray(sw, dtype=np.float64)
    scale = (w / (O * B))[:, None]
    acc = ((a > 0.5).astype(np.float64) == y).mean(axis=1) if O == 1 else \
        (np.argmax(a, axis=1) == np.argmax(y, axis=1)).astype(np.float64)
    if kind in ("cce_logits", "cce_from_logits"):
        logits = z if kind == "cce_logits" else a
        m = logits.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        per = (y * (lse - logits)).sum(axis=1)
        dz = (act("softmax", logits) * y.sum(axis=1, keepdims=True) - y) * (w / B)[:, None]
        return w * per, dz, acc
    if kind == "bce_logits":
        elem = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        dz = (a - y) * scale
    elif kind == "bce_probs":
        p = np.clip(a, CLIP_LO, CLIP_HI)
        elem = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        inside = (a >= CLIP_LO) & (a <= CLIP_HI)  # the clip passes gradient only inside
        dp = np.where(inside, (-y / p + (1 - y) / (1 - p)), 0.0) * scale
        dz = dp  # caller applies the output activation's derivative
    elif kind == "mse":
        elem = (a - y) ** 2
        dz = 2 * (a - y) * scale
    else:
        raise ValueError(kind)
    return w * elem.mean(axis=1), dz, acc


# ---- the network --------------------------------------------------------------------------------

def forward(params, acts, x, masks=None):
    """params: [W1, b1, W2, b2, ...] (Keras layout); x (B, D). Returns lists z, a per layer.
    masks (training with Dropout): per layer None or the (B, H) factors keep / (1 - rate) its
    output is multiplied by before the next layer reads it (a stays unmasked)."""
    zs, as_ = [], []
    h = x
    for l, name in enumerate(acts):
        z = h @ params[2 * l] + params[2 * l + 1]
        a = act(name, z)
        zs.append(z)
        as_.append(a)
        h = a if masks is None or masks[l] is None else a * masks[l]
    return zs, as_


def gradients(params, acts, loss, x, y, sw=None, masks=None):
    """Batch loss sum(w_i l_i)/B, accuracy sum, and the gradient of every parameter."""
    zs, as_ = forward(params, acts, x, masks)
    lrow, dz, acc = loss_and_grad(loss, zs[-1], as_[-1], y, sw)
    if loss not in ("bce_logits", "cce_logits"):
        dz = act_grad(acts[-1], dz, zs[-1], as_[-1])
    grads = [None] * len(params)
    def mask(l):
        return 1.0 if masks is None or masks[l] is None else masks[l]

    for l in range(len(acts) - 1, -1, -1):
        inp = x if l == 0 else as_[l - 1] * mask(l - 1)
        grads[2 * l] = inp.T @ dz
        grads[2 * l + 1] = dz.sum(axis=0)
        if l > 0:
            da = (dz @ params[2 * l].T) * mask(l - 1)
            dz = act_grad(acts[l - 1], da, zs[l - 1], as_[l - 1])
    return lrow.sum() / x.shape[0], acc.sum(), grads, lrow


# ---- dropout masks (cpp/common.h's counter-based hash, written again in NumPy) --------------

_U = np.uint64


def _mix64(z):
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)  # (uint64 arrays wrap, as C++)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return z ^ (z >> _U(31))


def dropout_keep(seed: int, step: int, rows, H: int, rate: float) -> np.ndarray:
    """(B, H) bool: element (row rows[b], unit h) kept at optimizer step `step`."""
    mixed = np.array([seed], dtype=np.uint64) ^ (np.array([step], dtype=np.uint64) *
                                                 _U(0x9E3779B97F4A7C15))
    key = _mix64(_mix64(mixed) ^ np.asarray(rows, dtype=np.uint64))
    h = np.arange(1, H + 1, dtype=np.uint64) * _U(0xD1B54A32D192ED03)
    threshold = int(np.floor(rate * 2.0 ** 32 + 0.5))
    return (_mix64(key[:, None] + h[None, :]) >> _U(32)) >= _U(threshold)


def dropout_factors(seed: int, step: int, rows, H: int, rate: float) -> np.ndarray:
    """keep / (1 - rate): what the layer's output is multiplied by in training."""
    return dropout_keep(seed, step, rows, H, rate) / (1.0 - rate)


# ---- weight penalties (keras/src/regularizers: L1L2) ------------------------------------------

def penalty(params, penalties) -> float:
    """sum over parameters of l1 * sum|w| + l2 * sum w^2; penalties: (l1, l2) per parameter."""
    return float(sum(l1 * np.abs(w).sum() + l2 * np.square(w).sum()
                     for w, (l1, l2) in zip(params, penalties)))


def penalty_grads(params, penalties) -> list:
    """d(penalty)/dw per parameter: l1 sign(w) + 2 l2 w (sign(0) = 0, TF's abs gradient)."""
    return [l1 * np.sign(w) + 2 * l2 * w for w, (l1, l2) in zip(params, penalties)]


# ---- optimizers (keras/src/optimizers), one step on one variable --------------------------------

def optimizer_slots(kind: str, cfg: dict, shape) -> list:
    if kind == "rmsprop":
        n = 1 + (cfg.get("momentum", 0) > 0) + bool(cfg.get("centered", False))
    elif kind == "adam":
        n = 2 + bool(cfg.get("amsgrad", False))
    else:
        n = 1 if cfg.get("momentum", 0) != 0 else 0
    return [np.zeros(shape) for _ in range(n)]


def optimizer_step(kind: str, cfg: dict, iteration: int, w, g, slots):
    """Returns the new w; slots are updated in place. iteration: Keras's iterations before."""
    w = np.array(w, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if kind == "rmsprop":
        lr, rho, eps = cfg.get("learning_rate", 1e-3), cfg.get("rho", 0.9), cfg.get("epsilon", 1e-7)
        mom, centered = cfg.get("momentum", 0.0), cfg.get("centered", False)
        v = slots[0]
        v[...] = rho * v + (1 - rho) * g * g
        if centered:
            mg = slots[-1]
            mg[...] = rho * mg + (1 - rho) * g
            denom = v - mg * mg + eps
        else:
            denom = v + eps
        inc = lr * g / np.sqrt(denom)
        if mom > 0:
            m = slots[1]
            m[...] = mom * m + inc
            return w - m
        return w - inc
    if kind == "adam":
        lr, b1, b2 = cfg.get("learning_rate", 1e-3), cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999)
        eps = cfg.get("epsilon", 1e-7)
        t = iteration + 1
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m, v = slots[0], slots[1]
        m[...] = m + (g - m) * (1 - b1)
        v[...] = v + (g * g - v) * (1 - b2)
        vv = v
        if cfg.get("amsgrad", False):
            slots[2][...] = np.maximum(slots[2], v)
            vv = slots[2]
        return w - (m * alpha) / (np.sqrt(vv) + eps)
    if kind == "sgd":
        lr, mom = cfg.get("learning_rate", 0.01), cfg.get("momentum", 0.0)
        if mom == 0:
            return w - g * lr
        m = slots[0]
        m[...] = m * mom - g * lr
        if cfg.get("nesterov", False):
            return w + (m * mom - g * lr)
        return w + m
    raise ValueError(kind)


class Model:
    """A float64 Keras-math model: Dense layers, one optimizer, the training loop. penalties:
    (l1, l2) per parameter (Keras's kernel_regularizer / bias_regularizer), or None."""

    def __init__(self, weights, acts, loss="bce_logits", optimizer="rmsprop", penalties=None,
                 dropouts=None, **cfg):
        self.params = [np.array(w, dtype=np.float64) for w in weights]
        self.dropouts = list(dropouts) if dropouts else [None] * len(acts)  # (rate, seed)
        self.penalties = list(penalties) if penalties else [(0.0, 0.0)] * len(self.params)
        self.acts = list(acts)
        self.loss = loss
        self.kind = optimizer
        self.cfg = cfg
        self.slots = [optimizer_slots(optimizer, cfg, p.shape) for p in self.params]
        self.iterations = 0

    def masks(self, rows):
        """The next step's dropout factors for data rows `rows` (None without Dropout)."""
        if not any(self.dropouts):
            return None
        return [None if d is None else
                dropout_factors(d[1], self.iterations, rows, self.params[2 * l].shape[1], d[0])
                for l, d in enumerate(self.dropouts)]

    def train_step(self, x, y, sw=None, rows=None):
        """One batch (data rows `rows`, for the dropout masks); returns (batch loss, correct
        count) computed before the update."""
        masks = self.masks(np.arange(len(x)) if rows is None else rows)
        loss, acc, grads, _ = gradients(self.params, self.acts, self.loss, x, y, sw, masks)
        loss += penalty(self.params, self.penalties)
        grads = [g + pg for g, pg in zip(grads, penalty_grads(self.params, self.penalties))]
        for i, g in enumerate(grads):
            self.params[i] = optimizer_step(self.kind, self.cfg, self.iterations, self.params[i],
                                            g, self.slots[i])
        self.iterations += 1
        return loss, acc

    def train_epoch(self, x, y, order, batch_size, sw=None):
        """Per-batch (loss, accuracy) and the epoch's Keras logs (loss weighted by batch size)."""
        per_batch, total_loss, total_acc = [], 0.0, 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss, acc = self.train_step(x[rows], y[rows], None if sw is None else sw[rows], rows)
            per_batch.append((loss, acc / len(rows)))
            total_loss += loss * len(rows)
            total_acc += acc
        return per_batch, total_loss / len(order), total_acc / len(order)

    def predict(self, x):
        return forward(self.params, self.acts, x)[1][-1]

    def evaluate(self, x, y, sw=None):
        zs, as_ = forward(self.params, self.acts, x)
        lrow, _, acc = loss_and_grad(self.loss, zs[-1], as_[-1], y, sw)
        return lrow.mean() + penalty(self.params, self.penalties), acc.mean()


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def init_weights(rng: np.random.Generator, dims) -> list:
    """Keras's Dense defaults: glorot-uniform kernels, zero biases; float32 like Keras."""
    out = []
    for i, o in zip(dims[:-1], dims[1:]):
        out += [glorot_uniform(rng, i, o).astype(np.float32), np.zeros(o, dtype=np.float32)]
    return out


# A float32 training trajectory drifts from this float64 one only by rounding: over the dozen or
# so steps the tests run, per-step losses agree to ~1e-6 relative, so 1e-5 is a real check, not a
# loose one (a wrong gradient, a lost update or a race moves the loss by far more). The absolute
# part covers losses near zero, which float32 cannot know relatively: a loss is computed from
# float32 outputs, whose rounding (~1e-7 for outputs of order 1) is an absolute error in
# -log(p) near p = 1 and in (a - y)^2 near a = y; it is below anything a bug would change.
TRAJECTORY = dict(rtol=1e-5, atol=1e-7)
