// bindings_cuda.cpp: the _cuda extension module, built only when CMake finds a CUDA compiler.
// It links the CUDA runtime statically, so importing it on a machine without a driver works
// and simply reports no devices.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "imdbfast's CUDA module: device discovery (the GPU kernels are still to come).";
    m.attr("architectures") = IMDBFAST_CUDA_ARCHITECTURES;
    m.def("devices", [] {
        std::string reason;
        py::list out;
        for (const auto& d : imdbfast::cuda::devices(&reason)) {
            py::dict e;
            e["index"] = d.index;
            e["name"] = d.name;
            e["compute_capability"] = py::make_tuple(d.major, d.minor);
            e["memory_bytes"] = d.total_memory;
            e["multiprocessors"] = d.multiprocessors;
            out.append(e);
        }
        return py::make_tuple(out, reason);
    }, "(list of usable devices, reason when the list is empty).");
    m.def("runtime_version", &imdbfast::cuda::runtime_version);
    m.def("driver_version", &imdbfast::cuda::driver_version);
}
