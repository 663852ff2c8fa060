// all.cu: the GPU backend's device sources as one translation unit, for nvcc (the _cuda
// module) and, through sim.cpp, for the host compiler (_cuda_sim): CUB's and the kernels'
// headers are parsed once instead of once a file. Nothing here but the list.
#include "csr.cu"
#include "device.cu"
#include "launch.cu"
#include "layers.cu"
#include "loss.cu"
#include "net.cu"
#include "optimizers.cu"
