// metrics.cpp: Keras's compile metrics as sums over rows (see kernels.h). The per-element
// formulas are common.h's (the loss kernels use the same ones).
#include <cmath>
#include <stdexcept>

#include "common.h"
#include "kernels.h"

namespace imdbfast {
namespace cpu {

namespace {

double divide_no_nan(double a, double b) { return b == 0.0 ? 0.0 : a / b; }

// Keras's bucket for AUC's evenly spaced thresholds (with the epsilon ends): p clipped to
// [0, 1], ceil(p * (T - 1)) - 1 in float32, at least 0. The bucket b counts for the
// thresholds 0..b (p > threshold). A NaN output (a diverged model) counts as 0: never an index
// outside the state.
int64_t auc_bucket(float p, int64_t T) {
    p = !(p >= 0.0f) ? 0.0f : (p > 1.0f ? 1.0f : p);
    const float b = std::ceil(p * static_cast<float>(T - 1)) - 1.0f;
    return b < 0.0f ? 0 : static_cast<int64_t>(b);
}

}  // namespace

int64_t metric_state_size(int kind, int64_t num_thresholds) {
    switch (kind) {
        case METRIC_AUC: return 2 * num_thresholds;
        case METRIC_PRECISION:
        case METRIC_RECALL: return 3;
        case METRIC_BINARY_ACCURACY:
        case METRIC_MSE:
        case METRIC_MAE:
        case METRIC_BCE:
        case METRIC_CATEGORICAL_ACCURACY:
        case METRIC_TOP_K:
        case METRIC_CCE: return 2;
        default: throw std::invalid_argument("metric: unknown kind");
    }
}

void metric_update(int kind, double* state, const float* out, const float* y, const float* sw,
                   const int64_t* rows, int64_t n, int64_t O, float threshold,
                   int64_t num_thresholds) {
    const double inv_o = 1.0 / static_cast<double>(O);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t r = rows ? rows[i] : i;
        const float* p = out + i * O;
        const float* t = y + r * O;
        const double w = sw ? static_cast<double>(sw[r]) : 1.0;
        if (kind == METRIC_AUC) {
            for (int64_t o = 0; o < O; ++o)  // (Keras flattens the outputs: multi_label=False)
                state[(t[o] != 0.0f ? 0 : num_thresholds) + auc_bucket(p[o], num_thresholds)] += w;
            continue;
        }
        if (kind == METRIC_PRECISION || kind == METRIC_RECALL) {
            for (int64_t o = 0; o < O; ++o) {
                const bool pos = p[o] > threshold, truth = t[o] != 0.0f;
                if (pos && truth) state[0] += w;         // true positive
                else if (pos) state[1] += w;             // false positive
                else if (truth) state[2] += w;           // false negative
            }
            continue;
        }
        if (kind == METRIC_CATEGORICAL_ACCURACY || kind == METRIC_TOP_K || kind == METRIC_CCE) {
            const double v = kind == METRIC_CATEGORICAL_ACCURACY ? categorical_correct(p, t, O)
                             : kind == METRIC_TOP_K ? top_k_correct(p, t, O, num_thresholds)
                                                    : cce_probs_loss(p, t, O);
            state[0] += w * v;
            state[1] += w;
            continue;
        }
        double v = 0.0;
        for (int64_t o = 0; o < O; ++o) {
            switch (kind) {
                case METRIC_BINARY_ACCURACY: v += binary_correct(p[o], t[o], threshold); break;
                case METRIC_MSE: v += mse_loss(p[o], t[o]); break;
                case METRIC_MAE: v += mae_loss(p[o], t[o]); break;
                default: v += bce_probs_loss(p[o], t[o]);
            }
        }
        state[0] += w * (v * inv_o);
        state[1] += w;
    }
}

double metric_result(int kind, const double* state, int64_t num_thresholds) {
    switch (kind) {
        case METRIC_PRECISION: return divide_no_nan(state[0], state[0] + state[1]);
        case METRIC_RECALL: return divide_no_nan(state[0], state[0] + state[2]);
        case METRIC_AUC: {
            // tp[i], fp[i]: positives and negatives predicted above threshold i (the buckets
            // from i up); recall = tp / positives, fp rate = fp / negatives; the ROC curve
            // summed with trapezoids from threshold 0 (the point (1, 1)) up.
            const int64_t T = num_thresholds;
            const double* tb = state;
            const double* fb = state + T;
            double P = 0.0, Nn = 0.0;
            for (int64_t i = 0; i < T; ++i) P += tb[i], Nn += fb[i];
            double tp = P, fp = Nn, auc = 0.0;
            double x0 = divide_no_nan(fp, Nn), y0 = divide_no_nan(tp, P);
            for (int64_t i = 1; i < T; ++i) {
                tp -= tb[i - 1];
                fp -= fb[i - 1];
                const double x1 = divide_no_nan(fp, Nn), y1 = divide_no_nan(tp, P);
                auc += (x0 - x1) * ((y0 + y1) / 2.0);
                x0 = x1;
                y0 = y1;
            }
            return auc;
        }
        default: return divide_no_nan(state[0], state[1]);
    }
}

}  // namespace cpu
}  // namespace imdbfast
