// cuda_check.h: CUDA errors become C++ exceptions (pybind11 turns them into RuntimeError);
// nothing in imdbfast calls exit or abort.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define IMDBFAST_CUDA_CHECK(call)                                                            \
    do {                                                                                     \
        const cudaError_t err_ = (call);                                                     \
        if (err_ != cudaSuccess)                                                             \
            throw std::runtime_error(std::string("CUDA error in ") + #call + ": " +          \
                                     cudaGetErrorString(err_));                              \
    } while (0)
