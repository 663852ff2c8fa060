// launch.cu: the library primitives of launch.h: imdbfast's streams, foreign streams and
// pointers, CUB's scans and sorts on the GPU, the standard library's in the simulator.
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "launch.h"

#ifndef IMDBFAST_CUDA_SIM
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>
#endif

namespace imdbfast {
namespace gpu {

#ifdef IMDBFAST_CUDA_SIM
namespace {
std::mutex sim_waits_mu;
std::vector<uintptr_t> sim_waits;
}  // namespace
std::vector<uintptr_t> sim_take_waited_streams() {
    std::lock_guard<std::mutex> lock(sim_waits_mu);
    return std::exchange(sim_waits, {});
}
#else
namespace {
thread_local cudaStream_t capture_stream = nullptr;  // see capture_on
}  // namespace

void capture_on(cudaStream_t s) { capture_stream = s; }

cudaStream_t stream() {
    if (capture_stream) return capture_stream;
    static std::mutex mu;
    static std::vector<cudaStream_t> streams;  // per device, never destroyed (they outlive
                                               // any static destructor that might use them)
    int device = 0;
    IMDBFAST_CUDA_CHECK(cudaGetDevice(&device));
    std::lock_guard<std::mutex> lock(mu);
    if (static_cast<size_t>(device) >= streams.size()) streams.resize(device + 1, nullptr);
    if (!streams[device])
        IMDBFAST_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking));
    return streams[device];
}
#endif

void wait_for_stream(uintptr_t producer) {
    if (producer == 0)
        throw std::invalid_argument(
            "stream: 0 is disallowed by the __cuda_array_interface__ protocol (ambiguous); "
            "use 1 for the legacy default stream, 2 for the per-thread one");
#ifdef IMDBFAST_CUDA_SIM
    std::lock_guard<std::mutex> lock(sim_waits_mu);
    sim_waits.push_back(producer);
#else
    const cudaStream_t s = producer == 1   ? cudaStreamLegacy
                           : producer == 2 ? cudaStreamPerThread
                                           : reinterpret_cast<cudaStream_t>(producer);
    const cudaStream_t own = stream();
    if (s == own) return;
    cudaEvent_t ev;
    IMDBFAST_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    // (destroying the event right after the wait is enqueued is allowed: the runtime frees it
    // once the wait is done)
    cudaError_t err = cudaEventRecord(ev, s);
    if (err == cudaSuccess) err = cudaStreamWaitEvent(own, ev, 0);
    cudaEventDestroy(ev);
    if (err != cudaSuccess) {
        cudaGetLastError();  // (an invalid handle is not a sticky error)
        throw std::invalid_argument("stream: cannot wait for the producer's stream " +
                                    std::to_string(producer) + " (" + cudaGetErrorString(err) +
                                    "; it must be a live stream on the array's device)");
    }
#endif
}

namespace {
std::invalid_argument host_memory(const std::string& name, int device) {
    return std::invalid_argument(name + ": is host memory, not memory of GPU " +
                                 std::to_string(device) + " (copy it to the device first)");
}
}  // namespace

void check_device_pointer(const void* p, size_t bytes, int device, const std::string& name) {
    if (bytes == 0) return;
    if (!p) throw std::invalid_argument(name + ": a null device pointer");
#ifdef IMDBFAST_CUDA_SIM
    if (sim_strict_pointers().load()) throw host_memory(name, device);
#else
    const char* ends[2] = {static_cast<const char*>(p), static_cast<const char*>(p) + bytes - 1};
    for (const char* q : ends) {
        cudaPointerAttributes a{};
        const cudaError_t err = cudaPointerGetAttributes(&a, q);
        if (err != cudaSuccess) {
            cudaGetLastError();  // an invalid value is not sticky; clear it all the same
            throw std::invalid_argument(name + ": not a CUDA pointer (" +
                                        cudaGetErrorString(err) + ")");
        }
        if (a.type == cudaMemoryTypeManaged) continue;
        if (a.type != cudaMemoryTypeDevice) throw host_memory(name, device);
        if (a.device != device)
            throw std::invalid_argument(name + ": is memory of GPU " + std::to_string(a.device) +
                                        ", the model is on GPU " + std::to_string(device));
    }
#endif
}

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
    IMDBFAST_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, in, out, n, stream()));
    s.bytes.resize(static_cast<int64_t>(bytes));
    IMDBFAST_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(s.bytes.data(), bytes, in, out, n, stream()));
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
                                                        vals_out, n, 0, bits, stream()));
    s.bytes.resize(static_cast<int64_t>(bytes));
    IMDBFAST_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.bytes.data(), bytes, keys_in, keys_out,
                                                        vals_in, vals_out, n, 0, bits, stream()));
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
                                                           offsets, offsets + 1, stream()));
    s.bytes.resize(static_cast<int64_t>(bytes));
    IMDBFAST_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(s.bytes.data(), bytes, keys_in, keys_out,
                                                           ni, Ni, offsets, offsets + 1,
                                                           stream()));
#endif
}

}  // namespace gpu
}  // namespace imdbfast
