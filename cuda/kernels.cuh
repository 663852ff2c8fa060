// kernels.cuh: the contract of imdbfast's GPU kernels, the counterparts of cpp/kernels.h: the
// same names, argument order (outputs, inputs, parameters, sizes) and files (cuda/layers.cu,
// loss.cu, optimizers.cu, csr.cu as cpp/layers.cpp, loss.cpp, optimizers.cpp, csr.cpp). A GPU
// kernel covers a whole batch, so it takes no row range [b0, b1); where it fuses a step the CPU
// runs apart (an activation's derivative), it says so. Pointers are device pointers; sizes as
// in cpp/kernels.h (N rows, B batch rows, D inputs, I -> H units, O outputs). Each function
// launches on imdbfast's stream (launch.h) and returns without waiting, unless it says it reads a
// result back. Element math and summation orders come from cpp/common.h, shared with the CPU.
#pragma once

#include <atomic>

#include <cstdint>
#include <vector>

#include "kernels.h"  // cpu::OptimizerConfig and the host step constants
#include "launch.h"

namespace imdbfast {
namespace gpu {

// An owning device CSR matrix, e.g. a data set uploaded once per fit. `uid` identifies its
// contents for caches (a new matrix never reuses one).
struct DeviceCSR {
    int device = 0;
    int64_t n_rows = 0, n_cols = 0, nnz = 0;
    bool binary = true;
    Buffer<int64_t> indptr;
    Buffer<int32_t> indices;
    Buffer<float> values;
    uint64_t uid = 0;
    // cpp/kernels.h's view type, of device memory (no narrow copy of the indices).
    CSRView view() const {
        return CSRView{n_rows, n_cols, indptr.data(), indices.data(),
                       binary ? nullptr : values.data(), nullptr};
    }
};
uint64_t next_uid();

// ---- layers.cu (one batch; the data row of batch row b is rows[b], or first + b if rows is null)
// z, a (B, H): z = gather-sum of W's rows + bias, a = act(z).
void sparse_forward(float* z, float* a, int act, const CSRView& x, const int64_t* rows,
                    int64_t first, const float* W, const float* bias, int64_t H, int64_t B);
// z, a (B, H) from x (B, I): z = x @ W + bias, a = act(z).
void dense_forward(float* z, float* a, int act, const float* x, const float* W, const float* bias,
                   int64_t I, int64_t H, int64_t B);
// Elementwise over n: a = act(z); dz = act'(z, a) * da (the layers above fuse these).
void act_forward(float* a, const float* z, int act, int64_t n);
void act_backward(float* dz, const float* da, const float* z, const float* a, int act, int64_t n);
// a (B, H) = softmax of z's rows (the output layer's; the fused forwards above pass it through).
void softmax_forward(float* a, const float* z, int64_t H, int64_t B);
// Dropout in training (common.h), batch row b = data row rows[b] (or first + b): d = a /
// keep_prob where kept, else 0; the backward masks g in place.  d, a, g (B, H); d may be a.
void dropout_forward(float* d, const float* a, const int64_t* rows, int64_t first,
                     const DropoutStep& s, int64_t H, int64_t B);
void dropout_backward(float* g, const int64_t* rows, int64_t first, const DropoutStep& s,
                      int64_t H, int64_t B);
// dz_prev (B, I) = act_prev'(z_prev, a_prev) * (dz @ W^T), the previous layer's activation
// derivative fused in (the CPU runs it as act_backward); dz (B, H), W (I, H).
void dense_backward_input(float* dz_prev, const float* dz, const float* W, const float* z_prev,
                          const float* a_prev, int act_prev, int64_t I, int64_t H, int64_t B);
// dW (I, H) = x^T dz over the B rows, in the CPU's fixed order.
void dense_backward_weight(float* dW, const float* dz, const float* x, int64_t B, int64_t I,
                           int64_t H);
// db (H) = sum over the B rows of dz, in the same order.
void bias_backward(float* db, const float* dz, int64_t B, int64_t H);
// Every gradient but W1's in one launch: elements [offsets[1], offsets[2L]) of the flat G,
// where parameter p = 2l is layer l's kernel (l >= 1: x = a[l-1]) and 2l + 1 its bias, each
// element computed as dense_backward_weight computes it. offsets (2L + 1), dims (L + 1), dz and a (L
// pointers, each (B, H_l)): device arrays.
void small_grads(float* G, const int64_t* offsets, const int64_t* dims, float* const* dz,
                 float* const* a, int L, int64_t first, int64_t last, int64_t B);

// The layers after the sparse one, for small_layers_step: each layer's activations and
// gradient (B, H_l), weights and activation; L <= kMax layers in all (the sparse one included).
struct SmallLayers {
    static constexpr int kMax = 8;
    int L = 0;
    int64_t dims[kMax + 1] = {};
    int acts[kMax] = {};
    float* z[kMax] = {};
    float* a[kMax] = {};
    float* dz[kMax] = {};
    const float* W[kMax] = {};
    const float* bias[kMax] = {};
};
// One thread per batch row, the whole small network: dense layers 1 .. L-1 forward, the fused
// loss (loss_forward_backward's row), and the input gradients back to dz[0], each element by
// the same formula (and so the same bits) as dense_forward, softmax_forward,
// loss_forward_backward and dense_backward_input launched one after another. For networks
// without Dropout whose small layers are small (DeviceNet decides): one launch, not 2L.
void small_layers_step(const SmallLayers& s, double* loss_row, double* correct_row,
                       const float* y, const float* sw, const int64_t* rows, int loss, int64_t B);
// Whether training fuses the small layers where it can (default on; tests and device
// benchmarks compare both ways).
std::atomic<bool>& fuse_small_layers();
// Whether training captures each call's steps as a CUDA graph and launches it as one (default
// off until measured on a device; the simulator launches directly either way). net.cu.
std::atomic<bool>& cuda_graphs();

// ---- layers.cu: the sparse first layer's gradient, deterministic without atomics ----------
// Once per epoch, every non-zero of the epoch is keyed by (batch, column) and stably sorted, so
// that each (batch, column) pair is a contiguous group in batch-row order; a batch's W1
// gradient is then one sum per (group, unit), written to the touched rows of G.
struct EpochIndex {
    int64_t N = 0, B = 0, n_batches = 0, nnz = 0, n_groups = 0;
    bool has_values = false;
    Buffer<int64_t> eptr;                // (N + 1) first epoch non-zero of each epoch position
    Buffer<uint64_t> keys, sorted_keys;  // (nnz) batch * D + column
    Buffer<int32_t> ids, sorted_ids;     // (nnz) epoch non-zero index
    Buffer<int32_t> pos;                 // (nnz) epoch position of each epoch non-zero
    Buffer<float> vals;                  // (nnz) its value (non-binary input only)
    Buffer<int64_t> heads;               // (nnz + 1) group starts flags, then their prefix sum
    Buffer<int64_t> group_start;         // (n_groups + 1) first sorted entry of each group
    Buffer<int64_t> batch_group;         // (n_batches + 1) first group of each batch
    std::vector<int64_t> host_batch_group;
};
// Builds the index for the epoch that visits x's rows in `order` (device, N) in batches of B.
// Reads the group boundaries back (one small copy per epoch).
void build_epoch_index(EpochIndex& ix, Scratch& s, const CSRView& x, const int64_t* order,
                       int64_t N, int64_t B);
// G (D, H): rows of the columns batch `batch` touches get their gradient sum over the batch's
// rows (dz1 (B, H), batch row = epoch position - batch * B); other rows are left as they are.
// The CPU's counterpart is sparse_backward_scatter (a scatter-add per lane, batch rows
// ascending, one chain); here each element is four partials over the same terms (common.h's
// group_part), equal to rounding.
void sparse_backward_weight(float* G, const EpochIndex& ix, int64_t batch, const float* dz1,
                        int64_t D, int64_t H);

// ---- loss.cu ---------------------------------------------------------------------------------
// Per-row loss and accuracy (B each, double) and d(batch loss)/dz (B, O), as cpp/kernels.h's;
// loss_forward is the same without the gradient (evaluate).
void loss_forward_backward(float* dz, double* loss_row, double* correct_row, const float* z,
                           const float* a, const float* y, const float* sw, const int64_t* rows,
                           int64_t first, int last_act, int loss, int64_t O, int64_t B);
void loss_forward(double* loss_row, double* correct_row, const float* z, const float* a,
                  const float* y, const float* sw, const int64_t* rows, int64_t first,
                  int last_act, int loss, int64_t O, int64_t B);

// ---- loss.cu: weight penalties, as cpp/kernels.h's ----------------------------------------
// out[r] = the penalty of row r of w (rows of H), r in [0, rows).
void penalty_rows(double* out, const float* w, int64_t H, double l1, double l2, int64_t rows);
// g[i] = penalty_grad(g[i], w[i], l1, two_l2), i in [0, n).
void penalty_grad_add(float* g, const float* w, float l1, float two_l2, int64_t n);
// *out = common.h's penalty_total of the table `rows` (counts: n_params rows each), on one
// thread: the CPU's order.
void penalty_reduce(double* out, const double* rows, const int64_t* counts, int n_params);

// ---- optimizers.cu: one dense step over n elements, then the gradient is zeroed -----------
// slots: optimizer_num_slots(c) device arrays of n, in Keras's order (cpp/kernels.h).
void optimizer_update(const cpu::OptimizerConfig& c, int64_t iteration, float* w, float* g,
                    float* const* slots, int64_t n);

// ---- csr.cu: building CSR matrices on the device -------------------------------------------
// Index of the first element of [0, n) failing a check, or -1 (reads one value back).
int64_t first_nonfinite(const float* v, int64_t n);
// Multi-hot rows of ragged tokens (device: tokens (n_tokens), offsets (N + 1), validated by the
// caller except for the token range): sorted unique columns per row. Throws on a token outside
// [0, D), naming its position.
void multi_hot(DeviceCSR& out, Scratch& s, const int32_t* tokens, const int64_t* offsets,
               int64_t N, int64_t n_tokens, int64_t D);
// Non-zeros of a dense (N, D) row-major matrix (float32 or float64); values kept unless all 1.
// Throws on a non-finite element, naming its flat index.
template <typename T>
void csr_from_dense(DeviceCSR& out, Scratch& s, const T* x, int64_t N, int64_t D);
// Rows `rows` (device, n) of x as a new matrix.
void csr_take_rows(DeviceCSR& out, Scratch& s, const DeviceCSR& x, const int64_t* rows, int64_t n);

}  // namespace gpu
}  // namespace imdbfast
