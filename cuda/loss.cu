// loss.cu: the GPU's fused loss and output gradient (contract in kernels.cuh), one thread per
// row with the per-row math of cpp/common.h; the weight penalties. The CPU's counterpart: cpp/loss.cpp.
#include "kernels.cuh"

namespace imdbfast {
namespace gpu {

void loss_forward_backward(float* dz, double* loss_row, double* correct_row, const float* z,
                           const float* a, const float* y, const float* sw, const int64_t* rows,
                           int64_t first, int last_act, int loss, int64_t O, int64_t B) {
    parallel_for(B, [=] IMDBFAST_HD(int64_t b) {
        const int64_t r = rows ? rows[b] : first + b;
        const float w = sw ? sw[r] : 1.0f;
        if (dz)
            row_loss<true>(dz + b * O, loss_row + b, correct_row + b, z + b * O, a + b * O,
                           y + r * O, w, last_act, loss, O, B);
        else
            row_loss<false>(nullptr, loss_row + b, correct_row + b, z + b * O, a + b * O,
                            y + r * O, w, last_act, loss, O, B);
    });
}

void loss_forward(double* loss_row, double* correct_row, const float* z, const float* a,
                  const float* y, const float* sw, const int64_t* rows, int64_t first,
                  int last_act, int loss, int64_t O, int64_t B) {
    loss_forward_backward(nullptr, loss_row, correct_row, z, a, y, sw, rows, first, last_act, loss,
                          O, B);
}

void penalty_rows(double* out, const float* w, int64_t H, double l1, double l2, int64_t rows) {
    parallel_for(rows, [=] IMDBFAST_HD(int64_t r) { out[r] = penalty_row(w + r * H, H, l1, l2); });
}

void penalty_grad_add(float* g, const float* w, float l1, float two_l2, int64_t n) {
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) { g[i] = penalty_grad(g[i], w[i], l1, two_l2); });
}

void penalty_reduce(double* out, const double* rows, const int64_t* counts, int n_params) {
    parallel_for(1, [=] IMDBFAST_HD(int64_t) { *out = penalty_total(rows, counts, n_params); });
}

}  // namespace gpu
}  // namespace imdbfast
