// loss.cpp: the loss of the output layer fused with its gradient, and binary accuracy, per row.
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
    const double inv_o = 1.0 / static_cast<double>(O);
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = rows ? rows[b] : b;
        const float w = sw ? sw[r] : 1.0f;
        // d(batch loss)/d(output) = w / (O * B) * d(elementwise loss)
        const float scale = kGrad ? w / static_cast<float>(O * B) : 0.0f;
        double l = 0.0, c = 0.0;
        for (int64_t o = 0; o < O; ++o) {
            const int64_t i = b * O + o;
            const float p = a[i], t = y[r * O + o];
            c += binary_correct(p, t);
            switch (loss) {
                case LOSS_BCE_LOGITS:  // the output layer is a sigmoid: gradient straight to z
                    l += bce_logits_loss(z[i], t);
                    if (kGrad) dz[i] = bce_logits_grad(p, t, scale);
                    break;
                case LOSS_BCE_PROBS:
                    l += bce_probs_loss(p, t);
                    if (kGrad) dz[i] = activate_grad(last_act, bce_probs_grad(p, t, scale), z[i], p);
                    break;
                default:
                    l += mse_loss(p, t);
                    if (kGrad) dz[i] = activate_grad(last_act, mse_grad(p, t, scale), z[i], p);
            }
        }
        loss_row[b] = static_cast<double>(w) * (l * inv_o);
        correct_row[b] = c * inv_o;
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

}  // namespace cpu
}  // namespace imdbfast
