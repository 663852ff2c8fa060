// optimizers.cpp: RMSprop, Adam and SGD with Keras 3 semantics (element math in common.h), as a
// dense update over a range of elements and as a lazy update over the touched rows of the
// sparse first layer.
//
// Why lazy is exact: with momentum 0, a zero gradient leaves RMSprop's weight unchanged
// (lr * 0 / sqrt(v + eps) = 0) and only decays its slots (v <- rho v, and mg <- rho mg when
// centered). A row untouched for k steps therefore needs only v <- rho^k v before its next real
// step. rho^k comes from a table built in double and rounded once, where the dense update
// rounds after each of the k multiplications: the two agree to about k float32 ulps, and tests
// check lazy against dense within that.
#include <cmath>
#include <vector>

#include "kernels.h"

namespace imdbfast {
namespace cpu {
namespace {

RMSpropStep rmsprop_step(const OptimizerConfig& c) {
    return RMSpropStep{static_cast<float>(c.learning_rate), static_cast<float>(c.rho),
                       static_cast<float>(1.0 - c.rho), static_cast<float>(c.epsilon),
                       static_cast<float>(c.momentum), c.centered ? 1 : 0};
}

// Keras computes the bias corrections in float32 from float32 hyper-parameters.
AdamStep adam_step(const OptimizerConfig& c, int64_t iteration) {
    const float t = static_cast<float>(iteration + 1);
    const float b1p = std::pow(static_cast<float>(c.beta_1), t);
    const float b2p = std::pow(static_cast<float>(c.beta_2), t);
    const float lr = static_cast<float>(c.learning_rate);
    const float alpha = lr * std::sqrt(1.0f - b2p) / (1.0f - b1p);
    return AdamStep{alpha, static_cast<float>(1.0 - c.beta_1), static_cast<float>(1.0 - c.beta_2),
                    static_cast<float>(c.epsilon), c.amsgrad ? 1 : 0};
}

SGDStep sgd_step(const OptimizerConfig& c) {
    return SGDStep{static_cast<float>(c.learning_rate), static_cast<float>(c.momentum),
                   c.nesterov ? 1 : 0};
}

// rho^k in float32, for the lazy catch-up. Per thread, rebuilt when rho changes; it stops
// growing once rho^k underflows to zero (k ~ 1000 for rho = 0.9), beyond which the factor is 0.
float decay_factor(float rho, int64_t k) {
    constexpr int64_t kMaxTable = int64_t(1) << 16;
    thread_local std::vector<float> table;
    thread_local float table_rho = -1.0f;
    if (k == 0) return 1.0f;
    if (table_rho != rho) {
        table.assign(1, 1.0f);
        table_rho = rho;
    }
    if (k < static_cast<int64_t>(table.size())) return table[k];
    if (table.back() == 0.0f) return 0.0f;
    if (k >= kMaxTable) return static_cast<float>(std::pow(static_cast<double>(rho), double(k)));
    double p = std::pow(static_cast<double>(rho), double(table.size() - 1));
    while (static_cast<int64_t>(table.size()) <= k) {
        p *= rho;
        table.push_back(static_cast<float>(p));
        if (table.back() == 0.0f) return k < static_cast<int64_t>(table.size()) ? table[k] : 0.0f;
    }
    return table[k];
}

}  // namespace

int optimizer_num_slots(const OptimizerConfig& c) {
    switch (c.kind) {
        case OPT_RMSPROP: return 1 + (c.momentum > 0) + (c.centered ? 1 : 0);
        case OPT_ADAM: return 2 + (c.amsgrad ? 1 : 0);
        default: return c.momentum != 0 ? 1 : 0;
    }
}

bool optimizer_is_lazy(const OptimizerConfig& c) {
    return (c.kind == OPT_RMSPROP || c.kind == OPT_SGD) && c.momentum == 0;
}

void optimizer_update(const OptimizerConfig& c, int64_t iteration, float* w, const float* g,
                      float* const* slots, int64_t n0, int64_t n1) {
    float dummy = 0.0f;
    if (c.kind == OPT_RMSPROP) {
        const RMSpropStep s = rmsprop_step(c);
        float* v = slots[0];
        float* m = c.momentum > 0 ? slots[1] : nullptr;
        float* mg = c.centered ? slots[c.momentum > 0 ? 2 : 1] : nullptr;
        if (!m && !mg) {  // the default configuration: keep it a tight, vectorisable loop
            for (int64_t n = n0; n < n1; ++n) rmsprop_elem(w[n], g[n], v[n], dummy, dummy, s);
            return;
        }
        for (int64_t n = n0; n < n1; ++n) {
            float d1 = 0.0f, d2 = 0.0f;
            rmsprop_elem(w[n], g[n], v[n], m ? m[n] : d1, mg ? mg[n] : d2, s);
        }
    } else if (c.kind == OPT_ADAM) {
        const AdamStep s = adam_step(c, iteration);
        float* m = slots[0];
        float* v = slots[1];
        float* vh = c.amsgrad ? slots[2] : nullptr;
        for (int64_t n = n0; n < n1; ++n) {
            float d = 0.0f;
            adam_elem(w[n], g[n], m[n], v[n], vh ? vh[n] : d, s);
        }
    } else {
        const SGDStep s = sgd_step(c);
        float* m = c.momentum != 0 ? slots[0] : nullptr;
        for (int64_t n = n0; n < n1; ++n) {
            float d = 0.0f;
            sgd_elem(w[n], g[n], m ? m[n] : d, s);
        }
    }
}

void optimizer_catch_up(const OptimizerConfig& c, int64_t iterations, float* const* slots,
                        int64_t H, int64_t* synced, int64_t r0, int64_t r1) {
    if (c.kind != OPT_RMSPROP) {  // lazy SGD has no slots
        for (int64_t r = r0; r < r1; ++r) synced[r] = iterations;
        return;
    }
    const float rho = static_cast<float>(c.rho);
    float* v = slots[0];
    float* mg = c.centered ? slots[1] : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t k = iterations - synced[r];
        if (k > 0) {
            const float f = decay_factor(rho, k);
            for (int64_t h = 0; h < H; ++h) v[r * H + h] *= f;
            if (mg)
                for (int64_t h = 0; h < H; ++h) mg[r * H + h] *= f;
        }
        synced[r] = iterations;
    }
}

namespace {

template <int HC>
void update_rows_impl(const OptimizerConfig& c, int64_t iteration, float* W, const float* Gc,
                      float* const* slots, int64_t Hrt, const int64_t* rows, int64_t n_rows,
                      int64_t* synced) {
    const int64_t H = HC > 0 ? HC : Hrt;
    constexpr int64_t kAhead = 8;  // rows are visited at random: prefetch W, G, v rows ahead
    float dummy = 0.0f;
    if (c.kind == OPT_RMSPROP) {
        const RMSpropStep s = rmsprop_step(c);
        float* v = slots[0];
        float* mg = c.centered ? slots[1] : nullptr;
        for (int64_t i = 0; i < n_rows; ++i) {
            if (i + kAhead < n_rows) {
                const int64_t q = rows[i + kAhead];
                __builtin_prefetch(W + q * H, 1);
                __builtin_prefetch(v + q * H, 1);
                __builtin_prefetch(synced + q, 1);
            }
            const int64_t r = rows[i];
            const int64_t k = iteration - synced[r];
            float* vr = v + r * H;
            float* mgr = mg ? mg + r * H : nullptr;
            if (k > 0) {
                const float f = decay_factor(s.rho, k);
                for (int64_t h = 0; h < H; ++h) vr[h] *= f;
                if (mgr)
                    for (int64_t h = 0; h < H; ++h) mgr[h] *= f;
            }
            float* w = W + r * H;
            const float* g = Gc + i * H;
            if (mgr) {
                for (int64_t h = 0; h < H; ++h) rmsprop_elem(w[h], g[h], vr[h], dummy, mgr[h], s);
            } else {
                for (int64_t h = 0; h < H; ++h) {
                    float d1 = 0.0f, d2 = 0.0f;  // unused: momentum 0, not centered
                    rmsprop_elem(w[h], g[h], vr[h], d1, d2, s);
                }
            }
            synced[r] = iteration + 1;
        }
        return;
    }
    const SGDStep s = sgd_step(c);  // lazy SGD: momentum 0, no slots
    for (int64_t i = 0; i < n_rows; ++i) {
        const int64_t r = rows[i];
        float* w = W + r * H;
        const float* g = Gc + i * H;
        for (int64_t h = 0; h < H; ++h) sgd_elem(w[h], g[h], dummy, s);
        synced[r] = iteration + 1;
    }
}

}  // namespace

void optimizer_update_rows(const OptimizerConfig& c, int64_t iteration, float* W, const float* Gc,
                           float* const* slots, int64_t H, const int64_t* rows, int64_t n_rows,
                           int64_t* synced) {
#define CALL(HC) update_rows_impl<HC>(c, iteration, W, Gc, slots, H, rows, n_rows, synced)
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

}  // namespace cpu
}  // namespace imdbfast
