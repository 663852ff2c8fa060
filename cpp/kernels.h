// kernels.h: the contract of imdbfast's CPU kernels. One declaration per kernel, shapes first.
//
// Sizes, everywhere: N rows of a data set, B rows of a batch, D input features (the vocabulary,
// 10,000 in the book), I inputs and H outputs ("units") of a dense layer, O model outputs.
// Layout: row-major; a kernel W is (I, H) and a bias (H), as Keras stores them, so the sparse
// first layer gathers contiguous rows of W1.
// Argument order (llm.c's): outputs first, then inputs, then parameters, then sizes and ranges.
// Row-range kernels ([b0, b1)) do no threading of their own: the caller gives each thread a
// disjoint range, so every output element is computed by one thread in one fixed order and the
// result does not depend on the thread count. Whole-array kernels thread themselves.
// Validation happens in the callers (bindings.cpp, Net); kernels trust their arguments.
#pragma once

#include <cstdint>
#include <memory>
#include <atomic>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common.h"
#include "parallel.h"  // threads: how many, and how regions run
#include "spec.h"

// A loop over the H (or I) elements of one row, to be vectorised across that row. GCC 12 otherwise
// vectorises some of these across rows or along the reduction (scalar adds in strict order) and
// stores row results one lane at a time. Elementwise only: the pragma never reorders a sum.
#define IMDBFAST_ROW_SIMD _Pragma("omp simd")

// Row kernels are instantiated for the common layer widths, so that a row of 16 floats is one
// or two vector registers; any other width takes the generic (HC = 0) instantiation.
#define IMDBFAST_DISPATCH_H(H, CALL) \
    switch (H) {                     \
        case 1: CALL(1); break;      \
        case 16: CALL(16); break;    \
        case 32: CALL(32); break;    \
        case 64: CALL(64); break;    \
        default: CALL(0); break;     \
    }

namespace imdbfast {

// Parameter rows are read and written at random; a 16-float row must sit in one 64-byte cache
// line, not straddle two, so parameter-sized buffers are cache-line aligned.
template <typename T>
struct CacheAligned {
    using value_type = T;
    CacheAligned() = default;
    template <typename U>
    CacheAligned(const CacheAligned<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
    template <typename U>
    bool operator==(const CacheAligned<U>&) const { return true; }
    template <typename U>
    bool operator!=(const CacheAligned<U>&) const { return false; }
};
using AlignedFloats = std::vector<float, CacheAligned<float>>;

// A read-only view of a CSR matrix: row r holds columns indices[indptr[r] .. indptr[r+1]),
// sorted and unique; values == nullptr means every stored value is 1 (multi-hot). narrow, when
// set, holds the same column indices as uint16 (n_cols <= 65536; CSR::narrow_view): the
// training loop reads each row's list at a random place several times an epoch, and half the
// bytes are fetched faster. Kernels that read indices use narrow when it is there.
struct CSRView {
    int64_t n_rows = 0, n_cols = 0;
    const int64_t* indptr = nullptr;   // (n_rows + 1)
    const int32_t* indices = nullptr;  // (nnz)
    const float* values = nullptr;     // (nnz) or nullptr
    const uint16_t* narrow = nullptr;  // (nnz) or nullptr
};

// A number no other CSR made in this process has: what a trainer keys its lane plan by.
inline uint64_t next_csr_uid() {
    static std::atomic<uint64_t> n{0};
    return ++n;
}

// An owning CSR matrix (what multi-hot encoding produces and training consumes). Its content
// does not change once built; column_prefix and narrow_view are computed from it on first use.
struct CSR {
    uint64_t uid = next_csr_uid();
    int64_t n_rows = 0, n_cols = 0;
    std::vector<int64_t> indptr;
    std::vector<int32_t> indices;
    std::vector<float> values;  // empty: binary
    bool binary = true;

    CSRView view() const {
        return CSRView{n_rows, n_cols, indptr.data(), indices.data(),
                       binary ? nullptr : values.data()};
    }
    int64_t nnz() const { return indptr.empty() ? 0 : indptr.back(); }
    // Prefix sums of per-column non-zero counts (n_cols + 1), computed once and cached:
    // the training loop's lanes (below) are cut from it.
    const std::vector<int64_t>& column_prefix() const;
    // view() plus the uint16 copy of the indices (made once and cached; 2 bytes a non-zero)
    // when n_cols <= 65536.
    CSRView narrow_view() const;
    // What inference reads: view() on the first pass over this matrix, narrow_view() from the
    // second on, so data read again and again (validation data, each epoch) pays the copy once
    // and gathers about 10 % faster, and a one-off predict never pays it.
    CSRView inference_view() const;

   private:
    // shared_ptr keeps CSR movable; the mutex makes the lazy computations safe across threads.
    std::shared_ptr<std::mutex> col_mutex_ = std::make_shared<std::mutex>();
    mutable std::vector<int64_t> col_prefix_;
    mutable std::vector<uint16_t> narrow_;
    mutable bool has_narrow_ = false;
    mutable std::shared_ptr<std::atomic<int>> passes_ = std::make_shared<std::atomic<int>>(0);
};

// A word index (word -> frequency rank), for encoding raw text. Words are raw UTF-8 bytes.
class Vocabulary {
   public:
    Vocabulary(const std::vector<std::string>& words, const std::vector<int64_t>& ranks);
    int64_t rank(std::string_view word) const;  // -1 when absent
    size_t size() const { return map_.size(); }

   private:
    std::string storage_;
    std::unordered_map<std::string_view, int32_t> map_;
};

// Keras's load_data encoding of word ranks (negative = None for start_char / oov_char,
// num_words <= 0 = no limit).
struct TextEncoding {
    int64_t num_words = 0, skip_top = 0, start_char = 1, oov_char = 2, index_from = 3;
};

namespace cpu {

// ---- csr.cpp: multi-hot encoding and conversions --------------------------------------------
// tokens (offsets[N]) int32, offsets (N+1) int64 monotone from 0; every token in [0, D).
// Row r of the result holds the sorted unique tokens of sequence r (duplicates set one 1).
CSR multi_hot(const int32_t* tokens, const int64_t* offsets, int64_t N, int64_t D, int threads);
// out (N, D) float32, fully written: 1 where a token occurs, else 0 (the book's matrix).
void multi_hot_dense(float* out, const int32_t* tokens, const int64_t* offsets, int64_t N,
                     int64_t D, int threads);
// x (N, D) row-major float32 or float64, finite. Keeps non-zero values; all-ones -> binary.
template <typename T>
CSR csr_from_dense(const T* x, int64_t N, int64_t D, int threads);
// Arbitrary CSR arrays (validated by the caller): sorts each row and merges duplicate columns
// (summing values, as scipy does; a binary matrix keeps a single 1).
CSR csr_from_arrays(const int64_t* indptr, const int32_t* indices, const float* values,
                    int64_t N, int64_t D, int threads);
// out (N, D) float32, fully written.
void csr_to_dense(float* out, const CSRView& x, int threads);
// Rows [r0, r1) or an arbitrary row list as a new matrix.
CSR csr_take_rows(const CSRView& x, const int64_t* rows, int64_t n, int threads);
// Ragged token rows (CSR layout, values ignored): out row i = [prefix] + (row rows[i] + add),
// the prefix only when prefix >= 0 (Keras's load_data: start_char, then ids + index_from).
// The caller checks that every shifted id fits int32.
CSR ragged_take(const CSRView& x, const int64_t* rows, int64_t n, int64_t prefix, int64_t add,
                int threads);

// ---- text.cpp: raw text -> word ids -------------------------------------------------------
// texts[i] (lengths[i] UTF-8 bytes) -> ragged ids (tokens, offsets (N + 1)): see text.cpp.
void texts_to_sequences(std::vector<int32_t>& tokens, std::vector<int64_t>& offsets,
                        const char* const* texts, const int64_t* lengths, int64_t N,
                        const Vocabulary& vocab, const TextEncoding& e, int threads);

// ---- layers.cpp: dense layers and activations, row-range kernels ---------------------------
// Sparse first layer, batch rows [b0, b1): z[b, :] = sum_k val_k * W[col_k, :] + bias over the
// non-zeros of data row rows[b] (rows == nullptr: data row b).   z (B, H), W (D, H), bias (H).
void sparse_forward(float* z, const CSRView& x, const int64_t* rows, const float* W,
                    const float* bias, int64_t H, int64_t b0, int64_t b1);
// Dense layer, rows [b0, b1): z[b, :] = x[b, :] @ W + bias.   z (B, H), x (B, I), W (I, H).
void dense_forward(float* z, const float* x, const float* W, const float* bias, int64_t I,
                   int64_t H, int64_t b0, int64_t b1);
// Elementwise over [n0, n1): a = act(z);  dz = act'(z, a) * da.
void act_forward(float* a, const float* z, int act, int64_t n0, int64_t n1);
void act_backward(float* dz, const float* da, const float* z, const float* a, int act,
                  int64_t n0, int64_t n1);
// Softmax of rows [b0, b1) (common.h's softmax_row).   a, z (B, H).
void softmax_forward(float* a, const float* z, int64_t H, int64_t b0, int64_t b1);
// Dropout in training (common.h), rows [b0, b1) of a batch whose batch row b is data row rows[b]
// (rows == nullptr: b): d = a / keep_prob where kept, else 0.  d, a (B, H); d may be a.
void dropout_forward(float* d, const float* a, const int64_t* rows, const DropoutStep& s,
                     int64_t H, int64_t b0, int64_t b1);
// Its gradient, in place: g = g / keep_prob where kept, else 0 (the forward's mask).  g (B, H).
void dropout_backward(float* g, const int64_t* rows, const DropoutStep& s, int64_t H, int64_t b0,
                      int64_t b1);
// Input gradient, rows [b0, b1): dx[b, :] = W @ dz[b, :].   dx (B, I), dz (B, H), W (I, H).
void dense_backward_input(float* dx, const float* dz, const float* W, int64_t I, int64_t H,
                          int64_t b0, int64_t b1);
// Weight gradient rows [i0, i1): dW[i, :] = sum_b x[b, i] * dz[b, :], in a fixed order (four
// interleaved partial sums over b).   dW (I, H), dz (B, H), x (B, I).
void dense_backward_weight(float* dW, const float* dz, const float* x, int64_t B, int64_t I,
                           int64_t H, int64_t i0, int64_t i1);
// Bias gradient: db[h] = sum_b dz[b, h], in the same fixed order.   db (H), dz (B, H).
void bias_backward(float* db, const float* dz, int64_t B, int64_t H);

// ---- the sparse first layer in training: column lanes (layers.cpp) ---------------------------
// Training splits the columns of x (the rows of W1) into kLanes ranges, "lanes", of about equal
// work (lane_plan), and gives each thread whole lanes: only that thread reads its rows of W1
// (forward), writes them (gradient, update), so they stay in its core's cache. The first layer's
// pre-activation is therefore summed lane by lane: z = ((P0 + P1) + (P2 + P3)) + bias, lane k's
// partial P_k gathering the row's non-zeros in lane k as sparse_forward gathers a whole row.
// The lanes are fixed by the data and the batch size, never by the thread count.
constexpr int kLanes = 4;

// The training schedule of x for batches of B rows, owned by the trainer: the lane bounds
// (kLanes + 1 columns, cut from x's column counts) and each row's lane offsets pos
// (n_rows, kLanes + 1).
struct LanePlan {
    uint64_t csr_uid = 0;
    int64_t batch_size = 0;
    std::vector<int64_t> bounds;
    std::vector<int32_t> pos;
};
LanePlan lane_plan(const CSR& x, int64_t batch_size, int threads);
// pos (N, K + 1): pos[r, k] = the number of row r's columns below bounds[k] (bounds (K + 1),
// ascending, bounds[0] = 0, bounds[K] = D): lane k of row r is its non-zeros
// indptr[r] + [pos[r, k], pos[r, k + 1]).
void lane_offsets(int32_t* pos, const CSRView& x, const int64_t* bounds, int K, int threads);
// P (K, B, H), lanes [k0, k1) written: P[k, b, :] = sum over lane k of row rows[b] of
// val * W[col, :] (no bias). With pairs (k0 and k1 even), P[k] holds lane k's partial plus
// lane k + 1's instead (the first add of lanes_sum, done by the thread that owns both: half the
// rows to write and to read back) and P[k + 1] is not written.
void sparse_forward_lanes(float* P, const CSRView& x, const int32_t* pos, int K,
                          const int64_t* rows, int64_t B, const float* W, int64_t H, int k0,
                          int k1, bool pairs);
// Cache prefetches for the lane kernels' next batch, rows[0 .. B): stage 0 its rows' offsets
// (pos, indptr), stage 1 (some time later, once those have arrived) lanes [k0, k1) of its rows'
// column lists.
void prefetch_lane_rows(const CSRView& x, const int32_t* pos, int K, const int64_t* rows,
                        int64_t B, int k0, int k1, int stage);
// Rows [b0, b1) of z (B, H) from the kLanes partials P (kLanes, B, H) and the bias; pairs:
// P holds pair sums (sparse_forward_lanes), the same floats.
void lanes_sum(float* z, const float* P, const float* bias, int64_t H, int64_t B, int64_t b0,
               int64_t b1, bool pairs);
// The first layer's weight gradient for the columns of lanes [k0, k1), added into G (D, H):
// G[c, :] += val * dz[b, :] for each non-zero (b, c), batch rows b ascending, so each row of G
// is one add chain in a fixed order whatever the lanes or threads; flag[c] is
// set to 1 for every column met.  dz (B, H).
void sparse_backward_scatter(float* G, uint8_t* flag, const CSRView& x, const int32_t* pos,
                             int K, const int64_t* rows, int64_t B, const float* dz, int64_t H,
                             int k0, int k1);
// The flagged columns of [c0, c1), ascending, into touched (c1 - c0 + 1 slots: one past the
// last may be written); their flags cleared. Returns how many.
int64_t collect_flagged(int32_t* touched, uint8_t* flag, int64_t c0, int64_t c1);

// ---- loss.cpp: loss + gradient of the output layer, fused -----------------------------------
// Rows [b0, b1) of a batch of B rows; data row of batch row b is rows[b] (nullptr: b).
// z, a (B, O): the last layer's pre-activation and output; y (N, O) labels; sw (N) sample
// weights or nullptr. Writes dz (B, O) = d(batch loss)/dz, loss_row[b] = w_b * l_b (the
// per-sample loss, mean over O) and correct_row[b] = binary accuracy of row b (mean over O).
void loss_forward_backward(float* dz, double* loss_row, double* correct_row, const float* z,
                           const float* a, const float* y, const float* sw, const int64_t* rows,
                           int last_act, int loss, int64_t O, int64_t B, int64_t b0,
                           int64_t b1);
// The same without gradients (evaluate): loss_row and correct_row only.
void loss_forward(double* loss_row, double* correct_row, const float* z, const float* a,
                  const float* y, const float* sw, const int64_t* rows, int last_act, int loss,
                  int64_t O, int64_t b0, int64_t b1);

// ---- loss.cpp: weight penalties (common.h: penalty_row, penalty_grad) ----------------------
// out[r - r0] = the penalty of row r of a parameter w of rows of H, for rows [r0, r1).
void penalty_rows(double* out, const float* w, int64_t H, double l1, double l2, int64_t r0,
                  int64_t r1);
// Elements [n0, n1): g[i] = penalty_grad(g[i], w[i], l1, two_l2) (the data gradient plus the
// penalty's).
void penalty_grad_add(float* g, const float* w, float l1, float two_l2, int64_t n0, int64_t n1);

// ---- metrics.cpp: Keras's compile metrics, as sums over rows ----------------------------------
// A metric's state is a few doubles (sums and counts; AUC: per-bucket positives and negatives)
// that metric_update adds rows to and metric_result turns into Keras's value. Keras's
// definitions: binary accuracy (p > threshold equals y), mean squared / absolute error and
// binary cross-entropy (clipped probabilities) per sample averaged over outputs, then over
// samples; precision and recall at a threshold (p > t; a label counts as positive when != 0);
// ROC AUC from num_thresholds evenly spaced thresholds, bucketed as Keras's optimized path does,
// trapezoidal; categorical accuracy (argmax equality), top-k categorical accuracy (k passed as
// num_thresholds) and categorical cross-entropy of normalized, clipped probabilities per row.
// Weights (optional) multiply each row's contribution.
enum MetricKind : int {
    METRIC_BINARY_ACCURACY = 0, METRIC_MSE = 1, METRIC_MAE = 2, METRIC_BCE = 3,
    METRIC_AUC = 4, METRIC_PRECISION = 5, METRIC_RECALL = 6, METRIC_CATEGORICAL_ACCURACY = 7,
    METRIC_TOP_K = 8, METRIC_CCE = 9,
};
int64_t metric_state_size(int kind, int64_t num_thresholds);
// Rows i in [0, n): outputs out[i * O ...], labels y[r * O ...] and weight sw[r] of data row
// r = rows ? rows[i] : i.
void metric_update(int kind, double* state, const float* out, const float* y, const float* sw,
                   const int64_t* rows, int64_t n, int64_t O, float threshold,
                   int64_t num_thresholds);
double metric_result(int kind, const double* state, int64_t num_thresholds);

// ---- optimizers.cpp -------------------------------------------------------------------------
// The step constants of one update, in float32 as Keras computes them (shared with the GPU).
RMSpropStep rmsprop_step(const OptimizerConfig& c);
AdamStep adam_step(const OptimizerConfig& c, int64_t iteration);  // iteration: 0-based
SGDStep sgd_step(const OptimizerConfig& c);

// How many state slots each parameter has (spec.h: optimizer_slots names them).
inline int optimizer_num_slots(const OptimizerConfig& c) { return optimizer_slots(c).count; }
// True when a zero gradient leaves the weight unchanged and only decays the slots
// geometrically, so untouched rows may be brought up to date lazily (RMSprop without momentum,
// SGD without momentum).
bool optimizer_is_lazy(const OptimizerConfig& c);

// Dense update of elements [n0, n1) at optimizer step `iteration` (0-based; Keras's
// `iterations` before the step). slots: optimizer_num_slots pointers, each like w.
void optimizer_update(const OptimizerConfig& c, int64_t iteration, float* w, const float* g,
                      float* const* slots, int64_t n0, int64_t n1);
// Lazy sparse update of rows of a (D, H) parameter: for each i, row r = touched[i] (unique)
// first has its slots decayed for the steps it missed (synced[r] .. iteration-1, all with zero
// gradient), then takes the step with gradient row G[r, :], read in place from G (D, H) and
// set back to zero (the training loop's G stays zero between steps); synced[r] becomes
// iteration + 1. Only for optimizer_is_lazy configurations.
void optimizer_update_touched(const OptimizerConfig& c, int64_t iteration, float* W, float* G,
                              float* const* slots, int64_t H, const int32_t* touched,
                              int64_t n_rows, int64_t* synced);
// Bring rows [r0, r1) up to date through `iterations` steps (no gradient): slots decay only.
void optimizer_catch_up(const OptimizerConfig& c, int64_t iterations, float* const* slots,
                        int64_t H, int64_t* synced, int64_t r0, int64_t r1);
// ---- net.cpp: seeded shuffles ---------------------------------------------------------------
// A permutation of [0, n) determined by (seed, epoch) alone: Fisher-Yates driven by SplitMix64.
void shuffle_order(int64_t* order, int64_t n, uint64_t seed, int64_t epoch);

}  // namespace cpu
}  // namespace imdbfast
