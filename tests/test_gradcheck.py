"""The float64 reference's gradients against central finite differences.

The compiled kernels are tested against reference.py; this proves reference.py itself right.
In float64 with step h = 1e-6 the central difference has truncation error O(h^2 f''') ~ 1e-12
and rounding error ~ eps * |f| / h ~ 1e-10, so 1e-6 relative agreement is a strict check.
"""

import numpy as np
import pytest

import reference as ref
from datautil import assert_gradients_match

CASES = [
    (["relu", "relu", "sigmoid"], "bce_logits"),
    (["tanh", "sigmoid"], "bce_probs"),
    (["relu", "tanh", "relu", "sigmoid"], "mse"),
    (["linear"], "mse"),
    (["relu", "linear"], "bce_probs"),
]


@pytest.mark.parametrize("acts, loss", CASES)
def test_reference_gradients_match_finite_differences(rng, acts, loss):
    dims = [12] + [5] * (len(acts) - 1) + [1]
    params = [p.astype(np.float64) for p in ref.init_weights(rng, dims)]
    params = [p + rng.normal(0, 0.1, p.shape) for p in params]  # non-zero biases too
    x = (rng.random((9, dims[0])) < 0.4).astype(np.float64)
    y = rng.integers(0, 2, (9, 1)).astype(np.float64)
    if loss == "bce_probs" and acts[-1] == "linear":
        params[-1] += 0.5  # keep probabilities inside the clip range, where the loss is smooth
    sw = rng.uniform(0.5, 2.0, 9)
    _, _, grads, _ = ref.gradients(params, acts, loss, x, y, sw)
    assert_gradients_match(grads, params, lambda ps: ref.gradients(ps, acts, loss, x, y, sw)[0],
                           f"of {acts} with {loss}")


def test_reference_rmsprop_matches_keras_docstring():
    slots = ref.optimizer_slots("rmsprop", {}, (1,))
    w = ref.optimizer_step("rmsprop", {"learning_rate": 0.1}, 0, np.array([10.0]), np.array([10.0]), slots)
    assert w[0] == pytest.approx(9.683772, abs=1e-6)
