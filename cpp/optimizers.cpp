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
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"

namespace imdbfast {
namespace cpu {

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

namespace {

// rho^k in float32 for the lazy catch-up: each entry is pow(rho, k) in double rounded once, so
// the value never depends on how or by which thread the table was built. The per-thread table is
// looked up once per call (thread_local access in a shared library is a function call) and grows
// until rho^k underflows to zero (k ~ 1000 for rho = 0.9); past that the factor is 0.
struct DecayTable {
    const float* p;
    int64_t n;
    float operator()(int64_t k) const { return k < n ? p[k] : 0.0f; }
};

DecayTable decay_table(float rho, int64_t k_max) {
    constexpr int64_t kMaxTable = int64_t(1) << 20;
    thread_local std::vector<float> table;
    thread_local float table_rho = -1.0f;
    if (table_rho != rho) {
        table.assign(1, 1.0f);
        table_rho = rho;
    }
    const int64_t want = std::min(k_max, kMaxTable - 1) + 1;
    while (static_cast<int64_t>(table.size()) < want && table.back() != 0.0f)
        table.push_back(static_cast<float>(std::pow(static_cast<double>(rho), double(table.size()))));
    // Past a table capped before underflow (rho within ~1e-5 of 1), fall back to pow: rare.
    return DecayTable{table.data(), static_cast<int64_t>(table.size())};
}

float decay_factor(const DecayTable& t, float rho, int64_t k) {
    if (k < t.n || t.p[t.n - 1] == 0.0f) return t(k);
    return static_cast<float>(std::pow(static_cast<double>(rho), double(k)));
}

}  // namespace

OptimizerSlots optimizer_slots(const OptimizerConfig& c) {
    OptimizerSlots k;
    auto add = [&k](int& slot) { slot = k.count++; };
    switch (c.kind) {
        case OPT_RMSPROP:
            add(k.velocity);
            if (c.momentum > 0) add(k.momentum);
            if (c.centered) add(k.average_gradient);
            break;
        case OPT_ADAM:
            add(k.momentum);
            add(k.velocity);
            if (c.amsgrad) add(k.velocity_hat);
            break;
        default:
            if (c.momentum != 0) add(k.momentum);
    }
    return k;
}

std::vector<std::string> OptimizerSlots::names() const {
    std::vector<std::string> out(static_cast<size_t>(count));
    const std::pair<int, const char*> named[] = {{velocity, "velocity"},
                                                 {momentum, "momentum"},
                                                 {average_gradient, "average_gradient"},
                                                 {velocity_hat, "velocity_hat"}};
    for (const auto& [index, name] : named)
        if (index >= 0) out[index] = name;
    return out;
}

bool optimizer_is_lazy(const OptimizerConfig& c) {
    return (c.kind == OPT_RMSPROP || c.kind == OPT_SGD) && c.momentum == 0;
}

namespace {

// The dense loops, one instantiation per configuration: with the flags compile-time constants
// the element functions fold to straight-line code and the loops vectorise. Unused slots are
// per-iteration locals (a shared dummy would be a loop-carried dependency).
template <bool kMomentum, bool kCentered>
void rmsprop_loop(RMSpropStep s, float* w, const float* g, float* v, float* m, float* mg,
                  int64_t n0, int64_t n1) {
    s.centered = kCentered;
    if (!kMomentum) s.momentum = 0.0f;
    for (int64_t n = n0; n < n1; ++n) {
        float d1 = 0.0f, d2 = 0.0f;
        rmsprop_elem(w[n], g[n], v[n], kMomentum ? m[n] : d1, kCentered ? mg[n] : d2, s);
    }
}

template <bool kAmsgrad>
void adam_loop(AdamStep s, float* w, const float* g, float* m, float* v, float* vh, int64_t n0,
               int64_t n1) {
    s.amsgrad = kAmsgrad;
    for (int64_t n = n0; n < n1; ++n) {
        float d = 0.0f;
        adam_elem(w[n], g[n], m[n], v[n], kAmsgrad ? vh[n] : d, s);
    }
}

template <bool kMomentum, bool kNesterov>
void sgd_loop(SGDStep s, float* w, const float* g, float* m, int64_t n0, int64_t n1) {
    if (!kMomentum) s.momentum = 0.0f;
    s.nesterov = kNesterov;
    for (int64_t n = n0; n < n1; ++n) {
        float d = 0.0f;
        sgd_elem(w[n], g[n], kMomentum ? m[n] : d, s);
    }
}

}  // namespace

void optimizer_update(const OptimizerConfig& c, int64_t iteration, float* w, const float* g,
                      float* const* slots, int64_t n0, int64_t n1) {
    const OptimizerSlots k = optimizer_slots(c);
    float* v = slot_of(slots, k.velocity);
    float* m = slot_of(slots, k.momentum);
    if (c.kind == OPT_RMSPROP) {
        const RMSpropStep s = rmsprop_step(c);
        float* mg = slot_of(slots, k.average_gradient);
        if (m && mg) rmsprop_loop<true, true>(s, w, g, v, m, mg, n0, n1);
        else if (m) rmsprop_loop<true, false>(s, w, g, v, m, mg, n0, n1);
        else if (mg) rmsprop_loop<false, true>(s, w, g, v, m, mg, n0, n1);
        else rmsprop_loop<false, false>(s, w, g, v, m, mg, n0, n1);
    } else if (c.kind == OPT_ADAM) {
        const AdamStep s = adam_step(c, iteration);
        float* vh = slot_of(slots, k.velocity_hat);
        if (vh) adam_loop<true>(s, w, g, m, v, vh, n0, n1);
        else adam_loop<false>(s, w, g, m, v, nullptr, n0, n1);
    } else {
        const SGDStep s = sgd_step(c);
        if (!m) sgd_loop<false, false>(s, w, g, nullptr, n0, n1);
        else if (c.nesterov) sgd_loop<true, true>(s, w, g, m, n0, n1);
        else sgd_loop<true, false>(s, w, g, m, n0, n1);
    }
}

void optimizer_catch_up(const OptimizerConfig& c, int64_t iterations, float* const* slots,
                        int64_t H, int64_t* synced, int64_t r0, int64_t r1) {
    if (c.kind != OPT_RMSPROP) {  // lazy SGD has no slots
        for (int64_t r = r0; r < r1; ++r) synced[r] = iterations;
        return;
    }
    const float rho = static_cast<float>(c.rho);
    const DecayTable table = decay_table(rho, iterations);
    const OptimizerSlots k = optimizer_slots(c);
    float* v = slot_of(slots, k.velocity);
    float* mg = slot_of(slots, k.average_gradient);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t k = iterations - synced[r];
        if (k > 0)
            rmsprop_catch_up(v + r * H, mg ? mg + r * H : nullptr, H, decay_factor(table, rho, k));
        synced[r] = iterations;
    }
}

namespace {

// The lazy update of one row r with gradient row g (H floats): catch up the steps it missed,
// then take this step. One instance per call; the step's constants are computed once.
template <int HC>
struct LazyRowUpdate {
    const OptimizerConfig& c;
    int64_t iteration;
    float* W;
    float* v;   // RMSprop velocity (null for SGD)
    float* mg;  // RMSprop average gradient when centered, else null
    int64_t* synced;
    int64_t H;
    RMSpropStep rs;
    SGDStep ss;
    DecayTable table;

    LazyRowUpdate(const OptimizerConfig& cfg, int64_t it, float* w, float* const* slots,
                  int64_t* sy, int64_t h)
        : c(cfg), iteration(it), W(w), v(nullptr), mg(nullptr), synced(sy), H(HC > 0 ? HC : h),
          rs(rmsprop_step(cfg)), ss(sgd_step(cfg)), table(decay_table(rs.rho, it)) {
        if (c.kind == OPT_RMSPROP) {
            const OptimizerSlots k = optimizer_slots(c);
            v = slot_of(slots, k.velocity);
            mg = slot_of(slots, k.average_gradient);
        }
    }

    void prefetch(int64_t r) const {
        __builtin_prefetch(W + r * H, 1);
        if (v) __builtin_prefetch(v + r * H, 1);
        __builtin_prefetch(synced + r, 1);
    }

    void operator()(int64_t r, const float* g) const {
        float* w = W + r * H;
        if (v) {
            float* vr = v + r * H;
            float* mgr = mg ? mg + r * H : nullptr;
            const int64_t k = iteration - synced[r];
            if (k > 0) rmsprop_catch_up(vr, mgr, H, decay_factor(table, rs.rho, k));
            // Lazy means momentum 0; slots the configuration lacks are per-element locals.
            RMSpropStep st = rs;
            st.momentum = 0.0f;
            if (mgr) {
                st.centered = 1;
                for (int64_t h = 0; h < H; ++h) {
                    float d1 = 0.0f;
                    rmsprop_elem(w[h], g[h], vr[h], d1, mgr[h], st);
                }
            } else {
                st.centered = 0;
                for (int64_t h = 0; h < H; ++h) {
                    float d1 = 0.0f, d2 = 0.0f;
                    rmsprop_elem(w[h], g[h], vr[h], d1, d2, st);
                }
            }
        } else {
            SGDStep st = ss;
            st.momentum = 0.0f;
            for (int64_t h = 0; h < H; ++h) {
                float d1 = 0.0f;
                sgd_elem(w[h], g[h], d1, st);
            }
        }
        synced[r] = iteration + 1;
    }
};

}  // namespace

void optimizer_update_touched(const OptimizerConfig& c, int64_t iteration, float* W, float* G,
                              float* const* slots, int64_t H, const int32_t* touched,
                              int64_t n_rows, int64_t* synced) {
    auto run = [&](auto hc) {
        const LazyRowUpdate<decltype(hc)::value> update(c, iteration, W, slots, synced, H);
        constexpr int64_t kAhead = 8;  // rows ascending but sparse: prefetch W, v and G ahead
        for (int64_t i = 0; i < n_rows; ++i) {
            if (i + kAhead < n_rows) {
                update.prefetch(touched[i + kAhead]);
                __builtin_prefetch(G + int64_t(touched[i + kAhead]) * update.H, 1);
            }
            float* g = G + int64_t(touched[i]) * update.H;
            update(touched[i], g);
            std::fill_n(g, update.H, 0.0f);
        }
    };
#define CALL(HC) run(std::integral_constant<int, HC>{})
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

}  // namespace cpu
}  // namespace imdbfast
