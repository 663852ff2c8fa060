// sim.cpp: the GPU backend's device sources compiled as plain C++ for the host simulator
// (the _cuda_sim module; see launch.h). Nothing here but the list.
#include "device.cu"
#include "device_kernels.cu"
#include "device_net.cu"
