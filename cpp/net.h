// net.h: a sequential stack of dense layers whose first layer reads CSR input, with its
// optimizer state, and the compiled training loop, inference and evaluation over it.
//
// Parameters are owned here in Keras's layout (kernel (I, H), then bias (H), layer by layer), so
// the Python layer only validates, converts and orchestrates. A Net is used by one trainer at a
// time (a second is refused); readers (inference, weights, snapshots) share a lock with each
// other and wait for the trainer's current call, which waits for them: none breaks a fit.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "kernels.h"
#include "spec.h"

namespace imdbfast {

struct Stats {
    double loss_sum = 0.0;     // sum over rows of w_i * l_i, in double
    double correct_sum = 0.0;  // sum over rows of binary accuracy
    int64_t rows = 0;

    // Both backends reduce per-row values in these groups and orders, so that their sums agree
    // to the bit when the rows' values do. A batch of n rows, summed in row order; its means
    // go to *mean_loss and *mean_acc when they are not null. `penalty` is the weight penalty
    // at the batch's step: Keras adds it to the batch's mean loss, and weighs the batch's loss
    // by its rows in the epoch's mean, so loss_sum gains n * penalty.
    void add_batch(const double* loss_row, const double* correct_row, int64_t n, double penalty,
                   double* mean_loss, double* mean_acc) {
        double ls = 0.0, cs = 0.0;
        for (int64_t b = 0; b < n; ++b) {
            ls += loss_row[b];
            cs += correct_row[b];
        }
        const double dn = static_cast<double>(n);
        loss_sum += ls + dn * penalty;
        correct_sum += cs;
        rows += n;
        if (mean_loss) *mean_loss = ls / dn + penalty;
        if (mean_acc) *mean_acc = cs / dn;
    }
};

// Rows per inference work item, and evaluate's reduction group (tiles summed in order).
constexpr int64_t kTile = 256;

class Net {
   public:
    explicit Net(NetSpec spec);

    // ---- the interface both backends' Nets have (bind_net.h binds it once) -----------------
    // Readers of the state below hold mutex() shared, writers exclusively; training, predict
    // and evaluate take their locks themselves.
    const NetSpec& spec() const { return spec_; }
    const std::vector<int64_t>& dims() const { return dims_; }
    int n_layers() const { return spec_.n_layers(); }
    int n_params() const { return spec_.n_params(); }
    int64_t param_size(int p) const { return spec_.param_size(p); }
    int n_slots() const { return slots_layout_.count; }
    const cpu::OptimizerSlots& slot_layout() const { return slots_layout_; }
    int64_t iterations() const { return iterations_.load(std::memory_order_relaxed); }
    // The learning rate of the next steps (callbacks and schedules change it between training
    // calls; the lazy rows' catch-up does not depend on it). The caller holds the lock.
    void set_learning_rate(double lr) {
        spec_.optimizer.learning_rate = lr;
        opt_.learning_rate = lr;
    }
    // Sets the step counter, W1's lazy rows brought up to date first.
    void set_iterations(int64_t it);
    void get_param(int p, float* out) const;
    void set_param(int p, const float* in);
    // Optimizer slot s of parameter p as stored (W1's lazy rows may lag: see first_slots_now).
    void get_slot(int p, int s, float* out) const;
    // Copies of W1's slots brought up to date (the lazy rows caught up in the copies only:
    // reading the slots must not change the bits of later steps).
    std::vector<std::vector<float>> first_slots_now() const;
    // Lazy optimizers: W1's row r has its slots current through step synced()[r]. A penalty on
    // W1 gives every row a gradient every step: then W1 is updated densely, never lazily.
    bool lazy() const { return cpu::optimizer_is_lazy(spec_.optimizer) && !spec_.penalized(0); }
    // The weight penalty of the current weights (common.h's order).
    double penalty() const;
    const std::vector<int64_t>& synced() const { return synced_; }
    // The state of one moment (state(): weights, slots as stored, synced or null, iterations),
    // checked by the caller.
    void restore(const std::vector<const float*>& weights,
                 const std::vector<std::vector<const float*>>& slots, const int64_t* synced,
                 int64_t iterations);
    // New slots, counted from now (W1's rows are marked current).
    void replace_slots(const std::vector<std::vector<const float*>>& slots);

    // Trains on batches [batch_begin, batch_end) of the epoch whose row order is `order` (N rows,
    // batches of batch_size, the last one partial). x: CSR (N, D); y (N, O); sw (N) or null.
    // Optional per-batch outputs (batch_end - batch_begin each): mean loss and mean accuracy;
    // optional `out`: the last layer's outputs of each trained row before its step (the rows
    // of the call in epoch order, O each), for the compile metrics.
    Stats train_batches(const CSR& x, const float* y, const float* sw, const int64_t* order,
                        int64_t N, int64_t batch_size, int64_t batch_begin, int64_t batch_end,
                        int threads, double* batch_loss, double* batch_acc, float* out);
    // Outputs of the last layer for rows [r0, r1) of x: out (r1 - r0, O).
    void predict(float* out, const CSR& x, int64_t r0, int64_t r1, int threads) const;
    // Loss and accuracy over rows [r0, r1) of x (no update), reduced in a fixed order.
    Stats evaluate(const CSR& x, const float* y, const float* sw, int64_t r0, int64_t r1,
                   int threads) const;

    std::shared_mutex& mutex() const { return mutex_; }

   private:
    // Batches [batch_begin, batch_end) on a team of nt threads, adding to total. Stops early
    // (contended) when a thread waited for a descheduled partner; steps_done says how far it
    // got. False, with nothing done, when OpenMP gave fewer threads than nt.
    bool train_team(int nt, const CSR& x, const float* y, const float* sw, const int64_t* order,
                    float* out,
                    int64_t N, int64_t batch_size, int64_t batch_begin, int64_t batch_end,
                    int threads, double* batch_loss, double* batch_acc, Stats& total,
                    int64_t* steps_done, bool* contended);
    void forward_rows(std::vector<std::vector<float>>& z, std::vector<std::vector<float>>& a,
                      const CSRView& x, const int64_t* rows, int64_t b0, int64_t b1) const;
    // Rows [b0, b1) of every layer from the first layer's pre-activation z[0] on (the rest of
    // forward_rows; training computes z[0] from its lane partials instead). In training (d not
    // null) a layer with a Dropout also writes its masked output d[l], which the next layer
    // reads: rows are the batch's data rows, `step` the optimizer step (the masks' counters).
    void forward_after_first(std::vector<std::vector<float>>& z,
                             std::vector<std::vector<float>>& a,
                             std::vector<std::vector<float>>* d, const int64_t* rows,
                             int64_t step, int64_t b0, int64_t b1) const;
    // Layer l's dropout at optimizer step `step`.
    DropoutStep dropout(int l, int64_t step) const {
        return dropout_step(spec_.layers[l].dropout_seed, spec_.layers[l].dropout, step);
    }
    bool has_dropout(int l) const { return spec_.layers[l].dropout > 0.0; }
    template <class PerTile>
    void for_each_tile(const CSR& x, int64_t first, int64_t last, int threads,
                       PerTile&& per_tile) const;

    // Rows [r0, r1) of the penalty table (pen_) into out[r - r0].
    void penalty_rows(double* out, int64_t r0, int64_t r1) const;
    float* param(int p) { return params_[p].data(); }
    const float* param(int p) const { return params_[p].data(); }
    float* slot(int p, int s) { return slots_[p][s].data(); }
    // Brings W1's lazy rows up to date in the model (before the slots or the step are set).
    void sync_optimizer();

    NetSpec spec_;
    cpu::OptimizerSlots slots_layout_;
    std::vector<int64_t> dims_;  // spec_.dims()
    std::vector<int> acts_;      // spec_.activations()
    int loss_;
    cpu::OptimizerConfig opt_;
    std::vector<AlignedFloats> params_;                // 2 per layer
    std::vector<std::vector<AlignedFloats>> slots_;    // [param][slot]
    std::vector<AlignedFloats> grads_;                 // gradients; grads_[0] is W1's (kept zero)
    std::vector<int64_t> synced_;                      // W1 rows: slots current through step
    PenaltyTable pen_;  // spec_.penalty_table()
    // Training scratch kept across calls (large; it would be page-faulted in again every
    // chunk): the first layer's lane partials, W1's touched rows and their flags.
    AlignedFloats lane_sums_;
    std::vector<int32_t> touched_;
    std::vector<uint8_t> touched_flag_;
    // The lane plan of the data last trained on, for its batch size (trainer's state: only a
    // thread holding trainer_mutex_ touches it).
    std::shared_ptr<const cpu::LanePlan> plan_;
    // Atomic: Python may read it (progress, Ctrl-C) while a trainer runs without the lock.
    std::atomic<int64_t> iterations_{0};
    mutable std::shared_mutex mutex_;
    std::mutex trainer_mutex_;
};

}  // namespace imdbfast
