// launch.cu: the library primitives of launch.h: CUB's scans and sorts on the GPU, the standard
// library's in the simulator.
#include <stdexcept>
#include <string>

#include "launch.h"

#ifndef IMDBFAST_CUDA_SIM
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>
#endif

namespace imdbfast {
namespace gpu {

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

}  // namespace gpu
}  // namespace imdbfast
