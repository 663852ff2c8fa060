// device.h: what the CUDA runtime can see. Host-side only; includes no CUDA headers, so the
// bindings compile with the host compiler.
#pragma once

#include <string>
#include <vector>

namespace imdbfast {
namespace gpu {

struct DeviceInfo {
    int index;
    std::string name;
    int major, minor;          // compute capability
    size_t total_memory;       // bytes
    int multiprocessors;
};

// Usable devices. A machine without a GPU or a driver has none: this never throws for that,
// so importing imdbfast._cuda works everywhere; `reason` says why the list is empty.
std::vector<DeviceInfo> devices(std::string* reason);
int runtime_version();  // the CUDA runtime linked into the module (e.g. 13000)
int driver_version();   // 0 without a driver

}  // namespace gpu
}  // namespace imdbfast
