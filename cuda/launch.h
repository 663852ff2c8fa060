// launch.h: the few device primitives the CUDA backend is written in, in two builds.
//
//   nvcc (the _cuda module): device memory, a grid-stride kernel per parallel loop, CUB's
//        radix sort and scans, on the legacy default stream.
//   IMDBFAST_CUDA_SIM (the _cuda_sim module, plain C++): the same calls on the host, serially:
//        "device" memory is host memory and each parallel loop is a for loop.
//
// Every GPU kernel (cuda/layers.cu, loss.cu, optimizers.cu, csr.cu) is one `parallel_for(n, body)` whose body is an
// IMDBFAST_HD lambda of the element index, so the simulator runs exactly the code the GPU runs
// (indexing, summation orders, the epoch's sort and segment bookkeeping): the CPU-only CI checks
// the GPU algorithm's logic and memory accesses (under AddressSanitizer too). What only a real
// GPU can check is this file's CUDA half and the launch shapes.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
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

#if defined(__CUDACC__) && !defined(IMDBFAST_CUDA_SIM)
template <class F>
__global__ void parallel_for_kernel(int64_t n, F body) {
    const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride)
        body(i);
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
// body(i) for every i in [0, n), in parallel; no ordering between elements. (Kernel sources
// only: host-compiled files such as the bindings see the rest of this header.)
template <class F>
void parallel_for(int64_t n, F body) {
    if (n <= 0) return;
#ifdef IMDBFAST_CUDA_SIM
    switch (sim_launch_order().load(std::memory_order_relaxed)) {
        case 1:
            for (int64_t i = n; i-- > 0;) body(i);
            break;
        case 2:
            for (int64_t i = 0; i < n; i += 2) body(i);
            for (int64_t i = 1; i < n; i += 2) body(i);
            break;
        default:
            for (int64_t i = 0; i < n; ++i) body(i);
    }
#else
    constexpr int kThreads = 256;
    const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20);
    parallel_for_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(n, body);
    IMDBFAST_CUDA_CHECK(cudaGetLastError());
#endif
}
#endif

// A grow-only device buffer of T (contents are not kept when it grows).
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

// n elements from src to dst in the given direction; returns when the copy is done.
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
    IMDBFAST_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
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

// Waits for the device and reports an asynchronous kernel fault as an exception.
inline void synchronize() {
#ifndef IMDBFAST_CUDA_SIM
    IMDBFAST_CUDA_CHECK(cudaDeviceSynchronize());
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
