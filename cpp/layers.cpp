// layers.cpp: dense layers (sparse CSR input and dense input), forward and backward, and the
// activation loops. All are row-range kernels (see kernels.h): no threading here, fixed
// summation orders, so results are independent of how the caller splits the rows.
//
// The two loops that dominate an epoch are sparse_forward (a gather-sum of W1 rows) and
// sparse_backward_weight (W1's gradient, by a counting sort of the batch's non-zeros by column).
// Row kernels are specialised for the common widths (IMDBFAST_DISPATCH_H), and sparse_forward
// keeps four independent accumulators so consecutive row loads do not wait on one add chain.
#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace imdbfast {
namespace cpu {
namespace {

// Rows of W1 (and of its gradient) are read in data order, i.e. at random: software prefetch
// this many non-zeros ahead hides the cache latency the hardware prefetcher cannot predict.
constexpr int64_t kPrefetch = 16;

inline void prefetch_row(const float* p) { __builtin_prefetch(p); }

// Batch rows are data rows in shuffled order, so each row's column list starts somewhere new in
// a multi-megabyte array: fetch the first cache lines of the row `ahead` positions on early.
constexpr int64_t kRowsAhead = 2;
inline void prefetch_data_row(const CSRView& x, const int64_t* rows, int64_t b, int64_t b_end) {
    if (b + kRowsAhead >= b_end) return;
    const int64_t r = rows ? rows[b + kRowsAhead] : b + kRowsAhead;
    const int32_t* p = x.indices + x.indptr[r];
    for (int j = 0; j < 4; ++j) __builtin_prefetch(p + 16 * j);
    if (x.values)
        for (int j = 0; j < 4; ++j) __builtin_prefetch(x.values + x.indptr[r] + 16 * j);
}

// Gather-sum for one batch row: acc = sum_k val_k W[col_k] in a fixed order: non-zero k goes to
// accumulator k % 4, and the four are combined as (a0 + a1) + (a2 + a3).
template <int HC>
void gather_row(float* out, const int32_t* cols, const float* vals, int64_t L, const float* W,
                const float* bias, int64_t Hrt) {
    const int64_t H = HC > 0 ? HC : Hrt;
    constexpr int64_t kMax = HC > 0 ? HC : 64;
    for (int64_t h0 = 0; h0 < H; h0 += kMax) {
        const int64_t w = std::min<int64_t>(kMax, H - h0);
        float a0[kMax], a1[kMax], a2[kMax], a3[kMax];
        for (int64_t h = 0; h < w; ++h) a0[h] = a1[h] = a2[h] = a3[h] = 0.0f;
        int64_t k = 0;
        if (vals == nullptr) {
            for (; k + 4 <= L; k += 4) {
                if (k + kPrefetch + 4 <= L)
                    for (int j = 0; j < 4; ++j) prefetch_row(W + int64_t(cols[k + kPrefetch + j]) * H + h0);
                const float* r0 = W + int64_t(cols[k]) * H + h0;
                const float* r1 = W + int64_t(cols[k + 1]) * H + h0;
                const float* r2 = W + int64_t(cols[k + 2]) * H + h0;
                const float* r3 = W + int64_t(cols[k + 3]) * H + h0;
                for (int64_t h = 0; h < w; ++h) {
                    a0[h] += r0[h];
                    a1[h] += r1[h];
                    a2[h] += r2[h];
                    a3[h] += r3[h];
                }
            }
            for (int j = 0; k < L; ++k, ++j) {
                const float* r = W + int64_t(cols[k]) * H + h0;
                float* a = j == 0 ? a0 : (j == 1 ? a1 : a2);
                for (int64_t h = 0; h < w; ++h) a[h] += r[h];
            }
        } else {
            for (; k + 4 <= L; k += 4) {
                if (k + kPrefetch + 4 <= L)
                    for (int j = 0; j < 4; ++j) prefetch_row(W + int64_t(cols[k + kPrefetch + j]) * H + h0);
                const float* r0 = W + int64_t(cols[k]) * H + h0;
                const float* r1 = W + int64_t(cols[k + 1]) * H + h0;
                const float* r2 = W + int64_t(cols[k + 2]) * H + h0;
                const float* r3 = W + int64_t(cols[k + 3]) * H + h0;
                const float v0 = vals[k], v1 = vals[k + 1], v2 = vals[k + 2], v3 = vals[k + 3];
                for (int64_t h = 0; h < w; ++h) {
                    a0[h] += v0 * r0[h];
                    a1[h] += v1 * r1[h];
                    a2[h] += v2 * r2[h];
                    a3[h] += v3 * r3[h];
                }
            }
            for (int j = 0; k < L; ++k, ++j) {
                const float* r = W + int64_t(cols[k]) * H + h0;
                float* a = j == 0 ? a0 : (j == 1 ? a1 : a2);
                const float v = vals[k];
                for (int64_t h = 0; h < w; ++h) a[h] += v * r[h];
            }
        }
        for (int64_t h = 0; h < w; ++h) out[h0 + h] = ((a0[h] + a1[h]) + (a2[h] + a3[h])) + bias[h0 + h];
    }
}

template <int HC>
void sparse_forward_impl(float* z, const CSRView& x, const int64_t* rows, const float* W,
                         const float* bias, int64_t H, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
        prefetch_data_row(x, rows, b, b1);
        const int64_t r = rows ? rows[b] : b;
        const int64_t s = x.indptr[r], L = x.indptr[r + 1] - s;
        gather_row<HC>(z + b * H, x.indices + s, x.values ? x.values + s : nullptr, L, W, bias, H);
    }
}

// First position in the sorted columns [p, e) whose column is >= c.
inline int64_t lower_col(const int32_t* idx, int64_t p, int64_t e, int64_t c) {
    return std::lower_bound(idx + p, idx + e, static_cast<int32_t>(c)) - idx;
}

template <int HC>
void sparse_grad_impl(float* Gc, int64_t* touched, int64_t* n_touched, SparseGradScratch& sc,
                      const float* dz, const CSRView& x, const int64_t* rows, int64_t B,
                      int64_t Hrt, int64_t c0, int64_t c1) {
    const int64_t H = HC > 0 ? HC : Hrt;
    const int64_t R = c1 - c0;
    if (static_cast<int64_t>(sc.count.size()) < R) {
        sc.count.assign(static_cast<size_t>(R), 0);
        sc.seen.assign(static_cast<size_t>(R / 64 + 1), 0);
    }
    uint64_t* seen = sc.seen.data();
    if (static_cast<int64_t>(sc.span.size()) < 2 * B) sc.span.resize(static_cast<size_t>(2 * B));
    int32_t* count = sc.count.data();
    // 1. this range's slice of every batch row, and the number of non-zeros per column
    int64_t n_entries = 0;
    for (int64_t b = 0; b < B; ++b) {
        prefetch_data_row(x, rows, b, B);
        const int64_t r = rows ? rows[b] : b;
        int64_t p = x.indptr[r], e = x.indptr[r + 1];
        if (c0 > 0) p = lower_col(x.indices, p, e, c0);
        if (c1 < x.n_cols) e = lower_col(x.indices, p, e, c1);
        sc.span[2 * b] = p;
        sc.span[2 * b + 1] = e;
        for (int64_t k = p; k < e; ++k) {
            const int64_t c = x.indices[k] - c0;
            count[c]++;
            seen[c >> 6] |= uint64_t(1) << (c & 63);
        }
        n_entries += e - p;
    }
    if (static_cast<int64_t>(sc.entries.size()) < n_entries) sc.entries.resize(static_cast<size_t>(n_entries));
    if (x.values && static_cast<int64_t>(sc.evals.size()) < n_entries) sc.evals.resize(static_cast<size_t>(n_entries));
    // 2. touched columns, ascending (a scan of the bitmap, cheap for sparse small batches), and
    //    the start of each column's group (count becomes a cursor)
    int64_t nt = 0, pos = 0;
    for (int64_t w = 0; w <= (R - 1) / 64; ++w) {
        uint64_t word = seen[w];
        seen[w] = 0;
        while (word) {
            const int64_t c = w * 64 + __builtin_ctzll(word);
            word &= word - 1;
            touched[nt++] = c0 + c;
            const int32_t n = count[c];
            count[c] = static_cast<int32_t>(pos);
            pos += n;
        }
    }
    // 3. place each non-zero's batch row in its column's group, batch rows ascending
    int32_t* ent = sc.entries.data();
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t k = sc.span[2 * b]; k < sc.span[2 * b + 1]; ++k) {
            const int32_t j = count[x.indices[k] - c0]++;
            ent[j] = static_cast<int32_t>(b);
            if (x.values) sc.evals[j] = x.values[k];
        }
    }
    // 4. one gradient row per touched column; count (now each group's end) is reset to zero
    int64_t start = 0;
    for (int64_t t = 0; t < nt; ++t) {
        const int64_t c = touched[t] - c0;
        const int64_t end = count[c];
        count[c] = 0;
        float g[HC > 0 ? HC : 1];
        float* out = Gc + t * H;
        float* acc = HC > 0 ? g : out;
        for (int64_t h = 0; h < H; ++h) acc[h] = 0.0f;
        if (x.values) {
            for (int64_t j = start; j < end; ++j) {
                const float v = sc.evals[j];
                const float* d = dz + int64_t(ent[j]) * H;
                for (int64_t h = 0; h < H; ++h) acc[h] += v * d[h];
            }
        } else {
            for (int64_t j = start; j < end; ++j) {
                const float* d = dz + int64_t(ent[j]) * H;
                for (int64_t h = 0; h < H; ++h) acc[h] += d[h];
            }
        }
        if (HC > 0)
            for (int64_t h = 0; h < H; ++h) out[h] = acc[h];
        start = end;
    }
    *n_touched = nt;
}

}  // namespace

void sparse_forward(float* z, const CSRView& x, const int64_t* rows, const float* W,
                    const float* bias, int64_t H, int64_t b0, int64_t b1) {
#define CALL(HC) sparse_forward_impl<HC>(z, x, rows, W, bias, H, b0, b1)
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

void sparse_backward_weight(float* Gc, int64_t* touched, int64_t* n_touched,
                            SparseGradScratch& scratch, const float* dz, const CSRView& x,
                            const int64_t* rows, int64_t B, int64_t H, int64_t c0, int64_t c1) {
#define CALL(HC) sparse_grad_impl<HC>(Gc, touched, n_touched, scratch, dz, x, rows, B, H, c0, c1)
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

namespace {

template <int HC>
void dense_forward_impl(float* z, const float* x, const float* W, const float* bias, int64_t I,
                        int64_t Hrt, int64_t b0, int64_t b1) {
    const int64_t H = HC > 0 ? HC : Hrt;
    for (int64_t b = b0; b < b1; ++b) {
        float* zb = z + b * H;
        const float* xb = x + b * I;
        for (int64_t h = 0; h < H; ++h) zb[h] = 0.0f;
        for (int64_t i = 0; i < I; ++i) {
            const float xi = xb[i];
            const float* w = W + i * H;
            for (int64_t h = 0; h < H; ++h) zb[h] += xi * w[h];
        }
        for (int64_t h = 0; h < H; ++h) zb[h] += bias[h];
    }
}

template <int HC>
void dense_backward_input_impl(float* dx, const float* dz, const float* W, int64_t I,
                               int64_t Hrt, int64_t b0, int64_t b1) {
    const int64_t H = HC > 0 ? HC : Hrt;
    for (int64_t b = b0; b < b1; ++b) {
        const float* d = dz + b * H;
        float* o = dx + b * I;
        for (int64_t i = 0; i < I; ++i) {
            const float* w = W + i * H;
            float s = 0.0f;
            for (int64_t h = 0; h < H; ++h) s += w[h] * d[h];
            o[i] = s;
        }
    }
}

template <int HC>
void dense_backward_weight_impl(float* dW, const float* dz, const float* x, int64_t B,
                                int64_t I, int64_t Hrt, int64_t i0, int64_t i1) {
    const int64_t H = HC > 0 ? HC : Hrt;
    for (int64_t i = i0; i < i1; ++i) {
        float* g = dW + i * H;
        for (int64_t h = 0; h < H; ++h) g[h] = 0.0f;
        for (int64_t b = 0; b < B; ++b) {
            const float xi = x[b * I + i];
            const float* d = dz + b * H;
            for (int64_t h = 0; h < H; ++h) g[h] += xi * d[h];
        }
    }
}

}  // namespace

void dense_forward(float* z, const float* x, const float* W, const float* bias, int64_t I,
                   int64_t H, int64_t b0, int64_t b1) {
#define CALL(HC) dense_forward_impl<HC>(z, x, W, bias, I, H, b0, b1)
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

void act_forward(float* a, const float* z, int act, int64_t n0, int64_t n1) {
    switch (act) {  // one loop per activation so each vectorises
        case ACT_RELU:
            for (int64_t n = n0; n < n1; ++n) a[n] = activate(ACT_RELU, z[n]);
            break;
        case ACT_TANH:
            for (int64_t n = n0; n < n1; ++n) a[n] = activate(ACT_TANH, z[n]);
            break;
        case ACT_SIGMOID:
            for (int64_t n = n0; n < n1; ++n) a[n] = activate(ACT_SIGMOID, z[n]);
            break;
        default:
            for (int64_t n = n0; n < n1; ++n) a[n] = z[n];
    }
}

void act_backward(float* dz, const float* da, const float* z, const float* a, int act,
                  int64_t n0, int64_t n1) {
    switch (act) {
        case ACT_RELU:
            for (int64_t n = n0; n < n1; ++n) dz[n] = activate_grad(ACT_RELU, da[n], z[n], a[n]);
            break;
        case ACT_TANH:
            for (int64_t n = n0; n < n1; ++n) dz[n] = activate_grad(ACT_TANH, da[n], z[n], a[n]);
            break;
        case ACT_SIGMOID:
            for (int64_t n = n0; n < n1; ++n) dz[n] = activate_grad(ACT_SIGMOID, da[n], z[n], a[n]);
            break;
        default:
            for (int64_t n = n0; n < n1; ++n) dz[n] = da[n];
    }
}

void dense_backward_input(float* dx, const float* dz, const float* W, int64_t I, int64_t H,
                          int64_t b0, int64_t b1) {
#define CALL(HC) dense_backward_input_impl<HC>(dx, dz, W, I, H, b0, b1)
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

void dense_backward_weight(float* dW, const float* dz, const float* x, int64_t B, int64_t I,
                           int64_t H, int64_t i0, int64_t i1) {
#define CALL(HC) dense_backward_weight_impl<HC>(dW, dz, x, B, I, H, i0, i1)
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

void bias_backward(float* db, const float* dz, int64_t B, int64_t H, int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) db[h] = 0.0f;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = h0; h < h1; ++h) db[h] += dz[b * H + h];
}

}  // namespace cpu
}  // namespace imdbfast
