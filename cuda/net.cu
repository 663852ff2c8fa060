// net.cu: the GPU training loop, inference and evaluation (see net.cuh).
#include "net.cuh"

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace imdbfast {
namespace gpu {
namespace {

void fill_zero(float* p, int64_t n) {
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) { p[i] = 0.0f; });
}

}  // namespace

DeviceNet::DeviceNet(int device, NetSpec spec)
    : device_(device),
      spec_(std::move(spec)),
      slots_layout_(cpu::optimizer_slots(spec_.optimizer)),
      dims_(spec_.dims()),
      acts_(spec_.activations()),
      loss_(spec_.loss),
      opt_(spec_.optimizer) {
    set_device(device_);
    const int L = n_layers();
    offset_.assign(1, 0);
    for (int p = 0; p < n_params(); ++p) offset_.push_back(offset_.back() + spec_.param_size(p));
    const int64_t P = offset_.back();
    // The flat ranges the optimizer updates: runs of trainable parameters (a frozen layer's
    // weights and slots stay as they are).
    for (int p = 0; p < n_params(); ++p) {
        if (!spec_.layers[NetSpec::layer_of(p)].trainable) continue;
        if (!train_runs_.empty() && train_runs_.back().second == offset_[p])
            train_runs_.back().second = offset_[p + 1];
        else
            train_runs_.push_back({offset_[p], offset_[p + 1]});
    }
    params_.resize(P);
    grads_.resize(P);
    fill_zero(params_.data(), P);
    fill_zero(grads_.data(), P);  // kept zero between steps: the optimizer kernel re-zeroes it
    slots_.resize(static_cast<size_t>(n_slots()));
    for (auto& s : slots_) {
        s.resize(P);
        fill_zero(s.data(), P);
    }
    z_.resize(L);
    a_.resize(L);
    dz_.resize(L);
    d_.resize(L);
    offset_dev_ = Buffer<int64_t>(static_cast<int64_t>(offset_.size()));
    copy_to_device(offset_dev_.data(), offset_.data(), static_cast<int64_t>(offset_.size()));
    dims_dev_ = Buffer<int64_t>(static_cast<int64_t>(dims_.size()));
    copy_to_device(dims_dev_.data(), dims_.data(), static_cast<int64_t>(dims_.size()));
    in_ptrs_.resize(L);
    dz_ptrs_.resize(L);
    pen_ = spec_.penalty_table();
    if (pen_.size() > 0) {
        pen_counts_dev_.resize(pen_.size());
        copy_to_device(pen_counts_dev_.data(), pen_.counts.data(), pen_.size());
        pen_rows_.resize(pen_.rows());
    }
    synchronize();
}

void DeviceNet::penalty_into(double* out) {
    for (int k = 0; k < pen_.size(); ++k) {
        const int p = pen_.params[k];
        penalty_rows(pen_rows_.data() + pen_.start[k], param(p), spec_.units(NetSpec::layer_of(p)),
                     spec_.penalty_l1(p), spec_.penalty_l2(p), pen_.counts[k]);
    }
    penalty_reduce(out, pen_rows_.data(), pen_counts_dev_.data(), pen_.size());
}

double DeviceNet::penalty() {
    if (pen_.size() == 0) return 0.0;
    set_device(device_);
    pen_step_.resize(1);
    penalty_into(pen_step_.data());
    double v = 0.0;
    copy_to_host(&v, pen_step_.data(), 1);
    return v;
}

void DeviceNet::get_param(int p, float* out) const {
    set_device(device_);
    copy_to_host(out, params_.data() + offset_[p], param_size(p));
}
void DeviceNet::set_param(int p, const float* in) {
    set_device(device_);
    copy_to_device(params_.data() + offset_[p], in, param_size(p));
}
void DeviceNet::get_slot(int p, int s, float* out) const {
    set_device(device_);
    copy_to_host(out, slots_[s].data() + offset_[p], param_size(p));
}
void DeviceNet::set_slot(int p, int s, const float* in) {
    set_device(device_);
    copy_to_device(slots_[s].data() + offset_[p], in, param_size(p));
}

std::vector<std::vector<float>> DeviceNet::first_slots_now() const {
    std::vector<std::vector<float>> out(static_cast<size_t>(n_slots()));
    for (int s = 0; s < n_slots(); ++s) {
        out[s].resize(static_cast<size_t>(param_size(0)));
        get_slot(0, s, out[s].data());
    }
    return out;
}

void DeviceNet::restore(const std::vector<const float*>& weights,
                        const std::vector<std::vector<const float*>>& slots, const int64_t* synced,
                        int64_t iterations) {
    // A CPU state with lagging rows of W1: bring copies of them up to date first.
    std::vector<std::vector<float>> first;
    if (synced) {
        const int64_t D = dims_[0], H = dims_[1];
        std::vector<int64_t> sync(synced, synced + D);
        float* sp[3] = {nullptr, nullptr, nullptr};
        for (int s = 0; s < n_slots(); ++s) {
            first.emplace_back(slots[0][s], slots[0][s] + D * H);
            sp[s] = first.back().data();
        }
        cpu::optimizer_catch_up(opt_, iterations, sp, H, sync.data(), 0, D);
    }
    for (int p = 0; p < n_params(); ++p) set_param(p, weights[p]);
    for (int p = 0; p < n_params(); ++p)
        for (int s = 0; s < n_slots(); ++s)
            set_slot(p, s, p == 0 && !first.empty() ? first[s].data() : slots[p][s]);
    set_iterations(iterations);
}

void DeviceNet::replace_slots(const std::vector<std::vector<const float*>>& slots) {
    for (int p = 0; p < n_params(); ++p)
        for (int s = 0; s < n_slots(); ++s) set_slot(p, s, slots[p][s]);
}

void DeviceNet::reserve_rows(int64_t n) {
    if (n <= rows_) return;
    // Until every buffer has grown, none may be trusted: a failed allocation leaves its buffer
    // empty (launch.h), and a later call within the old size must not write through it.
    rows_ = 0;
    const int L = n_layers();
    std::vector<float*> ip, dzp;
    int64_t widest = 0;
    for (int l = 0; l < L; ++l) {
        z_[l].resize(n * dims_[l + 1]);
        a_[l].resize(n * dims_[l + 1]);
        dz_[l].resize(n * dims_[l + 1]);
        if (has_dropout(l)) {
            d_[l].resize(n * dims_[l + 1]);
            widest = std::max(widest, dims_[l + 1]);
        }
        ip.push_back(has_dropout(l) ? d_[l].data() : a_[l].data());
        dzp.push_back(dz_[l].data());
    }
    if (widest > 0) da_.resize(n * widest);
    copy_to_device(in_ptrs_.data(), ip.data(), L);
    copy_to_device(dz_ptrs_.data(), dzp.data(), L);
    rows_ = n;
}

std::atomic<bool>& cuda_graphs() {
    static std::atomic<bool> on{false};
    return on;
}

DeviceNet::~DeviceNet() {
#ifndef IMDBFAST_CUDA_SIM
    if (graph_exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph_exec_));
    if (capture_stream_) cudaStreamDestroy(static_cast<cudaStream_t>(capture_stream_));
#endif
}

template <class Enqueue>
void DeviceNet::run_steps(Enqueue&& enqueue) {
#ifndef IMDBFAST_CUDA_SIM
    if (cuda_graphs().load()) {
        // Capture what enqueue() launches on a stream of this net's own (capture_on: other
        // threads go on using imdbfast's stream meanwhile), then launch it as one graph on
        // imdbfast's stream, in order with everything else there. The executable graph is
        // kept and updated in place while calls keep their shape (the same kernels; only their
        // arguments change, epoch to epoch), else instantiated anew.
        if (!capture_stream_) {
            cudaStream_t cs = nullptr;
            IMDBFAST_CUDA_CHECK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
            capture_stream_ = cs;
        }
        const auto cs = static_cast<cudaStream_t>(capture_stream_);
        IMDBFAST_CUDA_CHECK(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal));
        cudaGraph_t graph = nullptr;
        capture_on(cs);
        try {
            enqueue();
        } catch (...) {
            capture_on(nullptr);
            cudaStreamEndCapture(cs, &graph);  // leave the stream usable, then report the error
            if (graph) cudaGraphDestroy(graph);
            cudaGetLastError();
            throw;
        }
        capture_on(nullptr);
        IMDBFAST_CUDA_CHECK(cudaStreamEndCapture(cs, &graph));
        auto exec = static_cast<cudaGraphExec_t>(graph_exec_);
        cudaGraphExecUpdateResultInfo info;
        if (exec && cudaGraphExecUpdate(exec, graph, &info) != cudaSuccess) {
            cudaGetLastError();  // a change of shape: not an error, instantiate below
            cudaGraphExecDestroy(exec);
            exec = nullptr;
        }
        graph_exec_ = exec;
        cudaError_t err = cudaSuccess;
        if (!exec) {
            err = cudaGraphInstantiate(&exec, graph, 0);
            graph_exec_ = err == cudaSuccess ? exec : nullptr;
        }
        cudaGraphDestroy(graph);
        IMDBFAST_CUDA_CHECK(err);
        IMDBFAST_CUDA_CHECK(cudaGraphLaunch(exec, stream()));
        return;
    }
#endif
    enqueue();  // the simulator, and graphs off: launch by launch
}

// Below this many weights in the small layers one thread per row runs them all faster than
// 2L launches of a thread per element would (an estimate for an H200: ~3 us a launch against
// ~1 ns a multiply-add a thread; the book's 16-16-1 holds 272). To be measured on the device.
constexpr int64_t kFuseMaxWeights = 2048;

SmallLayers DeviceNet::small_layers() {
    SmallLayers s;
    const int L = n_layers();
    int64_t weights = 0;
    for (int l = 1; l < L; ++l) weights += dims_[l] * dims_[l + 1];
    bool dropout = false;
    for (int l = 0; l < L; ++l) dropout = dropout || has_dropout(l);
    if (!fuse_small_layers().load() || dropout || L > SmallLayers::kMax || weights > kFuseMaxWeights)
        return s;  // L = 0: not fused
    s.L = L;
    for (int l = 0; l <= L; ++l) s.dims[l] = dims_[l];
    for (int l = 0; l < L; ++l) {
        s.acts[l] = acts_[l];
        s.z[l] = z_[l].data();
        s.a[l] = a_[l].data();
        s.dz[l] = dz_[l].data();
        s.W[l] = param(NetSpec::kernel(l));
        s.bias[l] = param(NetSpec::bias(l));
    }
    return s;
}

void DeviceNet::forward(const DeviceCSR& x, const int64_t* rows, int64_t first, int64_t n,
                        int64_t step) {
    const bool training = step >= 0;
    sparse_forward(z_[0].data(), a_[0].data(), acts_[0], x.view(), rows, first, param(0), param(1),
                   dims_[1], n);
    for (int l = 0; l < n_layers(); ++l) {
        if (l > 0) {
            const float* in = training && has_dropout(l - 1) ? d_[l - 1].data() : a_[l - 1].data();
            dense_forward(z_[l].data(), a_[l].data(), acts_[l], in, param(NetSpec::kernel(l)),
                          param(NetSpec::bias(l)), dims_[l], dims_[l + 1], n);
        }
        if (acts_[l] == ACT_SOFTMAX) softmax_forward(a_[l].data(), z_[l].data(), dims_[l + 1], n);
        if (training && has_dropout(l))
            dropout_forward(d_[l].data(), a_[l].data(), rows, first, dropout(l, step),
                            dims_[l + 1], n);
    }
}

Stats DeviceNet::train_batches(const DeviceCSR& x, const float* y, const float* sw,
                               const int64_t* order, int64_t N, int64_t batch_size,
                               int64_t batch_begin, int64_t batch_end, int /*threads*/,
                               double* batch_loss, double* batch_acc, float* out) {
    std::unique_lock<std::mutex> trainer(trainer_mutex_, std::try_to_lock);
    if (!trainer.owns_lock())
        throw std::runtime_error("this model is being trained by another thread");
    std::lock_guard<ExclusiveMutex> lock(mutex_);  // waits for readers' calls
    set_device(device_);
    const int L = n_layers();
    const int64_t B = batch_size, D = dims_[0], O = dims_[L];
    Stats total;
    const int64_t steps = batch_end - batch_begin;
    if (steps <= 0) return total;
    reserve_rows(std::max<int64_t>(1, std::min(B, N)));

    // The epoch index: once per epoch (the chunks of one epoch share it).
    if (index_uid_ != x.uid || index_.B != B || index_.N != N ||
        !std::equal(order, order + N, index_order_.begin(), index_order_.end())) {
        index_uid_ = 0;  // invalid until rebuilt, should anything below throw
        index_order_.assign(order, order + N);
        order_.resize(N);
        copy_to_device(order_.data(), order, N);
        build_epoch_index(index_, scratch_, x.view(), order_.data(), N, B);
        loss_row_.resize(std::max<int64_t>(1, N));
        correct_row_.resize(std::max<int64_t>(1, N));
        index_uid_ = x.uid;
    }

    if (out) out_row_.resize(N * O);  // (grow-only)
    const bool penalized = pen_.size() > 0;
    if (penalized) pen_step_.resize(steps);
    std::vector<float*> slots;
    for (auto& s : slots_) slots.push_back(s.data());
    const SmallLayers small = small_layers();
    const bool fused = small.L > 0;
    run_steps([&] {
    for (int64_t s = 0; s < steps; ++s) {
        const int64_t batch = batch_begin + s, p0 = batch * B, Bb = std::min(B, N - p0);
        const int64_t* rows = order_.data() + p0;
        if (penalized) penalty_into(pen_step_.data() + s);  // the weights before the step
        const int64_t it = iterations() + s;
        if (fused) {
            sparse_forward(z_[0].data(), a_[0].data(), acts_[0], x.view(), rows, 0, param(0),
                           param(1), dims_[1], Bb);
            small_layers_step(small, loss_row_.data() + p0, correct_row_.data() + p0, y, sw, rows,
                              loss_, Bb);
            if (out) copy_on_device(out_row_.data() + p0 * O, a_[L - 1].data(), Bb * O);
        } else {
            forward(x, rows, 0, Bb, it);
            loss_forward_backward(dz_[L - 1].data(), loss_row_.data() + p0, correct_row_.data() + p0,
                      z_[L - 1].data(), a_[L - 1].data(), y, sw, rows, 0, acts_[L - 1], loss_, O, Bb);
            if (out) copy_on_device(out_row_.data() + p0 * O, a_[L - 1].data(), Bb * O);
        }
        for (int l = L - 1; l >= 1 && !fused; --l) {
            const int64_t I = dims_[l], H = dims_[l + 1];
            if (has_dropout(l - 1)) {  // dz @ W^T, its mask, then the activation's derivative
                dense_backward_input(da_.data(), dz_[l].data(), param(NetSpec::kernel(l)),
                                     z_[l - 1].data(), a_[l - 1].data(), ACT_LINEAR, I, H, Bb);
                dropout_backward(da_.data(), rows, 0, dropout(l - 1, it), I, Bb);
                act_backward(dz_[l - 1].data(), da_.data(), z_[l - 1].data(), a_[l - 1].data(),
                             acts_[l - 1], Bb * I);
            } else {
                dense_backward_input(dz_[l - 1].data(), dz_[l].data(), param(NetSpec::kernel(l)),
                                     z_[l - 1].data(), a_[l - 1].data(), acts_[l - 1], I, H, Bb);
            }
        }
        float* G = grads_.data();
        small_grads(G, offset_dev_.data(), dims_dev_.data(), dz_ptrs_.data(), in_ptrs_.data(), L,
                    offset_[1], offset_.back(), Bb);
        if (spec_.layers[0].trainable)
            sparse_backward_weight(G, index_, batch, dz_[0].data(), D, dims_[1]);
        for (const int p : pen_.params)
            penalty_grad_add(G + offset_[p], param(p), static_cast<float>(spec_.penalty_l1(p)),
                             static_cast<float>(2.0 * spec_.penalty_l2(p)), param_size(p));
        for (const auto& run : train_runs_) {
            for (size_t k = 0; k < slots.size(); ++k) slots[k] = slots_[k].data() + run.first;
            optimizer_update(opt_, it, params_.data() + run.first, G + run.first,
                             slots.data(), run.second - run.first);
        }
    }
    });
    iterations_ += steps;

    // Per-row losses back once per call, summed per batch in batch-row order (as the CPU).
    const int64_t r0 = batch_begin * B, r1 = std::min(N, batch_end * B);
    std::vector<double> lr(static_cast<size_t>(r1 - r0)), cr(lr.size());
    copy_to_host(lr.data(), loss_row_.data() + r0, r1 - r0);
    copy_to_host(cr.data(), correct_row_.data() + r0, r1 - r0);
    if (out) copy_to_host(out, out_row_.data() + r0 * O, (r1 - r0) * O);
    std::vector<double> pen(static_cast<size_t>(steps), 0.0);
    if (penalized) copy_to_host(pen.data(), pen_step_.data(), steps);
    for (int64_t s = 0; s < steps; ++s) {
        const int64_t p0 = (batch_begin + s) * B, Bb = std::min(B, N - p0);
        total.add_batch(lr.data() + (p0 - r0), cr.data() + (p0 - r0), Bb, pen[s],
                        batch_loss ? batch_loss + s : nullptr, batch_acc ? batch_acc + s : nullptr);
    }
    return total;
}

void DeviceNet::predict(float* out, const DeviceCSR& x, int64_t first, int64_t last,
                        int /*threads*/) {
    predict_rows(out, false, x, first, last);
}

void DeviceNet::predict_on_device(float* out, const DeviceCSR& x, int64_t first, int64_t last) {
    predict_rows(out, true, x, first, last);
}

void DeviceNet::predict_rows(float* out, bool out_on_device, const DeviceCSR& x, int64_t first,
                             int64_t last) {
    std::lock_guard<ExclusiveMutex> lock(mutex_);
    set_device(device_);
    const int L = n_layers();
    const int64_t n = last - first, O = dims_[L];
    if (n <= 0) return;
    reserve_rows(n);
    forward(x, nullptr, first, n);
    if (out_on_device) {
        copy_on_device(out, a_[L - 1].data(), n * O);
        synchronize();
    } else {
        copy_to_host(out, a_[L - 1].data(), n * O);
    }
}

Stats DeviceNet::evaluate(const DeviceCSR& x, const float* y, const float* sw, int64_t first,
                          int64_t last, int /*threads*/) {
    std::lock_guard<ExclusiveMutex> lock(mutex_);
    set_device(device_);
    const int L = n_layers();
    const int64_t n = last - first, O = dims_[L];
    Stats st;
    st.rows = std::max<int64_t>(0, n);
    if (n <= 0) return st;
    reserve_rows(n);
    forward(x, nullptr, first, n);
    eval_loss_.resize(n);
    eval_correct_.resize(n);
    loss_forward(eval_loss_.data(), eval_correct_.data(), z_[L - 1].data(),
              a_[L - 1].data(), y, sw, nullptr, first, acts_[L - 1], loss_, O, n);
    std::vector<double> lr(static_cast<size_t>(n)), cr(lr.size());
    copy_to_host(lr.data(), eval_loss_.data(), n);
    copy_to_host(cr.data(), eval_correct_.data(), n);
    // Sums per tile of rows, then over tiles: the CPU's grouping, so both agree to the bit
    // when the per-row values do.
    for (int64_t t0 = 0; t0 < n; t0 += kTile) {
        Stats tile;
        tile.add_batch(lr.data() + t0, cr.data() + t0, std::min(kTile, n - t0), 0.0, nullptr,
                       nullptr);
        st.loss_sum += tile.loss_sum;
        st.correct_sum += tile.correct_sum;
    }
    st.loss_sum += static_cast<double>(n) * penalty();  // as the CPU's evaluate
    return st;
}

}  // namespace gpu
}  // namespace imdbfast
