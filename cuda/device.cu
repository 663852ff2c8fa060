// device.cu: device discovery through the statically linked CUDA runtime (in the simulator
// build: one pretend device, the host).
#include "device.h"

#ifdef IMDBFAST_CUDA_SIM

namespace imdbfast {
namespace gpu {

std::vector<DeviceInfo> devices(std::string*) {
    return {DeviceInfo{0, "imdbfast host simulator", 0, 0, 0, 1}};
}
int runtime_version() { return 0; }
int driver_version() { return 0; }

}  // namespace gpu
}  // namespace imdbfast

#else

#include <string>

#include "cuda_check.h"

namespace imdbfast {
namespace gpu {

std::vector<DeviceInfo> devices(std::string* reason) {
    std::vector<DeviceInfo> out;
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {  // no driver, no device: not an error for discovery
        // Without any driver the runtime says "driver version is insufficient": say what it is.
        int driver = 0;
        const bool no_driver = cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0;
        if (reason) {
            if (no_driver)
                *reason = "no NVIDIA driver found";
            else if (err == cudaErrorInsufficientDriver)
                *reason = "the NVIDIA driver (CUDA " + std::to_string(driver / 1000) + "." +
                          std::to_string(driver % 1000 / 10) +
                          ") is older than this build's CUDA runtime needs";
            else
                *reason = cudaGetErrorString(err);
        }
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

}  // namespace gpu
}  // namespace imdbfast

#endif
