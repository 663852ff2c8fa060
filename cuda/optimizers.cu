// optimizers.cu: the GPU's optimizer step (contract in kernels.cuh). Each kernel is one parallel_for
// over the output elements with the element's math from cpp/common.h, so every output element
// is computed by one thread in the CPU's summation order: no floating-point atomics, and the
// results are the same run to run. The CPU's counterpart: cpp/optimizers.cpp.
#include "kernels.cuh"

namespace imdbfast {
namespace gpu {

void optimizer_update(const cpu::OptimizerConfig& c, int64_t iteration, float* w, float* g,
                    float* const* slots, int64_t n) {
    const cpu::OptimizerSlots k = cpu::optimizer_slots(c);
    float* v = cpu::slot_of(slots, k.velocity);
    float* m = cpu::slot_of(slots, k.momentum);
    if (c.kind == cpu::OPT_RMSPROP) {
        const RMSpropStep st = cpu::rmsprop_step(c);
        float* mg = cpu::slot_of(slots, k.average_gradient);
        parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
            float d1 = 0.0f, d2 = 0.0f;
            rmsprop_elem(w[i], g[i], v[i], m ? m[i] : d1, mg ? mg[i] : d2, st);
            g[i] = 0.0f;
        });
    } else if (c.kind == cpu::OPT_ADAM) {
        const AdamStep st = cpu::adam_step(c, iteration);
        float* vh = cpu::slot_of(slots, k.velocity_hat);
        parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
            float d = 0.0f;
            adam_elem(w[i], g[i], m[i], v[i], vh ? vh[i] : d, st);
            g[i] = 0.0f;
        });
    } else {
        const SGDStep st = cpu::sgd_step(c);
        parallel_for(n, [=] IMDBFAST_HD(int64_t i) {
            float d = 0.0f;
            sgd_elem(w[i], g[i], m ? m[i] : d, st);
            g[i] = 0.0f;
        });
    }
}

}  // namespace gpu
}  // namespace imdbfast
