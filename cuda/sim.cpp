// sim.cpp: the GPU backend's device sources compiled as plain C++ for the host simulator
// (the _cuda_sim module; see launch.h). Nothing here but the list.
#include "csr.cu"
#include "device.cu"
#include "launch.cu"
#include "layers.cu"
#include "loss.cu"
#include "net.cu"
#include "optimizers.cu"
