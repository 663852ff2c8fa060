// device.cu: device discovery through the statically linked CUDA runtime. Kernels (the CUDA
// backend proper) are the CUDA backend issue's; this file is its foundation.
#include "cuda_check.h"
#include "device.h"

namespace imdbfast {
namespace cuda {

std::vector<DeviceInfo> devices(std::string* reason) {
    std::vector<DeviceInfo> out;
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {  // no driver, no device: not an error for discovery
        if (reason) *reason = cudaGetErrorString(err);
        cudaGetLastError();    // clear the sticky state
        return out;
    }
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp p{};
        IMDBFAST_CUDA_CHECK(cudaGetDeviceProperties(&p, i));
        out.push_back(DeviceInfo{i, p.name, p.major, p.minor, p.totalGlobalMem, p.multiProcessorCount});
    }
    if (out.empty() && reason) *reason = "no CUDA device";
    return out;
}

int runtime_version() {
    int v = 0;
    if (cudaRuntimeGetVersion(&v) != cudaSuccess) return 0;
    return v;
}

int driver_version() {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
    return v;
}

}  // namespace cuda
}  // namespace imdbfast
