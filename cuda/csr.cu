// csr.cu: building CSR matrices on the GPU (contract in kernels.cuh). Each kernel is one parallel_for
// over the output elements with the element's math from cpp/common.h, so every output element
// is computed by one thread in the CPU's summation order: no floating-point atomics, and the
// results are the same run to run. The CPU's counterpart: cpp/csr.cpp.
#include <atomic>
#include <stdexcept>
#include <string>

#include "kernels.cuh"

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
// output position, and the row pointers are the counts at each row's first chunk. A chunk's
// thread touches the shared flags at most once each: a count matrix has a value other than 1 in
// most chunks, and one atomic per such non-zero would serialise the pass on one address.
template <typename T>
void csr_from_dense(DeviceCSR& out, Scratch& s, const T* x, int64_t N, int64_t D) {
    constexpr int64_t kChunk = 32;
    const int64_t C = (D + kChunk - 1) / kChunk, n = N * C;
    Flag bad, valued;  // valued: set (to 0) when any value is not 1; only whether matters
    unsigned long long* bp = bad.v.data();
    unsigned long long* vp = valued.v.data();
    Buffer<int64_t> pos(n + 1);
    int64_t* cp = pos.data();
    parallel_for(n + 1, [=] IMDBFAST_HD(int64_t k) {
        int64_t cnt = 0, first_bad = -1;
        bool other = false;
        if (k < n) {
            const int64_t r = k / C, c0 = (k % C) * kChunk, c1 = c0 + kChunk < D ? c0 + kChunk : D;
            for (int64_t c = c0; c < c1; ++c) {
                const T v = x[r * D + c];
                if (!(v - v == T(0)) && first_bad < 0) first_bad = r * D + c;
                const float f = static_cast<float>(v);
                cnt += f != 0.0f;
                other |= f != 0.0f && f != 1.0f;
            }
        }
        cp[k] = cnt;
        if (first_bad >= 0) flag_min(bp, first_bad);
        // every writer stores the same 0: no atomic needed; the read skips most stores
        if (other && *static_cast<volatile unsigned long long*>(vp) != 0ull) *vp = 0ull;
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

void csr_take_rows(DeviceCSR& out, Scratch& s, const DeviceCSR& x, const int64_t* rows, int64_t n) {
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
