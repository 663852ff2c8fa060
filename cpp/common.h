// common.h: every scalar formula imdbfast uses, written once for the CPU and (later) CUDA.
//
// The loops that apply these live in cpp/*.cpp (OpenMP) and cuda/*.cu; only the loops differ.
// No STL, no I/O here: this header must compile under nvcc as __host__ __device__ code.
// Semantics follow Keras 3: the comments name the Keras source (keras/src/...) each formula
// reproduces.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define IMDBFAST_HD __host__ __device__
#else
#define IMDBFAST_HD
#endif

namespace imdbfast {

// ---------------------------------------------------------------------------------------------
// Activations. Backward takes both the pre-activation z and the output a: relu's derivative is
// defined on z (0 at z == 0, as TF), tanh's and sigmoid's on a (as TF's TanhGrad/SigmoidGrad).

// Softmax is a row's function, not an element's: the output layer only (softmax_row; its
// gradient is row_loss's). activate / activate_grad pass it through.
enum Act : int { ACT_LINEAR = 0, ACT_RELU = 1, ACT_TANH = 2, ACT_SIGMOID = 3, ACT_SOFTMAX = 4 };

// Numerically stable logistic function in float32 (never exp of a large positive number).
IMDBFAST_HD inline float sigmoid(float z) {
    if (z >= 0.0f) {
        float e = expf(-z);
        return 1.0f / (1.0f + e);
    }
    float e = expf(z);
    return e / (1.0f + e);
}

// NaN test. GCC if-converts (and so vectorises) selects on __builtin_isnan, not on x != x.
#if defined(__CUDA_ARCH__)
#define IMDBFAST_ISNAN(x) isnan(x)
#else
#define IMDBFAST_ISNAN(x) __builtin_isnan(x)
#endif

// exp(x) in float32 without libm (so loops using it vectorise, and every machine and the GPU
// round identically): Cephes' expf, range-reduced by ln 2 in two parts, a degree-6 polynomial,
// scaled by 2^n through the exponent bits. Inputs are clamped to [-87, 88]: the result stays
// normal (no overflow, no denormals); callers only need that range. Loops over it vectorise
// with -fno-trapping-math (CMakeLists.txt): with trapping math GCC keeps the clamps as
// branches.
IMDBFAST_HD inline float exp_f32(float x_in) {
    // NaN must not reach the float -> int conversion below (undefined behaviour): compute on 0
    // and return the NaN at the end.
    const bool nan = IMDBFAST_ISNAN(x_in);
    float x = nan ? 0.0f : x_in;
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    // n = floor(x / ln 2 + 0.5), from a truncating conversion (floorf itself does not vectorise
    // without -fno-trapping-math); exact, since |t| < 128.
    const float t = x * 1.44269504088896341f + 0.5f;
    int32_t ni = static_cast<int32_t>(t);
    ni -= static_cast<float>(ni) > t ? 1 : 0;
    const float n = static_cast<float>(ni);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    const float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r2 + r + 1.0f;
    const int32_t bits = (ni + 127) << 23;  // 2^n, n in [-126, 127]
#if defined(__CUDA_ARCH__)
    const float scale = __int_as_float(bits);
#else
    const float scale = __builtin_bit_cast(float, bits);  // a plain bit move: vectorises
#endif
    return nan ? x_in : y * scale;
}

// tanh in float32 (Cephes' tanhf; tests check it against float64 to a few ulp): an odd
// polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above, +-1 past |x| = 9.
IMDBFAST_HD inline float tanh_f32(float x) {
    const float ax = fabsf(x);
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    float large = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
    large = ax > 9.0f ? 1.0f : large;
    large = x < 0.0f ? -large : large;
    return ax < 0.625f ? small : large;
}

// Softmax of a row of H (keras/src/activations: jax.nn.softmax): e = exp(z - max z), summed in
// order, each divided by the sum; float32.
IMDBFAST_HD inline void softmax_row(float* a, const float* z, int64_t H) {
    float m = z[0];
    for (int64_t h = 1; h < H; ++h) m = z[h] > m ? z[h] : m;
    float sum = 0.0f;
    for (int64_t h = 0; h < H; ++h) {
        a[h] = exp_f32(z[h] - m);
        sum += a[h];
    }
    for (int64_t h = 0; h < H; ++h) a[h] = a[h] / sum;
}

IMDBFAST_HD inline float activate(int act, float z) {
    switch (act) {
        case ACT_RELU: return z > 0.0f ? z : 0.0f;
        case ACT_TANH: return tanh_f32(z);
        case ACT_SIGMOID: return sigmoid(z);
        default: return z;
    }
}

// dL/dz from dL/da.
IMDBFAST_HD inline float activate_grad(int act, float da, float z, float a) {
    switch (act) {
        case ACT_RELU: return z > 0.0f ? da : 0.0f;
        case ACT_TANH: return da * (1.0f - a * a);
        case ACT_SIGMOID: return da * a * (1.0f - a);
        default: return da;
    }
}

// ---------------------------------------------------------------------------------------------
// Losses, per output element. The per-sample loss is the mean over the O outputs (Keras reduces
// the last axis), the batch loss is sum(w_i * l_i) / B ("sum_over_batch_size": divided by the
// number of samples, not by the sum of weights). Each gradient below is of that batch loss, so it
// carries the factor w / (O * B), passed in as `scale`. Categorical cross-entropy is a row's
// loss, summed over the outputs (not averaged): its factor is w / B.

enum Loss : int {
    LOSS_BCE_LOGITS = 0,  // binary cross-entropy on a sigmoid output, computed from the logit z
    LOSS_BCE_PROBS = 1,   // binary cross-entropy on probabilities clipped to [1e-7, 1 - 1e-7]
    LOSS_MSE = 2,         // mean squared error on the layer output
    LOSS_BCE_FROM_LOGITS = 3,  // binary cross-entropy whose output is the logit (from_logits)
    LOSS_CCE_LOGITS = 4,       // categorical cross-entropy on a softmax output, from its logits z
    LOSS_CCE_FROM_LOGITS = 5,  // categorical cross-entropy whose outputs are the logits
};

// Keras's backend epsilon; 1 - 1e-7 rounds to 0.9999999f in float32.
constexpr float kProbEpsilon = 1e-7f;

// max(z,0) - z*y + log1p(exp(-|z|)): TF's sigmoid_cross_entropy_with_logits, which Keras 3 uses
// on the TF backend because the sigmoid stashes its logits. Evaluated in double: it feeds the
// reported loss only, which is accumulated in double.
IMDBFAST_HD inline double bce_logits_loss(float z, float y) {
    double zd = z, yd = y;
    return (zd > 0.0 ? zd : 0.0) - zd * yd + log1p(exp(-fabs(zd)));
}
// d/dz of the above, already scaled: (sigmoid(z) - y) * scale.
IMDBFAST_HD inline float bce_logits_grad(float p, float y, float scale) { return (p - y) * scale; }

// Keras's probability form: p clipped to [eps, 1-eps], then -(y log p + (1-y) log(1-p)).
IMDBFAST_HD inline double bce_probs_loss(float p, float y) {
    const float hi = 1.0f - kProbEpsilon;
    double pc = p < kProbEpsilon ? kProbEpsilon : (p > hi ? hi : p);
    double yd = y;
    return -(yd * log(pc) + (1.0 - yd) * log(1.0 - pc));
}
// d/dp, scaled; zero where the clip is active (the clip's gradient), as in Keras.
IMDBFAST_HD inline float bce_probs_grad(float p, float y, float scale) {
    if (p < kProbEpsilon || p > 1.0f - kProbEpsilon) return 0.0f;
    return (-y / p + (1.0f - y) / (1.0f - p)) * scale;
}

IMDBFAST_HD inline double mse_loss(float p, float y) {
    double d = (double)p - (double)y;
    return d * d;
}
IMDBFAST_HD inline float mse_grad(float p, float y, float scale) { return 2.0f * (p - y) * scale; }

// Keras's binary accuracy: strict p > threshold, compared for equality with the label.
IMDBFAST_HD inline float binary_correct(float p, float y, float threshold = 0.5f) {
    return ((p > threshold) ? 1.0f : 0.0f) == y ? 1.0f : 0.0f;
}

IMDBFAST_HD inline double mae_loss(float p, float y) { return fabs((double)p - (double)y); }

// Categorical cross-entropy from logits z (softmax_cross_entropy_with_logits, TF's path for a
// softmax output): sum_o y_o (logsumexp(z) - z_o), in double (it feeds the reported loss).
IMDBFAST_HD inline double cce_logits_loss(const float* z, const float* y, int64_t O) {
    double m = z[0];
    for (int64_t o = 1; o < O; ++o) m = z[o] > m ? z[o] : m;
    double s = 0.0;
    for (int64_t o = 0; o < O; ++o) s += exp((double)z[o] - m);
    const double lse = m + log(s);
    double l = 0.0;
    for (int64_t o = 0; o < O; ++o) l += (double)y[o] * (lse - (double)z[o]);
    return l;
}

// Keras's probability form (the CategoricalCrossentropy metric): p / sum(p), clipped to
// [eps, 1 - eps], then -sum_o y_o log p_o, in double.
IMDBFAST_HD inline double cce_probs_loss(const float* p, const float* y, int64_t O) {
    float s = 0.0f;
    for (int64_t o = 0; o < O; ++o) s += p[o];
    const float hi = 1.0f - kProbEpsilon;
    double l = 0.0;
    for (int64_t o = 0; o < O; ++o) {
        float q = p[o] / s;
        q = q < kProbEpsilon ? kProbEpsilon : (q > hi ? hi : q);  // (a NaN stays NaN)
        l -= (double)y[o] * log((double)q);
    }
    return l;
}

// Keras's categorical accuracy: the first index of the largest output equals the first index
// of the largest label (argmax's tie rule). NaN outputs never win.
IMDBFAST_HD inline int64_t first_argmax(const float* v, int64_t O) {
    int64_t k = 0;
    for (int64_t o = 1; o < O; ++o)
        if (v[o] > v[k] || (IMDBFAST_ISNAN(v[k]) && !IMDBFAST_ISNAN(v[o]))) k = o;
    return k;
}
IMDBFAST_HD inline double categorical_correct(const float* p, const float* y, int64_t O) {
    return first_argmax(p, O) == first_argmax(y, O) ? 1.0 : 0.0;
}
// Keras's top-k categorical accuracy (in_top_k): the true class (the label's argmax) is in the
// top k when fewer than k outputs exceed its output (ties count for it; a NaN output loses).
IMDBFAST_HD inline double top_k_correct(const float* p, const float* y, int64_t O, int64_t k) {
    const int64_t t = first_argmax(y, O);
    const float pt = IMDBFAST_ISNAN(p[t]) ? -INFINITY : p[t];
    int64_t above = 0;
    for (int64_t o = 0; o < O; ++o) above += p[o] > pt;
    return above < k ? 1.0 : 0.0;
}

// The per-row loss step, fused: for row b of a batch (data row r, weight w, O outputs), the
// per-sample loss w * l in double (l the mean over outputs, or categorical cross-entropy's sum),
// its accuracy as Keras's "accuracy" means it (binary for one output, else categorical), and
// (kGrad) the gradient of the batch loss with respect to the last layer's pre-activation. The
// CPU's row loop (cpp/loss.cpp) and the GPU's one-thread-per-row kernel both call this.
template <bool kGrad>
IMDBFAST_HD inline void row_loss(float* dz, double* loss_out, double* correct_out, const float* z,
                                 const float* a, const float* y, float w, int last_act, int loss,
                                 int64_t O, int64_t B) {
    const double inv_o = 1.0 / static_cast<double>(O);
    *correct_out = O == 1 ? binary_correct(a[0], y[0]) : categorical_correct(a, y, O);
    if (loss == LOSS_CCE_LOGITS || loss == LOSS_CCE_FROM_LOGITS) {
        // softmax's logits: z for a softmax output, the outputs themselves with from_logits
        const float* logits = loss == LOSS_CCE_LOGITS ? z : a;
        *loss_out = static_cast<double>(w) * cce_logits_loss(logits, y, O);
        if (kGrad) {
            const float scale = w / static_cast<float>(B);
            float ysum = 0.0f;
            for (int64_t o = 0; o < O; ++o) ysum += y[o];
            if (loss == LOSS_CCE_LOGITS) {  // d/dz = (softmax(z) sum(y) - y) * scale
                for (int64_t o = 0; o < O; ++o) dz[o] = (a[o] * ysum - y[o]) * scale;
            } else {  // the same with softmax(a), then the output's own derivative
                softmax_row(dz, a, O);
                for (int64_t o = 0; o < O; ++o)
                    dz[o] = activate_grad(last_act, (dz[o] * ysum - y[o]) * scale, z[o], a[o]);
            }
        }
        return;
    }
    // d(batch loss)/d(output) = w / (O * B) * d(elementwise loss)
    const float scale = kGrad ? w / static_cast<float>(O * B) : 0.0f;
    double l = 0.0;
    for (int64_t o = 0; o < O; ++o) {
        const float p = a[o], t = y[o];
        switch (loss) {
            case LOSS_BCE_LOGITS:  // the output layer is a sigmoid: gradient straight to z
                l += bce_logits_loss(z[o], t);
                if (kGrad) dz[o] = bce_logits_grad(p, t, scale);
                break;
            case LOSS_BCE_FROM_LOGITS:  // Keras's from_logits=True: the output a is the logit
                l += bce_logits_loss(p, t);
                if (kGrad)
                    dz[o] = activate_grad(last_act, bce_logits_grad(sigmoid(p), t, scale), z[o], p);
                break;
            case LOSS_BCE_PROBS:
                l += bce_probs_loss(p, t);
                if (kGrad) dz[o] = activate_grad(last_act, bce_probs_grad(p, t, scale), z[o], p);
                break;
            default:
                l += mse_loss(p, t);
                if (kGrad) dz[o] = activate_grad(last_act, mse_grad(p, t, scale), z[o], p);
        }
    }
    if (kGrad && last_act == ACT_SOFTMAX) {  // dz = a * (g - sum(g * a)), softmax's Jacobian
        float s = 0.0f;
        for (int64_t o = 0; o < O; ++o) s += dz[o] * a[o];
        for (int64_t o = 0; o < O; ++o) dz[o] = a[o] * (dz[o] - s);
    }
    *loss_out = static_cast<double>(w) * (l * inv_o);
}

// ---------------------------------------------------------------------------------------------
// Summation orders. Every reduction in a layer has one fixed order, defined here one output
// element at a time. The GPU kernels compute each element with these functions; the CPU kernels
// (cpp/layers.cpp) compute the same sums vectorised across the row, in the same order, so both
// backends round identically (tests compare them bit for bit). One exception: the CPU's training
// loop sums the first layer lane by lane (kernels.h, kLanes: each lane as gather_sum, then
// ((P0 + P1) + (P2 + P3)) + bias), so that each thread owns its lanes' rows of W1; the GPU's
// training sums whole rows, so the two trainings agree to rounding, not bit for bit.

// Four partial sums combined: the shape of every four-way sum here (the GPU gives each partial
// a thread of its own: gpu::parallel_sum4).
IMDBFAST_HD inline float sum4(float p0, float p1, float p2, float p3) { return (p0 + p1) + (p2 + p3); }

// Sparse gather, element h, partial j: the non-zeros k = j, j + 4, ... added in order from 0;
// vals == nullptr means every value is 1 (no multiplication).
IMDBFAST_HD inline float gather_part(const int32_t* cols, const float* vals, int64_t L,
                                     const float* W, int64_t H, int64_t h, int j) {
    float acc = 0.0f;
    for (int64_t k = j; k < L; k += 4) {
        const float w = W[static_cast<int64_t>(cols[k]) * H + h];
        acc += vals ? vals[k] * w : w;
    }
    return acc;
}

// Sparse gather, element h: sum4 of its four partials, + bias.
IMDBFAST_HD inline float gather_sum(const int32_t* cols, const float* vals, int64_t L,
                                    const float* W, int64_t H, int64_t h, float bias) {
    return sum4(gather_part(cols, vals, L, W, H, h, 0), gather_part(cols, vals, L, W, H, h, 1),
                gather_part(cols, vals, L, W, H, h, 2), gather_part(cols, vals, L, W, H, h, 3)) +
           bias;
}

// Dense layer, element (b, h): (sum over i ascending of x_i W[i, h], from 0) + bias.
IMDBFAST_HD inline float dense_sum(const float* x, const float* W, int64_t I, int64_t H, int64_t h,
                                   float bias) {
    float acc = 0.0f;
    for (int64_t i = 0; i < I; ++i) acc += x[i] * W[i * H + h];
    return acc + bias;
}

// Input gradient, element (b, i): sum over h ascending of dz_h W[i, h], from 0.
IMDBFAST_HD inline float input_grad_sum(const float* dz, const float* W, int64_t H, int64_t i) {
    float acc = 0.0f;
    for (int64_t h = 0; h < H; ++h) acc += dz[h] * W[i * H + h];
    return acc;
}

// Weight (or, x == nullptr, bias) gradient, element (i, h), partial j: x[b, i] dz[b, h] over
// the batch rows b = j, j + 4, ... added in order from 0.
IMDBFAST_HD inline float batch_part(const float* dz, const float* x, int64_t B, int64_t I,
                                    int64_t i, int64_t H, int64_t h, int j) {
    float p = 0.0f;
    for (int64_t b = j; b < B; b += 4) {
        const float d = dz[b * H + h];
        p += x ? x[b * I + i] * d : d;
    }
    return p;
}

// Weight (or bias) gradient, element (i, h): sum4 of its four partials.
IMDBFAST_HD inline float batch_sum_elem(const float* dz, const float* x, int64_t B, int64_t I,
                                        int64_t i, int64_t H, int64_t h) {
    return sum4(batch_part(dz, x, B, I, i, H, h, 0), batch_part(dz, x, B, I, i, H, h, 1),
                batch_part(dz, x, B, I, i, H, h, 2), batch_part(dz, x, B, I, i, H, h, 3));
}

// The sparse layer's gradient on the GPU for one column, element h, partial j: the terms
// term(i) of its group (i = 0 .. n-1, batch rows ascending) for i = j, j + 4, ..., added in
// order from 0; the element is sum4 of the four partials (gpu::parallel_sum4). The CPU
// scatters it (each non-zero adds its term to the column's row of G, batch row by batch row),
// one add chain per column: the two agree to rounding, as the trainings do anyway.
template <class Term>
IMDBFAST_HD inline float group_part(const Term& term, int64_t n, int j) {
    float t = 0.0f;
    for (int64_t i = j; i < n; i += 4) t += term(i);
    return t;
}

// ---------------------------------------------------------------------------------------------
// Dropout (keras/src/layers/regularization/dropout.py; the backends' random.dropout): in
// training an element is kept with probability 1 - rate and divided by keep_prob = 1 - rate
// (float32), else set to 0; its gradient is masked and scaled the same way; inference is the
// identity. Keras's random stream cannot be reproduced, so the mask comes from a counter-based
// hash of (the layer's seed, the optimizer step, the data row, the unit): it depends on nothing
// else, not the threads, the batch split or the backend.

// SplitMix64's finalizer: a bijective 64-bit mix.
IMDBFAST_HD inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct DropoutStep {
    uint64_t seed;       // the layer's
    uint64_t threshold;  // keep when the hash's top 32 bits are >= it: rate * 2^32, rounded
    float keep_prob;     // float32(1 - rate)
    int64_t step;        // the optimizer step (Keras's iterations before it)
};

// A layer's dropout (seed, rate in [0, 1)) at optimizer step `step`.
IMDBFAST_HD inline DropoutStep dropout_step(uint64_t seed, double rate, int64_t step) {
    DropoutStep d;
    d.seed = seed;
    d.threshold = static_cast<uint64_t>(rate * 4294967296.0 + 0.5);  // rounded (rate >= 0)
    d.keep_prob = static_cast<float>(1.0 - rate);
    d.step = step;
    return d;
}

// The row's part of the hash, once per row.
IMDBFAST_HD inline uint64_t dropout_row_key(const DropoutStep& d, int64_t row) {
    return mix64(mix64(d.seed ^ (static_cast<uint64_t>(d.step) * 0x9E3779B97F4A7C15ull)) ^
                 static_cast<uint64_t>(row));
}
IMDBFAST_HD inline bool dropout_keep(uint64_t row_key, int64_t h, uint64_t threshold) {
    return (mix64(row_key + (static_cast<uint64_t>(h) + 1) * 0xD1B54A32D192ED03ull) >> 32) >=
           threshold;
}
// Forward and backward alike: x / keep_prob where kept, else 0.
IMDBFAST_HD inline float dropout_apply(float x, bool keep, float keep_prob) {
    return keep ? x / keep_prob : 0.0f;
}

// ---------------------------------------------------------------------------------------------
// Weight penalties (keras/src/regularizers/regularizers.py, L1L2): l1 * sum |w| + l2 * sum w^2,
// added to the loss; Keras regularizes the trainable weights only. The value is summed in
// double in one fixed order: per row (penalty_row, a row of H elements ascending), rows of a
// parameter ascending, then parameters in Keras's order (penalty_total); both backends compute
// each row with penalty_row and add the rows and parameters in that order.
IMDBFAST_HD inline double penalty_row(const float* w, int64_t H, double l1, double l2) {
    double s1 = 0.0, s2 = 0.0;
    for (int64_t h = 0; h < H; ++h) {
        const double v = w[h];
        s1 += fabs(v);
        s2 += v * v;
    }
    return l1 * s1 + l2 * s2;
}
// rows: the penalty rows of every penalized parameter in order; counts: each one's row count.
IMDBFAST_HD inline double penalty_total(const double* rows, const int64_t* counts, int n_params) {
    double total = 0.0;
    for (int p = 0; p < n_params; ++p) {
        double s = 0.0;
        for (int64_t r = 0; r < counts[p]; ++r) s += rows[r];
        rows += counts[p];
        total += s;
    }
    return total;
}
// The penalty's gradient for one element, added to the data gradient g in float32:
// g + (l1 sign(w) + (2 l2) w), sign(0) = 0 (TF's abs gradient).
IMDBFAST_HD inline float penalty_grad(float g, float w, float l1, float two_l2) {
    const float s = w > 0.0f ? 1.0f : (w < 0.0f ? -1.0f : 0.0f);
    return g + (l1 * s + two_l2 * w);
}

// ---------------------------------------------------------------------------------------------
// Optimizer element updates (keras/src/optimizers/{rmsprop,adam,sgd}.py), float32 throughout,
// in Keras's order of operations. Hyper-parameters arrive already in float32, with constants
// such as (1 - rho) precomputed once per step in double and rounded (as Keras casts them).

struct RMSpropStep {
    float lr, rho, one_minus_rho, eps, momentum;
    int centered;
};

// v <- rho v + (1-rho) g^2 ; [centered: mg <- rho mg + (1-rho) g ; denom = v - mg^2 + eps]
// else denom = v + eps  (epsilon INSIDE the square root) ; inc = lr g / sqrt(denom) ;
// momentum > 0: m <- momentum m + inc ; w <- w - m   else: w <- w - inc.
IMDBFAST_HD inline void rmsprop_elem(float& w, float g, float& v, float& m, float& mg,
                                     const RMSpropStep& s) {
    v = s.rho * v + s.one_minus_rho * (g * g);
    float denom;
    if (s.centered) {
        mg = s.rho * mg + s.one_minus_rho * g;
        denom = v - mg * mg + s.eps;
    } else {
        denom = v + s.eps;
    }
    float inc = (s.lr * g) / sqrtf(denom);
    if (s.momentum > 0.0f) {
        m = s.momentum * m + inc;
        w = w - m;
    } else {
        w = w - inc;
    }
}

// The k steps a row of a lazy RMSprop (momentum 0) missed, all with a zero gradient: its slots
// only decay, v <- rho^k v (and mg <- rho^k mg when centered), f = rho^k as float32; mg may be
// null. (optimizers.cpp: why this equals k dense steps to rounding.)
IMDBFAST_HD inline void rmsprop_catch_up(float* v, float* mg, int64_t H, float f) {
    for (int64_t h = 0; h < H; ++h) v[h] *= f;
    if (mg)
        for (int64_t h = 0; h < H; ++h) mg[h] *= f;
}

struct AdamStep {
    float alpha;  // lr * sqrt(1 - beta2^t) / (1 - beta1^t), t = iterations + 1
    float one_minus_beta1, one_minus_beta2, eps;
    int amsgrad;
};

// m <- m + (g - m)(1-b1) ; v <- v + (g^2 - v)(1-b2) ; [amsgrad: vh <- max(vh, v), use vh]
// w <- w - (m alpha) / (sqrt(v) + eps)
IMDBFAST_HD inline void adam_elem(float& w, float g, float& m, float& v, float& vhat,
                                  const AdamStep& s) {
    m = m + (g - m) * s.one_minus_beta1;
    v = v + (g * g - v) * s.one_minus_beta2;
    float vv = v;
    if (s.amsgrad) {
        vhat = vhat > v ? vhat : v;
        vv = vhat;
    }
    w = w - (m * s.alpha) / (sqrtf(vv) + s.eps);
}

struct SGDStep {
    float lr, momentum;
    int nesterov;
};

// momentum == 0: w <- w - g lr.  Else m <- m momentum - g lr ;
// nesterov: w <- w + (m momentum - g lr)  else w <- w + m.
IMDBFAST_HD inline void sgd_elem(float& w, float g, float& m, const SGDStep& s) {
    if (s.momentum == 0.0f) {
        w = w - g * s.lr;
        return;
    }
    m = m * s.momentum - g * s.lr;
    if (s.nesterov) {
        w = w + (m * s.momentum - g * s.lr);
    } else {
        w = w + m;
    }
}

}  // namespace imdbfast
