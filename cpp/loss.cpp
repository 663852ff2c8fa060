// loss.cpp: the loss of the output layer fused with its gradient, and binary accuracy, per row;
// the weight penalties' rows and gradients.
// The scalar formulas are in common.h; this file only applies them over rows and outputs.
// Per-row results go to arrays (not a running sum) so that the caller reduces them in a fixed
// order, whatever the thread count.
#include "kernels.h"

namespace imdbfast {
namespace cpu {

namespace {

template <bool kGrad>
void loss_rows(float* dz, double* loss_row, double* correct_row, const float* z, const float* a,
               const float* y, const float* sw, const int64_t* rows, int last_act, int loss,
               int64_t O, int64_t B, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = rows ? rows[b] : b;
        row_loss<kGrad>(kGrad ? dz + b * O : nullptr, loss_row + b, correct_row + b, z + b * O,
                        a + b * O, y + r * O, sw ? sw[r] : 1.0f, last_act, loss, O, B);
    }
}

}  // namespace

void loss_forward_backward(float* dz, double* loss_row, double* correct_row, const float* z,
                           const float* a, const float* y, const float* sw, const int64_t* rows,
                           int last_act, int loss, int64_t O, int64_t B, int64_t b0,
                           int64_t b1) {
    loss_rows<true>(dz, loss_row, correct_row, z, a, y, sw, rows, last_act, loss, O, B, b0, b1);
}

void loss_forward(double* loss_row, double* correct_row, const float* z, const float* a,
                  const float* y, const float* sw, const int64_t* rows, int last_act, int loss,
                  int64_t O, int64_t b0, int64_t b1) {
    loss_rows<false>(nullptr, loss_row, correct_row, z, a, y, sw, rows, last_act, loss, O, 1, b0,
                     b1);
}

void penalty_rows(double* out, const float* w, int64_t H, double l1, double l2, int64_t r0,
                  int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) out[r - r0] = penalty_row(w + r * H, H, l1, l2);
}

void penalty_grad_add(float* g, const float* w, float l1, float two_l2, int64_t n0, int64_t n1) {
    IMDBFAST_ROW_SIMD
    for (int64_t i = n0; i < n1; ++i) g[i] = penalty_grad(g[i], w[i], l1, two_l2);
}

}  // namespace cpu
}  // namespace imdbfast
