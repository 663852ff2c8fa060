// csr.cpp: multi-hot encoding of ragged token sequences into CSR, and conversions between CSR
// and dense matrices. Every builder works in two passes over rows (count, prefix-sum, fill), so
// threads write disjoint slices and the output does not depend on the thread count.
// Bad input found inside a parallel region is recorded (first bad row) and thrown afterwards,
// and code that allocates there runs under RegionErrors::guard: exceptions must never cross an
// OpenMP region. Every region runs through run_region (parallel.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "parallel.h"

namespace imdbfast {

const std::vector<int64_t>& CSR::column_prefix() const {
    std::lock_guard<std::mutex> lock(*col_mutex_);
    if (col_prefix_.empty()) {
        std::vector<int64_t> p(static_cast<size_t>(n_cols) + 1, 0);
        const int64_t nz = nnz();
        for (int64_t k = 0; k < nz; ++k) p[static_cast<size_t>(indices[k]) + 1]++;
        for (int64_t c = 0; c < n_cols; ++c) p[c + 1] += p[c];
        col_prefix_ = std::move(p);
    }
    return col_prefix_;
}

CSRView CSR::narrow_view() const {
    CSRView v = view();
    if (n_cols > 65536) return v;
    std::lock_guard<std::mutex> lock(*col_mutex_);
    if (!has_narrow_) {
        narrow_.assign(indices.begin(), indices.begin() + nnz());
        has_narrow_ = true;
    }
    v.narrow = narrow_.data();
    return v;
}

CSRView CSR::inference_view() const {
    return passes_->fetch_add(1, std::memory_order_relaxed) == 0 ? view() : narrow_view();
}

namespace {

// Relative cost of one W1 row being touched in a step (its optimizer update: a square root and
// a divide per element, its W, v and gradient rows fetched) against one non-zero (its gather in
// the forward pass and its add in the gradient). Measured on the development machine, 2 threads
// at batch 512, medians of 50 epochs interleaved: 5 -> 12.1 ms, 8 -> 11.6, 10 -> 11.0,
// 14 -> 11.3 (the optimizer's share grows when the VM is slow).
constexpr double kTouchedRowCost = 10.0;

// Lane boundaries (kLanes + 1) giving each lane an equal expected share of the W1 work of one
// step of B rows: column c holds n_c of the N rows' non-zeros, so a step sees n_c B / N of them
// and touches the row with probability 1 - (1 - n_c / N)^B.
std::vector<int64_t> lane_bounds(const std::vector<int64_t>& pre, int64_t N, int64_t B) {
    const int64_t D = static_cast<int64_t>(pre.size()) - 1;
    N = std::max<int64_t>(1, N);
    std::vector<double> cost(static_cast<size_t>(D) + 1, 0.0);
    const double Bd = static_cast<double>(std::min(B, N));
    for (int64_t c = 0; c < D; ++c) {
        const double f = static_cast<double>(pre[c + 1] - pre[c]) / static_cast<double>(N);
        const double touch = f >= 1.0 ? 1.0 : -std::expm1(Bd * std::log1p(-f));
        cost[c + 1] = cost[c] + f * Bd + kTouchedRowCost * touch;
    }
    std::vector<int64_t> bounds(cpu::kLanes + 1, D);
    bounds[0] = 0;
    for (int k = 1; k < cpu::kLanes; ++k)
        bounds[k] = std::lower_bound(cost.begin(), cost.end(), cost[D] * k / cpu::kLanes) - cost.begin();
    return bounds;
}

}  // namespace

cpu::LanePlan cpu::lane_plan(const CSR& x, int64_t batch_size, int threads) {
    LanePlan l;
    l.csr_uid = x.uid;
    l.batch_size = batch_size;
    l.bounds = lane_bounds(x.column_prefix(), x.n_rows, batch_size);
    l.pos.resize(static_cast<size_t>(x.n_rows * (kLanes + 1)));
    lane_offsets(l.pos.data(), x.view(), l.bounds.data(), kLanes, threads);
    return l;
}

namespace cpu {
namespace {

// Keeps the smallest bad row seen by any thread (-1: none).
struct FirstBad {
    std::atomic<int64_t> row{std::numeric_limits<int64_t>::max()};
    void note(int64_t r) {
        int64_t cur = row.load(std::memory_order_relaxed);
        while (r < cur && !row.compare_exchange_weak(cur, r)) {
        }
    }
    bool any() const { return row.load() != std::numeric_limits<int64_t>::max(); }
};

void exclusive_prefix(std::vector<int64_t>& indptr) {
    // indptr[r + 1] holds row r's count on entry; turn it into offsets.
    for (size_t r = 1; r < indptr.size(); ++r) indptr[r] += indptr[r - 1];
}

// Sorted unique columns of one token row, through a per-thread bitmap of D bits. When the row's
// tokens span far more bitmap words than the row has tokens, sorting is cheaper than scanning.
struct RowDeduper {
    std::vector<uint64_t> bits;
    std::vector<int32_t> tmp;
    explicit RowDeduper(int64_t D) : bits(static_cast<size_t>((D + 63) / 64), 0) {}

    // Number of distinct tokens; false if a token is outside [0, D).
    bool count(const int32_t* t, int64_t L, int64_t D, int64_t* out) {
        int64_t n = 0;
        bool ok = true;
        for (int64_t k = 0; k < L; ++k) {
            uint32_t v = static_cast<uint32_t>(t[k]);
            if (v >= static_cast<uint64_t>(D)) {
                ok = false;
                continue;
            }
            uint64_t bit = uint64_t(1) << (v & 63);
            uint64_t& w = bits[v >> 6];
            n += (w & bit) == 0;
            w |= bit;
        }
        for (int64_t k = 0; k < L; ++k) {
            uint32_t v = static_cast<uint32_t>(t[k]);
            if (v < static_cast<uint64_t>(D)) bits[v >> 6] = 0;
        }
        *out = n;
        return ok;
    }

    // Writes the sorted unique tokens (all known valid) to out.
    void fill(const int32_t* t, int64_t L, int32_t* out) {
        if (L == 0) return;
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int64_t k = 0; k < L; ++k) {
            uint32_t v = static_cast<uint32_t>(t[k]);
            lo = std::min(lo, v >> 6);
            hi = std::max(hi, v >> 6);
        }
        if (static_cast<int64_t>(hi - lo) > 4 * L + 64) {
            tmp.assign(t, t + L);
            std::sort(tmp.begin(), tmp.end());
            auto end = std::unique(tmp.begin(), tmp.end());
            std::copy(tmp.begin(), end, out);
            return;
        }
        for (int64_t k = 0; k < L; ++k) {
            uint32_t v = static_cast<uint32_t>(t[k]);
            bits[v >> 6] |= uint64_t(1) << (v & 63);
        }
        int64_t n = 0;
        for (uint32_t w = lo; w <= hi; ++w) {
            uint64_t word = bits[w];
            bits[w] = 0;
            while (word) {
                out[n++] = static_cast<int32_t>((w << 6) + static_cast<uint32_t>(__builtin_ctzll(word)));
                word &= word - 1;
            }
        }
    }
};

}  // namespace

CSR multi_hot(const int32_t* tokens, const int64_t* offsets, int64_t N, int64_t D, int threads) {
    CSR out;
    out.n_rows = N;
    out.n_cols = D;
    out.indptr.assign(static_cast<size_t>(N) + 1, 0);
    const int nt = threads_for(threads, offsets[N], 1 << 16);
    FirstBad bad;
    std::vector<RowDeduper> dedup;
    dedup.reserve(nt);
    for (int t = 0; t < nt; ++t) dedup.emplace_back(D);

    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 256) if (nt > 1)
        for (int64_t r = 0; r < N; ++r) {
            int64_t n = 0;
            if (!dedup[thread_num()].count(tokens + offsets[r], offsets[r + 1] - offsets[r], D, &n))
                bad.note(r);
            out.indptr[r + 1] = n;
        }
    });
    if (bad.any()) {
        int64_t r = bad.row.load();
        for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k)
            if (tokens[k] < 0 || tokens[k] >= D)
                throw std::out_of_range("sequences: token " + std::to_string(tokens[k]) +
                                        " in sequence " + std::to_string(r) +
                                        " is outside [0, " + std::to_string(D) +
                                        ") (num_words / input dimension)");
    }
    exclusive_prefix(out.indptr);
    out.indices.resize(static_cast<size_t>(out.indptr[N]));

    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 256) if (nt > 1)
        for (int64_t r = 0; r < N; ++r)
            dedup[thread_num()].fill(tokens + offsets[r], offsets[r + 1] - offsets[r],
                                    out.indices.data() + out.indptr[r]);
    });
    return out;
}

void multi_hot_dense(float* out, const int32_t* tokens, const int64_t* offsets, int64_t N,
                     int64_t D, int threads) {
    FirstBad bad;
    const int nt = threads_for(threads, N * D, 1 << 20);
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < N; ++r) {
            float* row = out + r * D;
            std::memset(row, 0, sizeof(float) * static_cast<size_t>(D));
            for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k) {
                uint32_t v = static_cast<uint32_t>(tokens[k]);
                if (v >= static_cast<uint64_t>(D)) {
                    bad.note(r);
                    continue;
                }
                row[v] = 1.0f;
            }
        }
    });
    if (bad.any())
        throw std::out_of_range("sequences: sequence " + std::to_string(bad.row.load()) +
                                " holds a token outside [0, " + std::to_string(D) + ")");
}

template <typename T>
CSR csr_from_dense(const T* x, int64_t N, int64_t D, int threads) {
    CSR out;
    out.n_rows = N;
    out.n_cols = D;
    out.indptr.assign(static_cast<size_t>(N) + 1, 0);
    FirstBad bad;
    std::atomic<bool> all_ones{true};
    const int nt = threads_for(threads, N * D, 1 << 20);
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < N; ++r) {
            const T* row = x + r * D;
            int64_t n = 0;
            bool ones = true, finite = true;
            for (int64_t c = 0; c < D; ++c) {
                T v = row[c];
                n += v != T(0);
                ones &= (v == T(0)) | (v == T(1));
                finite &= std::isfinite(v);
            }
            if (!finite) bad.note(r);
            if (!ones) all_ones.store(false, std::memory_order_relaxed);
            out.indptr[r + 1] = n;
        }
    });
    if (bad.any())
        throw std::invalid_argument("x: row " + std::to_string(bad.row.load()) +
                                    " holds NaN or infinity");
    exclusive_prefix(out.indptr);
    out.binary = all_ones.load();
    out.indices.resize(static_cast<size_t>(out.indptr[N]));
    if (!out.binary) out.values.resize(out.indices.size());
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < N; ++r) {
            const T* row = x + r * D;
            int64_t k = out.indptr[r];
            for (int64_t c = 0; c < D; ++c) {
                if (row[c] != T(0)) {
                    out.indices[k] = static_cast<int32_t>(c);
                    if (!out.binary) out.values[k] = static_cast<float>(row[c]);
                    ++k;
                }
            }
        }
    });
    return out;
}
template CSR csr_from_dense<float>(const float*, int64_t, int64_t, int);
template CSR csr_from_dense<double>(const double*, int64_t, int64_t, int);

CSR csr_from_arrays(const int64_t* indptr, const int32_t* indices, const float* values,
                    int64_t N, int64_t D, int threads) {
    CSR out;
    out.n_rows = N;
    out.n_cols = D;
    out.binary = values == nullptr;
    out.indptr.assign(static_cast<size_t>(N) + 1, 0);
    const int nt = threads_for(threads, indptr[N], 1 << 16);
    // Rows that are already strictly increasing are copied; others are sorted and merged.
    std::vector<uint8_t> sorted(static_cast<size_t>(N), 1);
    RegionErrors errors;
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 256) if (nt > 1)
        for (int64_t r = 0; r < N; ++r) {
            const int32_t* c = indices + indptr[r];
            const int64_t L = indptr[r + 1] - indptr[r];
            bool inc = true;
            for (int64_t k = 1; k < L; ++k) inc &= c[k] > c[k - 1];
            int64_t n = L;
            if (!inc) {
                sorted[r] = 0;
                errors.guard([&] {  // allocates
                    std::vector<int32_t> t(c, c + L);
                    std::sort(t.begin(), t.end());
                    n = std::unique(t.begin(), t.end()) - t.begin();
                });
            }
            out.indptr[r + 1] = n;
        }
    });
    errors.rethrow();
    exclusive_prefix(out.indptr);
    out.indices.resize(static_cast<size_t>(out.indptr[N]));
    if (!out.binary) out.values.resize(out.indices.size());
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 256) if (nt > 1)
        for (int64_t r = 0; r < N; ++r) {
            const int64_t s = indptr[r], L = indptr[r + 1] - s;
            int32_t* oc = out.indices.data() + out.indptr[r];
            float* ov = out.binary ? nullptr : out.values.data() + out.indptr[r];
            if (sorted[r]) {
                std::copy(indices + s, indices + s + L, oc);
                if (ov) std::copy(values + s, values + s + L, ov);
                continue;
            }
            errors.guard([&] {  // allocates
                std::vector<int64_t> perm(static_cast<size_t>(L));
                for (int64_t k = 0; k < L; ++k) perm[k] = s + k;
                // Stable, so duplicates are summed in their stored order.
                std::stable_sort(perm.begin(), perm.end(),
                                 [&](int64_t a, int64_t b) { return indices[a] < indices[b]; });
                int64_t n = -1;
                for (int64_t k = 0; k < L; ++k) {
                    int64_t p = perm[k];
                    if (n < 0 || oc[n] != indices[p]) {
                        oc[++n] = indices[p];
                        if (ov) ov[n] = values[p];
                    } else if (ov) {
                        ov[n] += values[p];
                    }
                }
            });
        }
    });
    errors.rethrow();
    return out;
}

void csr_to_dense(float* out, const CSRView& x, int threads) {
    const int64_t D = x.n_cols;
    const int nt = threads_for(threads, x.n_rows * D, 1 << 20);
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < x.n_rows; ++r) {
            float* row = out + r * D;
            std::memset(row, 0, sizeof(float) * static_cast<size_t>(D));
            for (int64_t k = x.indptr[r]; k < x.indptr[r + 1]; ++k)
                row[x.indices[k]] = x.values ? x.values[k] : 1.0f;
        }
    });
}

CSR csr_take_rows(const CSRView& x, const int64_t* rows, int64_t n, int threads) {
    CSR out;
    out.n_rows = n;
    out.n_cols = x.n_cols;
    out.binary = x.values == nullptr;
    out.indptr.assign(static_cast<size_t>(n) + 1, 0);
    for (int64_t i = 0; i < n; ++i)
        out.indptr[i + 1] = out.indptr[i] + (x.indptr[rows[i] + 1] - x.indptr[rows[i]]);
    out.indices.resize(static_cast<size_t>(out.indptr[n]));
    if (!out.binary) out.values.resize(out.indices.size());
    const int nt = threads_for(threads, out.indptr[n], 1 << 18);
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; ++i) {
            const int64_t s = x.indptr[rows[i]], L = x.indptr[rows[i] + 1] - s;
            std::copy(x.indices + s, x.indices + s + L, out.indices.data() + out.indptr[i]);
            if (!out.binary) std::copy(x.values + s, x.values + s + L, out.values.data() + out.indptr[i]);
        }
    });
    return out;
}

CSR ragged_take(const CSRView& x, const int64_t* rows, int64_t n, int64_t prefix, int64_t add,
                int threads) {
    CSR out;
    out.n_rows = n;
    out.n_cols = x.n_cols;
    const int64_t extra = prefix >= 0 ? 1 : 0;
    out.indptr.assign(static_cast<size_t>(n) + 1, 0);
    for (int64_t i = 0; i < n; ++i)
        out.indptr[i + 1] = out.indptr[i] + extra + (x.indptr[rows[i] + 1] - x.indptr[rows[i]]);
    out.indices.resize(static_cast<size_t>(out.indptr[n]));
    const int nt = threads_for(threads, out.indptr[n], 1 << 18);
    run_region(nt, [&] {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; ++i) {
            int32_t* o = out.indices.data() + out.indptr[i];
            if (extra) *o++ = static_cast<int32_t>(prefix);
            for (int64_t k = x.indptr[rows[i]]; k < x.indptr[rows[i] + 1]; ++k)
                *o++ = static_cast<int32_t>(x.indices[k] + add);
        }
    });
    return out;
}

}  // namespace cpu
}  // namespace imdbfast
