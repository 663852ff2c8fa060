// launch.h: the few device primitives the CUDA backend is written in, in two builds.
//
//   nvcc (the _cuda module): device memory, a grid-stride kernel per parallel loop, CUB's
//        radix sort and scans, all on imdbfast's own non-blocking stream per device (stream()):
//        other libraries' work on their streams neither waits for it nor races with it, except
//        where wait_for_stream says so (the __cuda_array_interface__ `stream` field).
//   IMDBFAST_CUDA_SIM (the _cuda_sim module, plain C++): the same calls on the host, serially:
//        "device" memory is host memory and each parallel loop is a for loop.
//
// Every GPU kernel (cuda/layers.cu, loss.cu, optimizers.cu, csr.cu) is one `parallel_for(n, body)`
// whose body is an IMDBFAST_HD lambda of the element index, or one `parallel_sum4(n, part, done)`
// (four threads an output, one partial sum each), so the simulator runs exactly the code the GPU runs
// (indexing, summation orders, the epoch's sort and segment bookkeeping): the CPU-only CI checks
// the GPU algorithm's logic and memory accesses (under AddressSanitizer too). What only a real
// GPU can check is this file's CUDA half and the launch shapes.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

#ifndef IMDBFAST_CUDA_SIM
#include <cuda_runtime.h>

#include "cuda_check.h"
#endif

namespace imdbfast {
namespace gpu {

#ifndef IMDBFAST_CUDA_SIM
// imdbfast's stream on the current device: non-blocking, created on first use (launch.cu).
cudaStream_t stream();
// While s is set (not null), stream() returns s on the calling thread only: a CUDA graph is
// captured on a private stream, so that other threads' work on imdbfast's stream is neither
// recorded into it nor breaks the capture (capture is a stream's state, not a thread's).
void capture_on(cudaStream_t s);
#endif

// Makes imdbfast's stream wait for the work enqueued so far on another library's stream, as the
// __cuda_array_interface__ (v3) asks of a consumer: `producer` is its `stream` field, 1 the
// legacy default stream, 2 the per-thread default stream, otherwise a cudaStream_t; 0 is
// refused (the protocol disallows it as ambiguous). Host-side, nothing waits.
void wait_for_stream(uintptr_t producer);

#ifdef IMDBFAST_CUDA_SIM
// The simulator's record of the streams waited for (tests check each foreign array is waited
// for before it is read), and its strict mode: every pointer handed in counts as host memory,
// so the checks of check_device_pointer fire as they would for host memory on a GPU.
std::vector<uintptr_t> sim_take_waited_streams();  // (and forgets them)
inline std::atomic<bool>& sim_strict_pointers() {
    static std::atomic<bool> strict{false};
    return strict;
}
// Allocation failures on demand: the k-th next device allocation throws std::bad_alloc (0: off).
inline std::atomic<int64_t>& sim_fail_allocation() {
    static std::atomic<int64_t> k{0};
    return k;
}
#endif

// Throws std::invalid_argument (naming `name`) unless [p, p + bytes) is memory of device
// `device` (device or managed memory): a host pointer passed as a device array would fault in a
// kernel, and a fault poisons the process's CUDA context.
void check_device_pointer(const void* p, size_t bytes, int device, const std::string& name);

#if defined(__CUDACC__) && !defined(IMDBFAST_CUDA_SIM)
template <class F>
__global__ void parallel_for_kernel(int64_t n, F body) {
    const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride)
        body(i);
}
// sum4_kernel: four consecutive threads (a quad of one warp) per output, the quad's partial sums
// combined by two shuffles within it. xor 1 gives lanes 0 and 1 p0 + p1 (and p1 + p0: float
// addition is commutative, bit for bit), lanes 2 and 3 p2 + p3; xor 2 then gives lane 0
// (p0 + p1) + (p2 + p3). A quad is whole or absent in every pass (the stride is a multiple of
// 4), so the shuffles' mask is the quad's own lanes.
template <class Part, class Done>
__global__ void sum4_kernel(int64_t n, Part part, Done done) {
    const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    const unsigned quad = 0xFu << (threadIdx.x & 28u);
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < 4 * n;
         t += stride) {
        const int64_t i = t >> 2;
        float p = part(i, static_cast<int>(t & 3));
        p += __shfl_xor_sync(quad, p, 1, 4);
        p += __shfl_xor_sync(quad, p, 2, 4);
        if ((t & 3) == 0) done(i, p);
    }
}
#endif

#ifdef IMDBFAST_CUDA_SIM
// The order the simulator runs a loop's elements in: 0 ascending, 1 descending, 2 even indices
// then odd ones. A kernel whose result depends on the order (one element reading another's
// output: a race on the GPU) gives other bits under another order; the tests compare them.
inline std::atomic<int>& sim_launch_order() {
    static std::atomic<int> order{0};
    return order;
}
#endif

#if defined(__CUDACC__) || defined(IMDBFAST_CUDA_SIM)
#ifdef IMDBFAST_CUDA_SIM
// f(i) for i in [0, n) in the simulator's launch order (sim_launch_order).
template <class F>
void sim_each(int64_t n, int order, F&& f) {
    switch (order) {
        case 1:
            for (int64_t i = n; i-- > 0;) f(i);
            break;
        case 2:
            for (int64_t i = 0; i < n; i += 2) f(i);
            for (int64_t i = 1; i < n; i += 2) f(i);
            break;
        default:
            for (int64_t i = 0; i < n; ++i) f(i);
    }
}
#else
// Thread blocks of kThreads for a grid-stride loop over `threads` threads (at most 2^20).
constexpr int kThreads = 256;
inline unsigned grid_blocks(int64_t threads) {
    return static_cast<unsigned>(std::min<int64_t>((threads + kThreads - 1) / kThreads, int64_t(1) << 20));
}
#endif

// body(i) for every i in [0, n), in parallel; no ordering between elements. (Kernel sources
// only: host-compiled files such as the bindings see the rest of this header.)
template <class F>
void parallel_for(int64_t n, F body) {
    if (n <= 0) return;
#ifdef IMDBFAST_CUDA_SIM
    sim_each(n, sim_launch_order().load(std::memory_order_relaxed), body);
#else
    parallel_for_kernel<<<grid_blocks(n), kThreads, 0, stream()>>>(n, body);
    IMDBFAST_CUDA_CHECK(cudaGetLastError());
#endif
}
#endif

#if defined(__CUDACC__) || defined(IMDBFAST_CUDA_SIM)
// done(i, (p0 + p1) + (p2 + p3)) for every i in [0, n), in parallel, where p_j = part(i, j) is
// computed by a thread of its own: an output whose sum is four independent partial sums (the
// formula of sum4 in cpp/common.h) takes four threads and a chain a quarter as long, with the
// same bits as one thread computing all four.
template <class Part, class Done>
void parallel_sum4(int64_t n, Part part, Done done) {
    if (n <= 0) return;
#ifdef IMDBFAST_CUDA_SIM
    const int order = sim_launch_order().load(std::memory_order_relaxed);
    sim_each(n, order, [&](int64_t i) {  // order 1 also computes the partials last to first
        float p[4];
        for (int j = 0; j < 4; ++j) {
            const int jj = order == 1 ? 3 - j : j;
            p[jj] = part(i, jj);
        }
        done(i, sum4(p[0], p[1], p[2], p[3]));
    });
#else
    sum4_kernel<<<grid_blocks(4 * n), kThreads, 0, stream()>>>(n, part, done);
    IMDBFAST_CUDA_CHECK(cudaGetLastError());
#endif
}
#endif

// A grow-only device buffer of T (contents are not kept when it grows). The old memory is
// released before the new is allocated (the most memory for the new one); if that allocation
// fails, the buffer is left empty (capacity 0), so anything caching its pointer or size must
// be refreshed after a successful resize, never before.
template <typename T>
class Buffer {
   public:
    Buffer() = default;
    explicit Buffer(int64_t n) { resize(n); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    Buffer& operator=(Buffer&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    ~Buffer() { release(); }

    void resize(int64_t n) {
        if (n <= n_) return;
        release();
        void* p = nullptr;
        const size_t bytes = static_cast<size_t>(n) * sizeof(T);
#ifdef IMDBFAST_CUDA_SIM
        if (sim_fail_allocation().load() > 0 && sim_fail_allocation().fetch_sub(1) == 1)
            throw std::bad_alloc();
        p = ::operator new(bytes);
#else
        IMDBFAST_CUDA_CHECK(cudaMalloc(&p, bytes));
#endif
        p_ = static_cast<T*>(p);
        n_ = n;
    }
    T* data() { return p_; }
    const T* data() const { return p_; }
    int64_t capacity() const { return n_; }

   private:
    void release() {
        if (!p_) return;
#ifdef IMDBFAST_CUDA_SIM
        ::operator delete(p_);
#else
        cudaFree(p_);  // never throws from a destructor; an error here would be sticky anyway
#endif
        p_ = nullptr;
        n_ = 0;
    }
    T* p_ = nullptr;
    int64_t n_ = 0;
};

enum class Copy { ToDevice, ToHost, OnDevice };

// n elements from src to dst in the given direction, on imdbfast's stream: copies to or from
// the host return when the copy is done; a copy on the device is ordered like a kernel.
template <typename T>
void copy(T* dst, const T* src, int64_t n, Copy dir) {
    if (n <= 0) return;
    const size_t bytes = static_cast<size_t>(n) * sizeof(T);
#ifdef IMDBFAST_CUDA_SIM
    std::memcpy(dst, src, bytes);
    (void)dir;
#else
    const cudaMemcpyKind kind = dir == Copy::ToDevice ? cudaMemcpyHostToDevice
                                : dir == Copy::ToHost ? cudaMemcpyDeviceToHost
                                                      : cudaMemcpyDeviceToDevice;
    IMDBFAST_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream()));
    if (dir != Copy::OnDevice) IMDBFAST_CUDA_CHECK(cudaStreamSynchronize(stream()));
#endif
}
template <typename T>
void copy_to_device(T* dst, const T* src, int64_t n) { copy(dst, src, n, Copy::ToDevice); }
template <typename T>
void copy_to_host(T* dst, const T* src, int64_t n) { copy(dst, src, n, Copy::ToHost); }
template <typename T>
void copy_on_device(T* dst, const T* src, int64_t n) { copy(dst, src, n, Copy::OnDevice); }

template <typename T>
T read_one(const T* src) {
    T v;
    copy_to_host(&v, src, 1);
    return v;
}

// Waits for imdbfast's stream and reports an asynchronous kernel fault as an exception.
inline void synchronize() {
#ifndef IMDBFAST_CUDA_SIM
    IMDBFAST_CUDA_CHECK(cudaStreamSynchronize(stream()));
#endif
}

// Selects device `index` for the calling thread.
inline void set_device(int index) {
#ifdef IMDBFAST_CUDA_SIM
    if (index != 0) throw std::invalid_argument("device: the simulator has device 0 only");
#else
    IMDBFAST_CUDA_CHECK(cudaSetDevice(index));
#endif
}

// Scratch for the library primitives below (CUB's temporary storage), grown on demand.
struct Scratch {
    Buffer<unsigned char> bytes;
    Buffer<int64_t> copy;  // the input of an in-place scan
};

// Library primitives (CUB on the GPU, the standard library in the simulator), defined in
// launch.cu.
// out[i] = in[0] + ... + in[i-1] for i in [0, n) (out[0] = 0). In place is allowed.
void exclusive_sum(Scratch& s, const int64_t* in, int64_t* out, int64_t n);
// Stable sort of (key, value) pairs by the low `bits` bits of the key (the rest must be zero).
// Stability keeps equal keys in their input order: that order is what makes sums over a key's
// group deterministic.
void sort_pairs(Scratch& s, const uint64_t* keys_in, uint64_t* keys_out, const int32_t* vals_in,
                int32_t* vals_out, int64_t n, int bits);
// Sorts each segment [offsets[r], offsets[r+1]) of keys ascending (n keys, N segments).
void segmented_sort(Scratch& s, const int32_t* keys_in, int32_t* keys_out, int64_t n,
                    const int64_t* offsets, int64_t N);

}  // namespace gpu
}  // namespace imdbfast
