// net.cuh: the GPU counterpart of cpp/net.h: the same network, optimizer and training
// loop, with parameters, optimizer state and data resident on one device.
//
// An epoch is a fixed sequence of kernels per batch (kernels.cuh): sparse forward, dense
// layers, fused loss, backward (the three as one small_layers_step where the network is small
// and has no Dropout), the small layers' gradients, the sparse layer's gradient from the epoch
// index, and one optimizer kernel over every parameter. Nothing is copied between host
// and device per batch: the shuffled order goes up once per epoch, the per-row losses come back
// once per call. The optimizer step is dense (every row of W1, as Keras): on a GPU, 160,000
// elements are one cheap kernel, and the lazy row bookkeeping of the CPU path is not needed.
// Methods take the object's lock: one caller at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels.cuh"
#include "net.h"  // Stats, kTile
#include "spec.h"

namespace imdbfast {
namespace gpu {

// A float32 array on the device, owned or borrowed from another library (cupy, torch, ...):
// `keep` holds the borrowed memory's owner alive.
struct DeviceArray {
    int device = 0;
    int64_t size = 0;
    Buffer<float> own;
    const float* ptr = nullptr;
    std::shared_ptr<void> keep;
};

// A std::mutex that shared readers take exclusively: the device's scratch buffers serve one
// caller at a time. (bind_net.h locks both backends' Nets the same way.)
struct ExclusiveMutex : std::mutex {
    void lock_shared() { lock(); }
    void unlock_shared() { unlock(); }
};

class DeviceNet {
   public:
    DeviceNet(int device, NetSpec spec);
    ~DeviceNet();
    DeviceNet(const DeviceNet&) = delete;
    DeviceNet& operator=(const DeviceNet&) = delete;

    int device() const { return device_; }

    // ---- the interface of cpp/net.h's Net (bind_net.h binds both) --------------------------
    const NetSpec& spec() const { return spec_; }
    const std::vector<int64_t>& dims() const { return dims_; }
    int n_layers() const { return spec_.n_layers(); }
    int n_params() const { return spec_.n_params(); }
    int64_t param_size(int p) const { return offset_[p + 1] - offset_[p]; }
    int n_slots() const { return slots_layout_.count; }
    const cpu::OptimizerSlots& slot_layout() const { return slots_layout_; }
    int64_t iterations() const { return iterations_.load(std::memory_order_relaxed); }
    // The learning rate of the next steps (callbacks and schedules change it between training
    // calls; the lazy rows' catch-up does not depend on it). The caller holds the lock.
    void set_learning_rate(double lr) {
        spec_.optimizer.learning_rate = lr;
        opt_.learning_rate = lr;
    }
    void set_iterations(int64_t it) { iterations_ = it; }
    void get_param(int p, float* out) const;
    void set_param(int p, const float* in);
    void get_slot(int p, int s, float* out) const;
    // The device updates every row every step: its slots are always current, nothing lags.
    std::vector<std::vector<float>> first_slots_now() const;
    bool lazy() const { return false; }
    // The weight penalty of the current weights (common.h's order; one value read back). The
    // caller holds the lock.
    double penalty();
    const std::vector<int64_t>& synced() const { return no_rows_; }
    // A state from state() (either backend's: a CPU state's lagging rows are caught up here).
    void restore(const std::vector<const float*>& weights,
                 const std::vector<std::vector<const float*>>& slots, const int64_t* synced,
                 int64_t iterations);
    void replace_slots(const std::vector<std::vector<const float*>>& slots);

    // Batches [batch_begin, batch_end) of the epoch visiting x's N rows in `order` (host, N).
    // y (N, O) and sw (N) or null are device pointers; threads is ignored. As cpp/net.h, one
    // trainer at a time (another is refused), readers wait for the call.
    Stats train_batches(const DeviceCSR& x, const float* y, const float* sw, const int64_t* order,
                        int64_t N, int64_t batch_size, int64_t batch_begin, int64_t batch_end,
                        int threads, double* batch_loss, double* batch_acc, float* out);
    // Outputs for rows [first, last) into host memory out ((last - first, O)).
    void predict(float* out, const DeviceCSR& x, int64_t first, int64_t last, int threads);
    // The same into device memory.
    void predict_on_device(float* out, const DeviceCSR& x, int64_t first, int64_t last);
    // Loss and accuracy sums over rows [first, last), reduced in the CPU's order.
    Stats evaluate(const DeviceCSR& x, const float* y, const float* sw, int64_t first,
                   int64_t last, int threads);

    ExclusiveMutex& mutex() const { return mutex_; }

   private:
    float* param(int p) { return params_.data() + offset_[p]; }
    void set_slot(int p, int s, const float* in);
    void predict_rows(float* out, bool out_on_device, const DeviceCSR& x, int64_t first,
                      int64_t last);
    // Activations of `rows` rows through every layer into z_, a_ (grown as needed). In
    // training (step >= 0: the optimizer step) a layer with a Dropout also writes its masked
    // output d_[l], which the next layer reads.
    void forward(const DeviceCSR& x, const int64_t* rows, int64_t first, int64_t n,
                 int64_t step = -1);
    bool has_dropout(int l) const { return spec_.layers[l].dropout > 0.0; }
    DropoutStep dropout(int l, int64_t step) const {
        return dropout_step(spec_.layers[l].dropout_seed, spec_.layers[l].dropout, step);
    }
    void reserve_rows(int64_t n);
    // The small layers for small_layers_step (after reserve_rows), or L = 0 where training
    // runs them layer by layer (Dropout, too many layers or weights, fusion switched off).
    SmallLayers small_layers();
    // enqueue(), which launches a training call's steps: directly, or (cuda_graphs() on, not
    // in the simulator) captured as a CUDA graph and launched as one.
    template <class Enqueue>
    void run_steps(Enqueue&& enqueue);
    void* graph_exec_ = nullptr;      // cudaGraphExec_t of the last captured call, reused
    void* capture_stream_ = nullptr;  // cudaStream_t the calls are captured on
    // The penalty of the current weights into *out (device), as cpp/net.cpp's table.
    void penalty_into(double* out);

    int device_;
    NetSpec spec_;
    cpu::OptimizerSlots slots_layout_;
    std::vector<int64_t> dims_;
    std::vector<int> acts_;
    int loss_;
    cpu::OptimizerConfig opt_;
    std::vector<int64_t> offset_;  // (n_params + 1) of each parameter in the flat buffers
    std::vector<std::pair<int64_t, int64_t>> train_runs_;  // trainable [begin, end) of them
    Buffer<float> params_, grads_;
    std::vector<Buffer<float>> slots_;
    // Atomic: Python may read it (progress, Ctrl-C) while a trainer runs without the lock.
    std::atomic<int64_t> iterations_{0};

    // Per-batch activations and gradients, (rows_ x H_l) per layer.
    int64_t rows_ = 0;
    std::vector<Buffer<float>> z_, a_, dz_, d_;  // d_: after a Dropout (layers with one)
    Buffer<float> da_;                           // an input gradient before its Dropout's mask
    // device copies of the pointers: each layer's training input (d_ or a_), dz_
    Buffer<float*> in_ptrs_, dz_ptrs_;
    Buffer<int64_t> offset_dev_, dims_dev_;    // device copies of offset_ and dims_
    Buffer<double> loss_row_, correct_row_;    // per epoch position (training)
    Buffer<float> out_row_;                    // (N, O) outputs per epoch position, when asked
    Buffer<double> eval_loss_, eval_correct_;  // per row (evaluate)
    // The penalty table (as the CPU's), its row counts, rows and each step's penalty on the
    // device.
    PenaltyTable pen_;  // spec_.penalty_table()
    Buffer<int64_t> pen_counts_dev_;
    Buffer<double> pen_rows_, pen_step_;
    // The epoch index, kept while the data, order and batch size stay the same.
    EpochIndex index_;
    uint64_t index_uid_ = 0;
    std::vector<int64_t> index_order_;
    Buffer<int64_t> order_;
    Scratch scratch_;
    std::vector<int64_t> no_rows_;
    mutable ExclusiveMutex mutex_;
    std::mutex trainer_mutex_;  // one trainer at a time; readers wait on mutex_ instead
};

}  // namespace gpu
}  // namespace imdbfast
