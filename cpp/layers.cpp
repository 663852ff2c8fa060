// layers.cpp: dense layers (sparse CSR input and dense input), forward and backward, and the
// activation loops. All are row-range kernels (see kernels.h): no threading here, fixed
// summation orders, so results are independent of how the caller splits the rows.
//
// The loops that dominate an epoch are the sparse first layer's: the gather-sum of W1 rows
// (sparse_forward, and sparse_forward_lanes in training) and the scatter-add of its gradient
// (sparse_backward_scatter). They read column indices as int32 or, when the view has them,
// uint16. Row kernels are specialised for the common widths (IMDBFAST_DISPATCH_H), and the
// gathers keep four independent accumulators so consecutive row loads do not wait on one chain.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "parallel.h"

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
    for (int j = 0; j < 4; ++j)
        __builtin_prefetch(x.narrow ? static_cast<const void*>(x.narrow + x.indptr[r] + 32 * j)
                                    : static_cast<const void*>(x.indices + x.indptr[r] + 16 * j));
    if (x.values)
        for (int j = 0; j < 4; ++j) __builtin_prefetch(x.values + x.indptr[r] + 16 * j);
}

// Gather-sum for one batch row: acc = sum_k val_k W[col_k] in a fixed order: non-zero k goes to
// accumulator k % 4, and the four are combined as (a0 + a1) + (a2 + a3). kVals = false is the
// multi-hot case (every value 1): the multiplications fold away.
template <int HC, bool kVals, class Idx>
void gather_row(float* out, const Idx* cols, const float* vals, int64_t L, const float* W,
                const float* bias, int64_t Hrt) {
    const int64_t H = HC > 0 ? HC : Hrt;
    // Wide rows in slices of up to 512 (8 KB of accumulators, in L1): each non-zero's row of W
    // is streamed whole, contiguous, not re-walked once per narrow slice.
    constexpr int64_t kMax = HC > 0 ? HC : 512;
    auto val = [&](int64_t k) { return kVals ? vals[k] : 1.0f; };
    for (int64_t h0 = 0; h0 < H; h0 += kMax) {
        const int64_t w = std::min<int64_t>(kMax, H - h0);
        float a0[kMax], a1[kMax], a2[kMax], a3[kMax];
        for (int64_t h = 0; h < w; ++h) a0[h] = a1[h] = a2[h] = a3[h] = 0.0f;
        int64_t k = 0;
        for (; k + 4 <= L; k += 4) {
            if (k + kPrefetch + 4 <= L)
                for (int j = 0; j < 4; ++j)  // every cache line of the slice (one for H = 16)
                    for (int64_t l = 0; l < w; l += 16)
                        prefetch_row(W + int64_t(cols[k + kPrefetch + j]) * H + h0 + l);
            const float* r0 = W + int64_t(cols[k]) * H + h0;
            const float* r1 = W + int64_t(cols[k + 1]) * H + h0;
            const float* r2 = W + int64_t(cols[k + 2]) * H + h0;
            const float* r3 = W + int64_t(cols[k + 3]) * H + h0;
            const float v0 = val(k), v1 = val(k + 1), v2 = val(k + 2), v3 = val(k + 3);
            IMDBFAST_ROW_SIMD
            for (int64_t h = 0; h < w; ++h) {
                a0[h] += kVals ? v0 * r0[h] : r0[h];
                a1[h] += kVals ? v1 * r1[h] : r1[h];
                a2[h] += kVals ? v2 * r2[h] : r2[h];
                a3[h] += kVals ? v3 * r3[h] : r3[h];
            }
        }
        // the last 0-3 non-zeros continue the cycle: a0, a1, a2 (named, so they stay registers)
        auto add = [&](float* acc, int64_t j) {
            const float* r = W + int64_t(cols[j]) * H + h0;
            const float v = val(j);
            IMDBFAST_ROW_SIMD
            for (int64_t h = 0; h < w; ++h) acc[h] += kVals ? v * r[h] : r[h];
        };
        if (k < L) add(a0, k);
        if (k + 1 < L) add(a1, k + 1);
        if (k + 2 < L) add(a2, k + 2);
        IMDBFAST_ROW_SIMD
        for (int64_t h = 0; h < w; ++h) out[h0 + h] = ((a0[h] + a1[h]) + (a2[h] + a3[h])) + bias[h0 + h];
    }
}

// Calls F<kVals>(indices) for the view's index type (uint16 when present) and values.
template <class F>
void with_indices(const CSRView& x, F&& f) {
    if (x.narrow && x.values) f(std::true_type{}, x.narrow);
    else if (x.narrow) f(std::false_type{}, x.narrow);
    else if (x.values) f(std::true_type{}, x.indices);
    else f(std::false_type{}, x.indices);
}

template <int HC, bool kVals, class Idx>
void sparse_forward_impl(float* z, const CSRView& x, const Idx* idx, const int64_t* rows,
                         const float* W, const float* bias, int64_t Hrt, int64_t b0, int64_t b1) {
    const int64_t H = HC > 0 ? HC : Hrt;
    for (int64_t b = b0; b < b1; ++b) {
        prefetch_data_row(x, rows, b, b1);
        const int64_t r = rows ? rows[b] : b;
        const int64_t s = x.indptr[r];
        gather_row<HC, kVals>(z + b * H, idx + s, kVals ? x.values + s : nullptr,
                              x.indptr[r + 1] - s, W, bias, Hrt);
    }
}

}  // namespace

void sparse_forward(float* z, const CSRView& x, const int64_t* rows, const float* W,
                    const float* bias, int64_t H, int64_t b0, int64_t b1) {
    with_indices(x, [&](auto vals, const auto* idx) {
#define CALL(HC) sparse_forward_impl<HC, decltype(vals)::value>(z, x, idx, rows, W, bias, H, b0, b1)
        IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
    });
}

namespace {

// The lane kernels read, for each batch row, its non-zeros from lane k0 on: fetch the row's
// offsets 8 rows ahead and the first lines of its part of the column list 4 rows ahead (2 and
// 4 ahead: 2 threads 5 % slower at batch 512; 8 and 16 ahead: 3 %).
inline void prefetch_lane_row(const CSRView& x, const int32_t* pos, int K, const int64_t* rows,
                              int64_t b, int64_t B, int k0) {
    if (b + 8 < B) {
        __builtin_prefetch(pos + rows[b + 8] * (K + 1));
        __builtin_prefetch(x.indptr + rows[b + 8]);
    }
    if (b + 4 < B) {
        const int64_t r = rows[b + 4], s = x.indptr[r] + pos[r * (K + 1) + k0];
        for (int j = 0; j < 2; ++j)
            __builtin_prefetch(x.narrow ? static_cast<const void*>(x.narrow + s + 32 * j)
                                        : static_cast<const void*>(x.indices + s + 16 * j));
        if (x.values) __builtin_prefetch(x.values + s);
    }
}

}  // namespace

void prefetch_lane_rows(const CSRView& x, const int32_t* pos, int K, const int64_t* rows,
                        int64_t B, int k0, int k1, int stage) {
    for (int64_t b = 0; b < B; ++b) {
        const int64_t r = rows[b];
        if (stage == 0) {
            __builtin_prefetch(pos + r * (K + 1));
            __builtin_prefetch(x.indptr + r);
            continue;
        }
        const int64_t s = x.indptr[r] + pos[r * (K + 1) + k0], e = x.indptr[r] + pos[r * (K + 1) + k1];
        if (x.narrow)
            for (int64_t j = s; j < e; j += 32) __builtin_prefetch(x.narrow + j);
        else
            for (int64_t j = s; j < e; j += 16) __builtin_prefetch(x.indices + j);
        if (x.values)
            for (int64_t j = s; j < e; j += 16) __builtin_prefetch(x.values + j);
    }
}

namespace {

// Lane partials for batch rows [0, B): each lane's non-zeros of the row gathered like a whole
// row in sparse_forward (non-zero k of the lane into accumulator k % 4), without bias.
template <int HC, bool kVals, class Idx>
void sparse_forward_lanes_impl(float* P, const CSRView& x, const Idx* idx, const int32_t* pos,
                               int K, const int64_t* rows, int64_t B, const float* W,
                               const float* zero, int64_t Hrt, int k0, int k1, bool pairs) {
    const int64_t H = HC > 0 ? HC : Hrt;
    float pair[2][HC > 0 ? HC : 1];
    thread_local std::vector<float> wide;  // the pair's two rows for widths not specialised
    if (HC == 0 && pairs && static_cast<int64_t>(wide.size()) < 2 * H)
        wide.resize(static_cast<size_t>(2 * H));
    float* p0 = HC > 0 ? pair[0] : wide.data();
    float* p1 = HC > 0 ? pair[1] : wide.data() + H;
    for (int64_t b = 0; b < B; ++b) {
        prefetch_lane_row(x, pos, K, rows, b, B, k0);
        const int64_t r = rows[b], s0 = x.indptr[r];
        const int32_t* q = pos + r * (K + 1);
        auto gather = [&](float* out, int k) {
            gather_row<HC, kVals>(out, idx + s0 + q[k], kVals ? x.values + s0 + q[k] : nullptr,
                                  q[k + 1] - q[k], W, zero, Hrt);
        };
        if (pairs) {
            for (int k = k0; k < k1; k += 2) {
                gather(p0, k);
                gather(p1, k + 1);
                float* out = P + (k * B + b) * H;
                IMDBFAST_ROW_SIMD
                for (int64_t h = 0; h < H; ++h) out[h] = p0[h] + p1[h];
            }
        } else {
            for (int k = k0; k < k1; ++k) gather(P + (k * B + b) * H, k);
        }
    }
}

// G[c, :] += val * dz[b, :] over batch rows ascending, flagging each column met. The dz row
// sits in registers for the whole batch row; G's rows are fetched ahead.
template <int HC, bool kVals, class Idx>
void sparse_backward_scatter_impl(float* G, uint8_t* flag, const CSRView& x, const Idx* idx,
                                  const int32_t* pos, int K, const int64_t* rows, int64_t B,
                                  const float* dz, int64_t Hrt, int k0, int k1) {
    const int64_t H = HC > 0 ? HC : Hrt;
    for (int64_t b = 0; b < B; ++b) {
        prefetch_lane_row(x, pos, K, rows, b, B, k0);
        const int64_t r = rows[b], s0 = x.indptr[r];
        const int32_t* q = pos + r * (K + 1);
        float d[HC > 0 ? HC : 1];
        const float* dv = dz + b * H;
        if constexpr (HC > 0) {
            for (int64_t h = 0; h < H; ++h) d[h] = dv[h];
            dv = d;
        }
        const int64_t e0 = s0 + q[k0], e1 = s0 + q[k1];
        for (int64_t k = e0; k < e1; ++k) {
            if (k + kPrefetch < e1) __builtin_prefetch(G + int64_t(idx[k + kPrefetch]) * H, 1);
            const int64_t c = idx[k];
            float* g = G + c * H;
            const float v = kVals ? x.values[k] : 1.0f;
            IMDBFAST_ROW_SIMD
            for (int64_t h = 0; h < H; ++h) g[h] += kVals ? v * dv[h] : dv[h];
            flag[c] = 1;
        }
    }
}

}  // namespace

void lane_offsets(int32_t* pos, const CSRView& x, const int64_t* bounds, int K, int threads) {
    const int nt = threads_for(threads, x.indptr[x.n_rows], 1 << 16);
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t r = 0; r < x.n_rows; ++r) {
            const int32_t* first = x.indices + x.indptr[r];
            const int32_t* last = x.indices + x.indptr[r + 1];
            for (int k = 0; k <= K; ++k)
                pos[r * (K + 1) + k] = static_cast<int32_t>(
                    std::lower_bound(first, last, bounds[k]) - first);
        }
    });
}

void sparse_forward_lanes(float* P, const CSRView& x, const int32_t* pos, int K,
                          const int64_t* rows, int64_t B, const float* W, int64_t H, int k0,
                          int k1, bool pairs) {
    thread_local std::vector<float> zero;  // the lanes' "bias": the real one is added once
    if (static_cast<int64_t>(zero.size()) < H) zero.assign(static_cast<size_t>(H), 0.0f);
    with_indices(x, [&](auto vals, const auto* idx) {
#define CALL(HC)                                                                              \
    sparse_forward_lanes_impl<HC, decltype(vals)::value>(P, x, idx, pos, K, rows, B, W,         \
                                                         zero.data(), H, k0, k1, pairs)
        IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
    });
}

void lanes_sum(float* z, const float* P, const float* bias, int64_t H, int64_t B, int64_t b0,
               int64_t b1, bool pairs) {
    static_assert(kLanes == 4, "lanes_sum adds four lanes");
    const float *P0 = P, *P1 = P + B * H, *P2 = P + 2 * B * H, *P3 = P + 3 * B * H;
    if (pairs) {
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t o = b * H;
            IMDBFAST_ROW_SIMD
            for (int64_t h = 0; h < H; ++h) z[o + h] = (P0[o + h] + P2[o + h]) + bias[h];
        }
        return;
    }
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t o = b * H;
        IMDBFAST_ROW_SIMD
        for (int64_t h = 0; h < H; ++h)
            z[o + h] = ((P0[o + h] + P1[o + h]) + (P2[o + h] + P3[o + h])) + bias[h];
    }
}

void sparse_backward_scatter(float* G, uint8_t* flag, const CSRView& x, const int32_t* pos,
                             int K, const int64_t* rows, int64_t B, const float* dz, int64_t H,
                             int k0, int k1) {
    with_indices(x, [&](auto vals, const auto* idx) {
#define CALL(HC)                                                                              \
    sparse_backward_scatter_impl<HC, decltype(vals)::value>(G, flag, x, idx, pos, K, rows, B, \
                                                            dz, H, k0, k1)
        IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
    });
}

int64_t collect_flagged(int32_t* touched, uint8_t* flag, int64_t c0, int64_t c1) {
    int64_t n = 0, c = c0;
    auto one = [&](int64_t col, uint8_t f) {  // branch-free: the slot is kept when flagged
        touched[n] = static_cast<int32_t>(col);
        n += f;
    };
    for (; c < c1 && (c & 7); ++c) {
        one(c, flag[c]);
        flag[c] = 0;
    }
    for (; c + 8 <= c1; c += 8) {  // eight flags at a time: most are clear in small batches
        uint64_t w;
        std::memcpy(&w, flag + c, 8);
        if (!w) continue;
        std::memset(flag + c, 0, 8);
        for (int j = 0; j < 8; ++j) one(c + j, static_cast<uint8_t>((w >> (8 * j)) & 1));
    }
    for (; c < c1; ++c) {
        one(c, flag[c]);
        flag[c] = 0;
    }
    return n;
}

namespace {

// out[b, :] = (sum over k ascending of a[b, k] M[k, :], from 0) [+ bias]: rows [b0, b1) of
// a (B, K) times M (K, NC), the row accumulated in registers for the specialised widths (in out
// itself otherwise), four rows at a time there (four independent add chains per element). The
// dense layer's forward (common.h's dense_sum) and, with M = W transposed and no bias, its input
// gradient (input_grad_sum).
template <int NC>
void rows_times(float* out, const float* a, const float* M, const float* bias, int64_t K,
                int64_t Nrt, int64_t b0, int64_t b1) {
    const int64_t N = NC > 0 ? NC : Nrt;
    int64_t b = b0;
    if constexpr (NC > 0) {
        for (; b + 4 <= b1; b += 4) {
            float o[4][NC];
            for (int r = 0; r < 4; ++r)
                for (int64_t n = 0; n < NC; ++n) o[r][n] = 0.0f;
            for (int64_t k = 0; k < K; ++k) {
                const float* m = M + k * NC;
#pragma GCC unroll 4
                for (int r = 0; r < 4; ++r) {
                    const float ak = a[(b + r) * K + k];
                    IMDBFAST_ROW_SIMD
                    for (int64_t n = 0; n < NC; ++n) o[r][n] += ak * m[n];
                }
            }
            for (int r = 0; r < 4; ++r) {
                float* dst = out + (b + r) * NC;
                IMDBFAST_ROW_SIMD
                for (int64_t n = 0; n < NC; ++n) dst[n] = bias ? o[r][n] + bias[n] : o[r][n];
            }
        }
    }
    if constexpr (NC == 0) {
        // Any other width: kRows rows at a time over column tiles of kTile, so each tile of M
        // is read once per kRows rows (not once per row) while the kRows x kTile accumulators
        // stay in registers (6 x 16: 12 of AVX2's 16, the rest for M and the broadcasts);
        // each element is still one sum over k ascending from 0, then the bias.
        constexpr int kRows = 6;
        constexpr int64_t kTile = 16;
        const int64_t n_full = N / kTile * kTile;
        const int64_t b_full = b0 + (b1 - b0) / kRows * kRows;
        // Column strips outermost: a strip of M (K x kTile) stays in cache for every row.
        for (int64_t n0 = 0; n0 < n_full; n0 += kTile) {
            for (b = b0; b < b_full; b += kRows) {
                float o[kRows][kTile];
                for (int r = 0; r < kRows; ++r)
                    for (int64_t n = 0; n < kTile; ++n) o[r][n] = 0.0f;
                const float* ar = a + b * K;
                for (int64_t k = 0; k < K; ++k) {
                    const float* m = M + k * N + n0;
#pragma GCC unroll 6
                    for (int r = 0; r < kRows; ++r) {
                        const float ak = ar[r * K + k];
                        IMDBFAST_ROW_SIMD
                        for (int64_t n = 0; n < kTile; ++n) o[r][n] += ak * m[n];
                    }
                }
                for (int r = 0; r < kRows; ++r) {
                    float* dst = out + (b + r) * N + n0;
                    IMDBFAST_ROW_SIMD
                    for (int64_t n = 0; n < kTile; ++n)
                        dst[n] = bias ? o[r][n] + bias[n0 + n] : o[r][n];
                }
            }
        }
        for (b = b0; b < b_full; b += kRows) {
            for (int r = 0; r < kRows && n_full < N; ++r) {  // the last columns, row by row
                float* acc = out + (b + r) * N;
                const float* ab = a + (b + r) * K;
                for (int64_t n = n_full; n < N; ++n) acc[n] = 0.0f;
                for (int64_t k = 0; k < K; ++k) {
                    const float ak = ab[k];
                    const float* m = M + k * N;
                    for (int64_t n = n_full; n < N; ++n) acc[n] += ak * m[n];
                }
                if (bias)
                    for (int64_t n = n_full; n < N; ++n) acc[n] += bias[n];
            }
        }
    }
    for (; b < b1; ++b) {
        float o[NC > 0 ? NC : 1];
        float* acc = NC > 0 ? o : out + b * N;
        const float* ab = a + b * K;
        for (int64_t n = 0; n < N; ++n) acc[n] = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
            const float ak = ab[k];
            const float* m = M + k * N;
            IMDBFAST_ROW_SIMD
            for (int64_t n = 0; n < N; ++n) acc[n] += ak * m[n];
        }
        float* dst = out + b * N;
        IMDBFAST_ROW_SIMD
        for (int64_t n = 0; n < N; ++n) dst[n] = bias ? acc[n] + bias[n] : acc[n];
    }
}

// dx[b, :] = sum_h dz[b, h] * W[:, h]. W is transposed once per call into (H, I) so that each
// row is a sum of H vectors of width I (vectorised over i) rather than I dot products of length
// H. Sum over h ascending.
template <int IC>
void dense_backward_input_impl(float* dx, const float* dz, const float* W, int64_t I, int64_t H,
                               int64_t b0, int64_t b1) {
    thread_local std::vector<float> wt;  // reused: no allocation per call after the first
    if (static_cast<int64_t>(wt.size()) < H * I) wt.resize(static_cast<size_t>(H * I));
    float* WT = wt.data();
    for (int64_t i = 0; i < I; ++i)
        for (int64_t h = 0; h < H; ++h) WT[h * I + i] = W[i * H + h];
    rows_times<IC>(dx, dz, WT, nullptr, H, I, b0, b1);
}

// The order of every batch reduction here (common.h's batch_sum_elem): add(q, b) for batch rows
// b = 0 .. B-1, q = b % 4 the partial sum that row b goes to; the caller then combines
// (p0 + p1) + (p2 + p3). q is a constant at every call, so the partials stay in registers.
template <class Add>
inline void over_batch_rows(int64_t B, Add&& add) {
    int64_t b = 0;
    for (; b + 4 <= B; b += 4) {
        add(0, b);
        add(1, b + 1);
        add(2, b + 2);
        add(3, b + 3);
    }
    if (b < B) add(0, b);
    if (b + 1 < B) add(1, b + 1);
    if (b + 2 < B) add(2, b + 2);
}

// out[:] = sum over batch rows b of x[b * I + i] * dz[b, :] (x == nullptr: of dz[b, :], the bias
// gradient), as four interleaved partial sums (row b goes to partial b % 4, combined as
// (p0 + p1) + (p2 + p3)): independent add chains instead of one, in a fixed order.
template <int HC>
void batch_sum(float* out, const float* dz, const float* x, int64_t B, int64_t I, int64_t i,
               int64_t Hrt) {
    const int64_t H = HC > 0 ? HC : Hrt;
    constexpr int64_t kW = HC > 0 ? HC : 64;
    for (int64_t h0 = 0; h0 < H; h0 += kW) {
        const int64_t w = std::min<int64_t>(kW, H - h0);
        // Named partials (not p[b % 4]), so that they stay in registers.
        float p0[kW], p1[kW], p2[kW], p3[kW];
        for (int64_t h = 0; h < w; ++h) p0[h] = p1[h] = p2[h] = p3[h] = 0.0f;
        over_batch_rows(B, [&](int q, int64_t b) {
            float* p = q == 0 ? p0 : q == 1 ? p1 : q == 2 ? p2 : p3;
            const float* d = dz + b * H + h0;
            const float xi = x ? x[b * I + i] : 1.0f;
            IMDBFAST_ROW_SIMD
            for (int64_t h = 0; h < w; ++h) p[h] += x ? xi * d[h] : d[h];
        });
        IMDBFAST_ROW_SIMD
        for (int64_t h = 0; h < w; ++h) out[h0 + h] = (p0[h] + p1[h]) + (p2[h] + p3[h]);
    }
}

// Four rows i0 .. i0 + 3 of dW at once (H = HC): each dz row is read once for the four, and
// every element keeps batch_sum's order (batch row b into partial b % 4, (p0 + p1) + (p2 + p3)).
template <int HC>
void batch_sum4(float* out, const float* dz, const float* x, int64_t B, int64_t I, int64_t i0) {
    float p[4][4][HC];
    for (int r = 0; r < 4; ++r)
        for (int q = 0; q < 4; ++q)
            for (int64_t h = 0; h < HC; ++h) p[r][q][h] = 0.0f;
    over_batch_rows(B, [&](int q, int64_t b) {
        const float* d = dz + b * HC;
        const float* xb = x + b * I + i0;
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
            const float xr = xb[r];
            IMDBFAST_ROW_SIMD
            for (int64_t h = 0; h < HC; ++h) p[r][q][h] += xr * d[h];
        }
    });
    for (int r = 0; r < 4; ++r) {
        IMDBFAST_ROW_SIMD
        for (int64_t h = 0; h < HC; ++h)
            out[(i0 + r) * HC + h] = (p[r][0][h] + p[r][1][h]) + (p[r][2][h] + p[r][3][h]);
    }
}

// batch_sum4 for any width H: rows i0 .. i0 + 3 of dW over column tiles of 16, each dz tile
// read once for the four rows; every element in batch_sum's order.
void batch_sum4_wide(float* out, const float* dz, const float* x, int64_t B, int64_t I,
                     int64_t H, int64_t i0) {
    constexpr int64_t kW = 16;
    for (int64_t h0 = 0; h0 < H; h0 += kW) {
        const int64_t w = std::min(kW, H - h0);
        float p[4][4][kW];
        for (int r = 0; r < 4; ++r)
            for (int q = 0; q < 4; ++q)
                for (int64_t h = 0; h < kW; ++h) p[r][q][h] = 0.0f;
        if (w == kW) {  // (a constant width, vectorised; the last tile below runs scalar)
            over_batch_rows(B, [&](int q, int64_t b) {
                const float* d = dz + b * H + h0;
                const float* xb = x + b * I + i0;
#pragma GCC unroll 4
                for (int r = 0; r < 4; ++r) {
                    const float xr = xb[r];
                    IMDBFAST_ROW_SIMD
                    for (int64_t h = 0; h < kW; ++h) p[r][q][h] += xr * d[h];
                }
            });
        } else {
            over_batch_rows(B, [&](int q, int64_t b) {
                const float* d = dz + b * H + h0;
                const float* xb = x + b * I + i0;
                for (int r = 0; r < 4; ++r)
                    for (int64_t h = 0; h < w; ++h) p[r][q][h] += xb[r] * d[h];
            });
        }
        for (int r = 0; r < 4; ++r)
            for (int64_t h = 0; h < w; ++h)
                out[(i0 + r) * H + h0 + h] = (p[r][0][h] + p[r][1][h]) + (p[r][2][h] + p[r][3][h]);
    }
}

// Rows [i0, i1) of dW for H = 1 (an output layer), vectorised across the rows: dW[i] = sum over
// b of x[b, i] dz[b], in batch_sum's order for each element.
void batch_sum_h1(float* out, const float* dz, const float* x, int64_t B, int64_t I, int64_t i0,
                  int64_t i1) {
    constexpr int64_t kW = 16;
    for (int64_t c0 = i0; c0 < i1; c0 += kW) {
        const int64_t w = std::min(kW, i1 - c0);
        float p0[kW], p1[kW], p2[kW], p3[kW];
        for (int64_t j = 0; j < kW; ++j) p0[j] = p1[j] = p2[j] = p3[j] = 0.0f;
        over_batch_rows(B, [&](int q, int64_t b) {
            float* p = q == 0 ? p0 : q == 1 ? p1 : q == 2 ? p2 : p3;
            const float d = dz[b];
            const float* xb = x + b * I + c0;
            IMDBFAST_ROW_SIMD
            for (int64_t j = 0; j < w; ++j) p[j] += xb[j] * d;
        });
        IMDBFAST_ROW_SIMD
        for (int64_t j = 0; j < w; ++j) out[c0 + j] = (p0[j] + p1[j]) + (p2[j] + p3[j]);
    }
}

}  // namespace

void dense_forward(float* z, const float* x, const float* W, const float* bias, int64_t I,
                   int64_t H, int64_t b0, int64_t b1) {
#define CALL(HC) rows_times<HC>(z, x, W, bias, I, H, b0, b1)
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

void softmax_forward(float* a, const float* z, int64_t H, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) softmax_row(a + b * H, z + b * H, H);
}

void dropout_forward(float* d, const float* a, const int64_t* rows, const DropoutStep& s,
                     int64_t H, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
        const uint64_t key = dropout_row_key(s, rows ? rows[b] : b);
        for (int64_t h = 0; h < H; ++h)
            d[b * H + h] = dropout_apply(a[b * H + h], dropout_keep(key, h, s.threshold),
                                         s.keep_prob);
    }
}

void dropout_backward(float* g, const int64_t* rows, const DropoutStep& s, int64_t H, int64_t b0,
                      int64_t b1) {
    dropout_forward(g, g, rows, s, H, b0, b1);  // the same mask and scale, in place
}

void dense_backward_input(float* dx, const float* dz, const float* W, int64_t I, int64_t H,
                          int64_t b0, int64_t b1) {
#define CALL(IC) dense_backward_input_impl<IC>(dx, dz, W, I, H, b0, b1)
    IMDBFAST_DISPATCH_H(I, CALL)  // specialised on the input width: the vectorised dimension
#undef CALL
}

void dense_backward_weight(float* dW, const float* dz, const float* x, int64_t B, int64_t I,
                           int64_t H, int64_t i0, int64_t i1) {
    if (H == 1) return batch_sum_h1(dW, dz, x, B, I, i0, i1);
    int64_t i = i0;
    if (H == 16)
        for (; i + 4 <= i1; i += 4) batch_sum4<16>(dW, dz, x, B, I, i);
    if (H > 64)  // wide layers: four rows per pass over dz, in column tiles
        for (; i + 4 <= i1; i += 4) batch_sum4_wide(dW, dz, x, B, I, H, i);
#define CALL(HC) batch_sum<HC>(dW + i * H, dz, x, B, I, i, H)
    for (; i < i1; ++i) {
        IMDBFAST_DISPATCH_H(H, CALL)
    }
#undef CALL
}

void bias_backward(float* db, const float* dz, int64_t B, int64_t H) {
#define CALL(HC) batch_sum<HC>(db, dz, nullptr, B, 0, 0, H)
    IMDBFAST_DISPATCH_H(H, CALL)
#undef CALL
}

}  // namespace cpu
}  // namespace imdbfast
