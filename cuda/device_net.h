// device_net.h: the GPU counterpart of cpp/net.h: the same network, optimizer and training
// loop, with parameters, optimizer state and data resident on one device.
//
// An epoch is a fixed sequence of kernels per batch (device_kernels.h): sparse forward, dense
// layers, fused loss, backward, the small layers' gradients, the sparse layer's gradient from
// the epoch index, and one optimizer kernel over every parameter. Nothing is copied between host
// and device per batch: the shuffled order goes up once per epoch, the per-row losses come back
// once per call. The optimizer step is dense (every row of W1, as Keras): on a GPU, 160,000
// elements are one cheap kernel, and the lazy row bookkeeping of the CPU path is not needed.
// Methods take the object's lock: one caller at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "device_kernels.h"
#include "net.h"  // Stats

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

class DeviceNet {
   public:
    // dims: D, H_1, ..., O; acts: one per layer (as cpp/net.h).
    DeviceNet(int device, std::vector<int64_t> dims, std::vector<int> acts, int loss,
              cpu::OptimizerConfig opt);

    int device() const { return device_; }
    const std::vector<int64_t>& dims() const { return dims_; }
    int n_layers() const { return static_cast<int>(acts_.size()); }
    int n_params() const { return 2 * n_layers(); }
    int64_t param_size(int p) const { return offset_[p + 1] - offset_[p]; }
    int n_slots() const { return cpu::optimizer_num_slots(opt_); }
    const cpu::OptimizerConfig& optimizer() const { return opt_; }
    int64_t iterations() const { return iterations_.load(std::memory_order_relaxed); }
    void set_iterations(int64_t it) { iterations_ = it; }

    // Host copies in and out (param p = 2l kernel, 2l + 1 bias; flat).
    void get_param(int p, float* out) const;
    void set_param(int p, const float* in);
    void get_slot(int p, int s, float* out) const;
    void set_slot(int p, int s, const float* in);

    // Batches [batch_begin, batch_end) of the epoch visiting x's N rows in `order` (host, N).
    // y (N, O) and sw (N) or null are device pointers. Per-batch outputs as cpp/net.h.
    Stats train_batches(const DeviceCSR& x, const float* y, const float* sw, const int64_t* order,
                        int64_t batch_size, int64_t batch_begin, int64_t batch_end,
                        double* batch_loss, double* batch_acc);
    // Outputs for rows [first, last) into out ((last - first, O); device memory if out_on_device).
    void predict(float* out, bool out_on_device, const DeviceCSR& x, int64_t first, int64_t last);
    // Loss and accuracy sums over rows [first, last), reduced in the CPU's order.
    Stats evaluate(const DeviceCSR& x, const float* y, const float* sw, int64_t first, int64_t last);

    std::mutex& mutex() { return mutex_; }
    std::mutex& trainer_mutex() { return trainer_mutex_; }

   private:
    float* param(int p) { return params_.data() + offset_[p]; }
    // Activations of `rows` rows through every layer into z_, a_ (grown as needed).
    void forward(const DeviceCSR& x, const int64_t* rows, int64_t first, int64_t n);
    void reserve_rows(int64_t n);

    int device_;
    std::vector<int64_t> dims_;
    std::vector<int> acts_;
    int loss_;
    cpu::OptimizerConfig opt_;
    std::vector<int64_t> offset_;  // (n_params + 1) of each parameter in the flat buffers
    Buffer<float> params_, grads_;
    std::vector<Buffer<float>> slots_;
    // Atomic: Python may read it (progress, Ctrl-C) while a trainer runs without the lock.
    std::atomic<int64_t> iterations_{0};

    // Per-batch activations and gradients, (rows_ x H_l) per layer.
    int64_t rows_ = 0;
    std::vector<Buffer<float>> z_, a_, dz_;
    Buffer<float*> a_ptrs_, dz_ptrs_;          // device copies of the a_ and dz_ pointers
    Buffer<int64_t> offset_dev_, dims_dev_;    // device copies of offset_ and dims_
    Buffer<double> loss_row_, correct_row_;    // per epoch position (training)
    Buffer<double> eval_loss_, eval_correct_;  // per row (evaluate)
    // The epoch index, kept while the data, order and batch size stay the same.
    EpochIndex index_;
    uint64_t index_uid_ = 0;
    std::vector<int64_t> index_order_;
    Buffer<int64_t> order_;
    Scratch scratch_;
    std::mutex mutex_;
    std::mutex trainer_mutex_;  // one trainer at a time; readers wait on mutex_ instead
};

}  // namespace gpu
}  // namespace imdbfast
