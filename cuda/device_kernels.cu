// device_kernels.cu: imdbfast's GPU kernels (contract in device_kernels.h). Each kernel is one
// parallel_for over the output elements with the element's math from cpp/common.h, so every
// output element is computed by one thread in the CPU's summation order: no floating-point
// atomics anywhere, and the results are deterministic run to run.
#include <atomic>
#include <stdexcept>
#include <string>

#include "device_kernels.h"

#ifndef IMDBFAST_CUDA_SIM
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>
#endif

namespace imdbfast {
namespace gpu {

uint64_t next_uid() {
    static std::atomic<uint64_t> counter{0};
    return ++counter;
}

namespace {

// flag = min(flag, i): the first failing index, the same whatever the thread schedule.
IMDBFAST_HD inline void flag_min(unsigned long long* flag, int64_t i) {
#if defined(__CUDA_ARCH__)
    atomicMin(flag, static_cast<unsigned long long>(i));
#else
    if (static_cast<unsigned long long>(i) < *flag) *flag = static_cast<unsigned long long>(i);
#endif
}

constexpr unsigned long long kNoFlag = ~0ull;

// A one-value device flag for validation kernels.
struct Flag {
    Buffer<unsigned long long> v{1};
    Flag() { copy_to_device(v.data(), &kNoFlag, 1); }
    int64_t read() {
        const unsigned long long r = read_one(v.data());
        return r == kNoFlag ? -1 : static_cast<int64_t>(r);
    }
};

}  // namespace

// ---- library primitives (launch.h) ------------------------------------------------------------

void exclusive_sum(Scratch& s, const int64_t* in, int64_t* out, int64_t n) {
    if (n <= 0) return;
#ifdef IMDBFAST_CUDA_SIM
    std::vector<int64_t> tmp(in, in + n);
    std::exclusive_scan(tmp.begin(), tmp.end(), out, int64_t(0));
    (void)s;
#else
    if (in == out) {  // CUB's scans read and write through different arrays
        s.copy.resize(n);
        copy_on_device(s.copy.data(), in, n);
        in = s.copy.data();
    }
    size_t bytes = 0;
    IMDBFAST_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, in, out, n));
    s.bytes.resize(static_cast<int64_t>(bytes));
    IMDBFAST_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(s.bytes.data(), bytes, in, out, n));
#endif
}

void sort_pairs(Scratch& s, const uint64_t* keys_in, uint64_t* keys_out, const int32_t* vals_in,
                int32_t* vals_out, int64_t n, int bits) {
    if (n <= 0) return;
#ifdef IMDBFAST_CUDA_SIM
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), int64_t(0));
    std::stable_sort(idx.begin(), idx.end(),
                     [&](int64_t a, int64_t b) { return keys_in[a] < keys_in[b]; });
    for (int64_t i = 0; i < n; ++i) {
        keys_out[i] = keys_in[idx[i]];
        vals_out[i] = vals_in[idx[i]];
    }
    (void)s, (void)bits;
#else
    size_t bytes = 0;
    IMDBFAST_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, vals_in,
                                                        vals_out, n, 0, bits));
    s.bytes.resize(static_cast<int64_t>(bytes));
    IMDBFAST_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.bytes.data(), bytes, keys_in, keys_out,
                                                        vals_in, vals_out, n, 0, bits));
#endif
}

void segmented_sort(Scratch& s, const int32_t* keys_in, int32_t* keys_out, int64_t n,
                    const int64_t* offsets, int64_t N) {
    if (n <= 0) return;
#ifdef IMDBFAST_CUDA_SIM
    std::copy(keys_in, keys_in + n, keys_out);
    for (int64_t r = 0; r < N; ++r) std::sort(keys_out + offsets[r], keys_out + offsets[r + 1]);
    (void)s;
#else
    // CUB counts items and segments in int; the caller keeps both below 2**31.
    const int ni = static_cast<int>(n), Ni = static_cast<int>(N);
    size_t bytes = 0;
    IMDBFAST_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(nullptr, bytes, keys_in, keys_out, ni, Ni,
                                                           offsets, offsets + 1));
    s.bytes.resize(static_cast<int64_t>(bytes));
    IMDBFAST_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(s.bytes.data(), bytes, keys_in, keys_out,
                                                           ni, Ni, offsets, offsets + 1));
#endif
}

// ---- layers ------------------------------------------------------------------------------------

void sparse_forward(float* z, float* a, int act, const CSRDev& x, const int64_t* rows,
                    int64_t first, const float* W, const float* bias, int64_t H, int64_t B) {
    const int64_t* indptr = x.indptr;
    const int32_t* indices = x.indices;
    const float* values = x.values;
    parallel_for(B * H, [=] IMDBFAST_HD(int64_t i) {
        const int64_t b = i / H, h = i % H;
        const int64_t r = rows ? rows[b] : first + b;
        const int64_t s = indptr[r];
        const float v = gather_sum(indices + s, values ? values + s : nullptr, indptr[r + 1] - s,
                                   W, H, h, bias[h]);
        z[i] = v;
        a[i] = activate(act, v);
    });
}

void dense_forward(float* z, float* a, int act, const float* x, const float* W, const float* bias,
                   int64_t I, int64_t H, int64_t B) {
    parallel_for(B * H, [=] IMDBFAST_HD(int64_t i) {
        const int64_t b = i / H, h = i % H;
        const float v = dense_sum(x + b * I, W, I, H, h, bias[h]);
        z[i] = v;
        a[i] = activate(act, v);
    });
}

void loss_rows(float* dz, double* loss_row, double* correct_row, const float* z, const float* a,
               const float* y, const float* sw, const int64_t* rows, int64_t first, int last_act,
               int loss, int64_t O, int64_t B) {
    parallel_for(B, [=] IMDBFAST_HD(int64_t b) {
        const int64_t r = rows ? rows[b] : first + b;
        const float w = sw ? sw[r] : 1.0f;
        if (dz)
            row_loss<true>(dz + b * O, loss_row + b, correct_row + b, z + b * O, a + b * O,
                           y + r * O, w, last_act, loss, O, B);
        else
            row_loss<false>(nullptr, loss_row + b, correct_row + b, z + b * O, a + b * O,
                            y + r * O, w, last_act, loss, O, B);
    });
}

void act_forward(float* a, const float* z, int act, int64_t n) {
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) { a[i] = activate(act, z[i]); });
}

void act_backward(float* dz, const float* da, const float* z, const float* a, int act, int64_t n) {
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) { dz[i] = activate_grad(act, da[i], z[i], a[i]); });
}

void backward_input(float* dz_prev, const float* dz, const float* W, const float* z_prev,
                    const float* a_prev, int act_prev, int64_t I, int64_t H, int64_t B) {
    parallel_for(B * I, [=] IMDBFAST_HD(int64_t k) {
        const int64_t b = k / I, i = k % I;
        const float da = input_grad_sum(dz + b * H, W, H, i);
        dz_prev[k] = activate_grad(act_prev, da, z_prev[k], a_prev[k]);
    });
}

void weight_grad(float* dW, const float* dz, const float* x, int64_t B, int64_t I, int64_t H) {
    parallel_for(I * H, [=] IMDBFAST_HD(int64_t k) {
        const int64_t i = k / H, h = k % H;
        dW[k] = batch_sum_elem(dz, x, B, I, i, H, h);
    });
}

void small_grads(float* G, const int64_t* offsets, const int64_t* dims, float* const* dz,
                 float* const* a, int L, int64_t first, int64_t last, int64_t B) {
    parallel_for(last - first, [=] IMDBFAST_HD(int64_t k) {
        const int64_t e = first + k;
        int p = 1;
        while (p + 1 < 2 * L && offsets[p + 1] <= e) ++p;  // 2L - 1 parameters at most
        const int l = p / 2;
        const int64_t H = dims[l + 1], off = e - offsets[p];
        G[e] = p % 2 == 0 ? batch_sum_elem(dz[l], a[l - 1], B, dims[l], off / H, H, off % H)
                          : batch_sum_elem(dz[l], nullptr, B, 1, 0, H, off);
    });
}

// ---- the epoch index -------------------------------------------------------------------------

void build_epoch_index(EpochIndex& ix, Scratch& s, const CSRDev& x, const int64_t* order,
                       int64_t N, int64_t B) {
    const int64_t D = x.n_cols;
    ix.N = N;
    ix.B = B;
    ix.n_batches = N == 0 ? 0 : 1 + (N - 1) / B;
    const int64_t n_batches = ix.n_batches;
    // 1. each epoch position's first non-zero: a prefix sum of the row lengths in epoch order
    ix.eptr.resize(N + 1);
    int64_t* eptr = ix.eptr.data();
    const int64_t* indptr = x.indptr;
    parallel_for(N + 1, [=] IMDBFAST_HD(int64_t p) {
        eptr[p] = p < N ? indptr[order[p] + 1] - indptr[order[p]] : 0;
    });
    exclusive_sum(s, eptr, eptr, N + 1);
    const int64_t nnz = read_one(eptr + N);
    if (nnz > INT32_MAX)
        throw std::length_error("x: more than 2**31 - 1 non-zeros in one epoch; the GPU path "
                                "indexes them with int32");
    ix.nnz = nnz;
    // 2. key every non-zero by (batch, column); batch * D + column < n_batches * D
    int bits = 1;
    while (bits < 64 && (uint64_t(1) << bits) < static_cast<uint64_t>(n_batches * D)) ++bits;
    ix.keys.resize(nnz);
    ix.sorted_keys.resize(nnz);
    ix.ids.resize(nnz);
    ix.sorted_ids.resize(nnz);
    ix.pos.resize(nnz);
    ix.has_values = x.values != nullptr;
    if (x.values) ix.vals.resize(nnz);
    uint64_t* keys = ix.keys.data();
    int32_t* ids = ix.ids.data();
    int32_t* pos = ix.pos.data();
    float* vals = x.values ? ix.vals.data() : nullptr;
    const int32_t* indices = x.indices;
    const float* values = x.values;
    parallel_for(N, [=] IMDBFAST_HD(int64_t p) {
        const int64_t r = order[p], src = indptr[r], len = indptr[r + 1] - src;
        const uint64_t base = static_cast<uint64_t>(p / B) * static_cast<uint64_t>(D);
        for (int64_t k = 0; k < len; ++k) {
            const int64_t e = eptr[p] + k;
            keys[e] = base + static_cast<uint64_t>(indices[src + k]);
            ids[e] = static_cast<int32_t>(e);
            pos[e] = static_cast<int32_t>(p);
            if (vals) vals[e] = values[src + k];
        }
    });
    // 3. the stable sort keeps each group in epoch order, i.e. batch rows ascending
    sort_pairs(s, keys, ix.sorted_keys.data(), ids, ix.sorted_ids.data(), nnz, bits);
    // 4. groups: starts flagged, numbered by a prefix sum, their first entries recorded
    ix.heads.resize(nnz + 1);
    int64_t* heads = ix.heads.data();
    const uint64_t* sk = ix.sorted_keys.data();
    parallel_for(nnz + 1, [=] IMDBFAST_HD(int64_t i) {
        heads[i] = i < nnz && (i == 0 || sk[i] != sk[i - 1]) ? 1 : 0;
    });
    // group_start needs the flags after the sum turns them into numbers: flag = next - this
    exclusive_sum(s, heads, heads, nnz + 1);
    const int64_t n_groups = read_one(heads + nnz);
    ix.n_groups = n_groups;
    ix.group_start.resize(n_groups + 1);
    int64_t* gs = ix.group_start.data();
    parallel_for(nnz + 1, [=] IMDBFAST_HD(int64_t i) {
        if (i == nnz) gs[n_groups] = nnz;
        else if (heads[i + 1] != heads[i]) gs[heads[i]] = i;
    });
    // 5. each batch's first group: group g's batch is key / D; batches without non-zeros get
    //    an empty range
    ix.batch_group.resize(n_batches + 1);
    int64_t* bg = ix.batch_group.data();
    parallel_for(n_groups + 1, [=] IMDBFAST_HD(int64_t g) {
        const int64_t b = g < n_groups ? static_cast<int64_t>(sk[gs[g]] / D) : n_batches;
        const int64_t prev = g == 0 ? -1 : static_cast<int64_t>(sk[gs[g - 1]] / D);
        for (int64_t k = prev + 1; k <= b; ++k) bg[k] = g;
    });
    ix.host_batch_group.resize(static_cast<size_t>(n_batches + 1));
    copy_to_host(ix.host_batch_group.data(), bg, n_batches + 1);
}

void sparse_weight_grad(float* G, const EpochIndex& ix, int64_t batch, const float* dz1,
                        int64_t D, int64_t H) {
    const int64_t g0 = ix.host_batch_group[batch], n = ix.host_batch_group[batch + 1] - g0;
    const int64_t p0 = batch * ix.B;
    const int64_t* gs = ix.group_start.data();
    const uint64_t* sk = ix.sorted_keys.data();
    const int32_t* sid = ix.sorted_ids.data();
    const int32_t* pos = ix.pos.data();
    const float* ev = ix.has_values ? ix.vals.data() : nullptr;
    parallel_for(n * H, [=] IMDBFAST_HD(int64_t k) {
        const int64_t g = g0 + k / H, h = k % H;
        const int64_t start = gs[g], len = gs[g + 1] - start;
        const int64_t col = static_cast<int64_t>(sk[start] % static_cast<uint64_t>(D));
        auto term = [=](int64_t j) {  // inherits the kernel's execution space
            const int32_t e = sid[start + j];
            const float d = dz1[(static_cast<int64_t>(pos[e]) - p0) * H + h];
            return ev ? ev[e] * d : d;
        };
        G[col * H + h] = group_sum(term, len);
    });
}

// ---- optimizers ------------------------------------------------------------------------------

void optimizer_step(const cpu::OptimizerConfig& c, int64_t iteration, float* w, float* g,
                    float* const* slots, int64_t n) {
    const cpu::OptimizerSlots k = cpu::optimizer_slots(c);
    float* v = cpu::slot_of(slots, k.velocity);
    float* m = cpu::slot_of(slots, k.momentum);
    if (c.kind == cpu::OPT_RMSPROP) {
        const RMSpropStep st = cpu::rmsprop_step(c);
        float* mg = cpu::slot_of(slots, k.average_gradient);
        parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
            float d1 = 0.0f, d2 = 0.0f;
            rmsprop_elem(w[i], g[i], v[i], m ? m[i] : d1, mg ? mg[i] : d2, st);
            g[i] = 0.0f;
        });
    } else if (c.kind == cpu::OPT_ADAM) {
        const AdamStep st = cpu::adam_step(c, iteration);
        float* vh = cpu::slot_of(slots, k.velocity_hat);
        parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
            float d = 0.0f;
            adam_elem(w[i], g[i], m[i], v[i], vh ? vh[i] : d, st);
            g[i] = 0.0f;
        });
    } else {
        const SGDStep st = cpu::sgd_step(c);
        parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
            float d = 0.0f;
            sgd_elem(w[i], g[i], m ? m[i] : d, st);
            g[i] = 0.0f;
        });
    }
}

// ---- building CSR matrices -------------------------------------------------------------------

int64_t first_nonfinite(const float* v, int64_t n) {
    Flag f;
    unsigned long long* fp = f.v.data();
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
        const float x = v[i];
        if (!(x - x == 0.0f)) flag_min(fp, i);  // NaN and +-inf give NaN
    });
    return f.read();
}

void multi_hot(DeviceCSR& out, Scratch& s, const int32_t* tokens, const int64_t* offsets,
               int64_t N, int64_t n_tokens, int64_t D) {
    if (n_tokens > INT32_MAX || N > INT32_MAX)
        throw std::length_error("tokens: the GPU path sorts at most 2**31 - 1 tokens in 2**31 - 1 rows");
    Flag bad;
    unsigned long long* bp = bad.v.data();
    parallel_for(n_tokens, [=] IMDBFAST_HD(int64_t k) {
        if (tokens[k] < 0 || tokens[k] >= D) flag_min(bp, k);
    });
    const int64_t b = bad.read();
    if (b >= 0) {
        const int32_t t = read_one(tokens + b);
        throw std::out_of_range("tokens: token " + std::to_string(t) + " at position " +
                                std::to_string(b) + " is outside [0, " + std::to_string(D) + ")");
    }
    Buffer<int32_t> sorted(n_tokens);
    int32_t* st = sorted.data();
    segmented_sort(s, tokens, st, n_tokens, offsets, N);
    out.device = 0;
    out.n_rows = N;
    out.n_cols = D;
    out.binary = true;
    out.indptr.resize(N + 1);
    int64_t* ip = out.indptr.data();
    parallel_for(N + 1, [=] IMDBFAST_HD(int64_t r) {  // distinct tokens per row
        int64_t n = 0;
        if (r < N)
            for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k)
                n += k == offsets[r] || st[k] != st[k - 1];
        ip[r] = n;
    });
    exclusive_sum(s, ip, ip, N + 1);
    out.nnz = read_one(ip + N);
    out.indices.resize(std::max<int64_t>(1, out.nnz));
    int32_t* idx = out.indices.data();
    parallel_for(N, [=] IMDBFAST_HD(int64_t r) {
        int64_t o = ip[r];
        for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k)
            if (k == offsets[r] || st[k] != st[k - 1]) idx[o++] = st[k];
    });
    out.uid = next_uid();
}

// One thread per 32-column chunk of a row (adjacent threads read adjacent 128-byte runs, not
// rows 40 KB apart); a scan over the chunk counts, in row-major order, gives every chunk's first
// output position, and the row pointers are the counts at each row's first chunk.
template <typename T>
void csr_from_dense(DeviceCSR& out, Scratch& s, const T* x, int64_t N, int64_t D) {
    constexpr int64_t kChunk = 32;
    const int64_t C = (D + kChunk - 1) / kChunk, n = N * C;
    Flag bad, valued;
    unsigned long long* bp = bad.v.data();
    unsigned long long* vp = valued.v.data();
    Buffer<int64_t> pos(n + 1);
    int64_t* cp = pos.data();
    parallel_for(n + 1, [=] IMDBFAST_HD(int64_t k) {
        int64_t cnt = 0;
        if (k < n) {
            const int64_t r = k / C, c0 = (k % C) * kChunk, c1 = c0 + kChunk < D ? c0 + kChunk : D;
            for (int64_t c = c0; c < c1; ++c) {
                const T v = x[r * D + c];
                if (!(v - v == T(0))) flag_min(bp, r * D + c);
                const float f = static_cast<float>(v);
                if (f != 0.0f) {
                    ++cnt;
                    if (f != 1.0f) flag_min(vp, r * D + c);
                }
            }
        }
        cp[k] = cnt;
    });
    const int64_t b = bad.read();
    if (b >= 0)
        throw std::invalid_argument("x: holds NaN or infinity at flat index " + std::to_string(b));
    exclusive_sum(s, cp, cp, n + 1);
    out.n_rows = N;
    out.n_cols = D;
    out.nnz = read_one(cp + n);
    out.binary = valued.read() < 0;
    out.indptr.resize(N + 1);
    int64_t* ip = out.indptr.data();
    parallel_for(N + 1, [=] IMDBFAST_HD(int64_t r) { ip[r] = cp[r * C < n ? r * C : n]; });
    out.indices.resize(std::max<int64_t>(1, out.nnz));
    if (!out.binary) out.values.resize(std::max<int64_t>(1, out.nnz));
    int32_t* idx = out.indices.data();
    float* val = out.binary ? nullptr : out.values.data();
    parallel_for(n, [=] IMDBFAST_HD(int64_t k) {
        const int64_t r = k / C, c0 = (k % C) * kChunk, c1 = c0 + kChunk < D ? c0 + kChunk : D;
        int64_t o = cp[k];
        for (int64_t c = c0; c < c1; ++c) {
            const float f = static_cast<float>(x[r * D + c]);
            if (f != 0.0f) {
                idx[o] = static_cast<int32_t>(c);
                if (val) val[o] = f;
                ++o;
            }
        }
    });
    out.uid = next_uid();
}
template void csr_from_dense<float>(DeviceCSR&, Scratch&, const float*, int64_t, int64_t);
template void csr_from_dense<double>(DeviceCSR&, Scratch&, const double*, int64_t, int64_t);

void take_rows(DeviceCSR& out, Scratch& s, const DeviceCSR& x, const int64_t* rows, int64_t n) {
    out.device = x.device;
    out.n_rows = n;
    out.n_cols = x.n_cols;
    out.binary = x.binary;
    out.indptr.resize(n + 1);
    int64_t* ip = out.indptr.data();
    const int64_t* xp = x.indptr.data();
    parallel_for(n + 1, [=] IMDBFAST_HD(int64_t i) {
        ip[i] = i < n ? xp[rows[i] + 1] - xp[rows[i]] : 0;
    });
    exclusive_sum(s, ip, ip, n + 1);
    out.nnz = read_one(ip + n);
    out.indices.resize(std::max<int64_t>(1, out.nnz));
    if (!out.binary) out.values.resize(std::max<int64_t>(1, out.nnz));
    int32_t* idx = out.indices.data();
    float* val = out.binary ? nullptr : out.values.data();
    const int32_t* xi = x.indices.data();
    const float* xv = x.binary ? nullptr : x.values.data();
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
        const int64_t src = xp[rows[i]], len = xp[rows[i] + 1] - src;
        for (int64_t k = 0; k < len; ++k) {
            idx[ip[i] + k] = xi[src + k];
            if (val) val[ip[i] + k] = xv[src + k];
        }
    });
    out.uid = next_uid();
}

}  // namespace gpu
}  // namespace imdbfast
