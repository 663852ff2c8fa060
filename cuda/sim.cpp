// sim.cpp: the GPU backend's device sources compiled as plain C++ for the host simulator
// (the _cuda_sim module; see launch.h).
#include "all.cu"
