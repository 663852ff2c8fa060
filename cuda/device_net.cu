// device_net.cu: the GPU training loop, inference and evaluation (see device_net.h).
#include "device_net.h"

#include <algorithm>
#include <stdexcept>

namespace imdbfast {
namespace gpu {
namespace {

constexpr int64_t kTile = 256;  // evaluate's reduction groups: the CPU's inference tile

void fill_zero(float* p, int64_t n) {
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) { p[i] = 0.0f; });
}

}  // namespace

DeviceNet::DeviceNet(int device, std::vector<int64_t> dims, std::vector<int> acts, int loss,
                     cpu::OptimizerConfig opt)
    : device_(device), dims_(std::move(dims)), acts_(std::move(acts)), loss_(loss), opt_(opt) {
    set_device(device_);
    const int L = n_layers();
    offset_.assign(1, 0);
    for (int l = 0; l < L; ++l) {
        offset_.push_back(offset_.back() + dims_[l] * dims_[l + 1]);
        offset_.push_back(offset_.back() + dims_[l + 1]);
    }
    const int64_t P = offset_.back();
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
    offset_dev_ = Buffer<int64_t>(static_cast<int64_t>(offset_.size()));
    copy_to_device(offset_dev_.data(), offset_.data(), static_cast<int64_t>(offset_.size()));
    dims_dev_ = Buffer<int64_t>(static_cast<int64_t>(dims_.size()));
    copy_to_device(dims_dev_.data(), dims_.data(), static_cast<int64_t>(dims_.size()));
    a_ptrs_.resize(L);
    dz_ptrs_.resize(L);
    synchronize();
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

void DeviceNet::reserve_rows(int64_t n) {
    if (n <= rows_) return;
    const int L = n_layers();
    std::vector<float*> ap, dzp;
    for (int l = 0; l < L; ++l) {
        z_[l].resize(n * dims_[l + 1]);
        a_[l].resize(n * dims_[l + 1]);
        dz_[l].resize(n * dims_[l + 1]);
        ap.push_back(a_[l].data());
        dzp.push_back(dz_[l].data());
    }
    copy_to_device(a_ptrs_.data(), ap.data(), L);
    copy_to_device(dz_ptrs_.data(), dzp.data(), L);
    rows_ = n;
}

void DeviceNet::forward(const DeviceCSR& x, const int64_t* rows, int64_t first, int64_t n) {
    sparse_forward(z_[0].data(), a_[0].data(), acts_[0], x.view(), rows, first, param(0), param(1),
                   dims_[1], n);
    for (int l = 1; l < n_layers(); ++l)
        dense_forward(z_[l].data(), a_[l].data(), acts_[l], a_[l - 1].data(), param(2 * l),
                      param(2 * l + 1), dims_[l], dims_[l + 1], n);
}

Stats DeviceNet::train_batches(const DeviceCSR& x, const float* y, const float* sw,
                               const int64_t* order, int64_t batch_size, int64_t batch_begin,
                               int64_t batch_end, double* batch_loss, double* batch_acc) {
    set_device(device_);
    const int L = n_layers();
    const int64_t N = x.n_rows, B = batch_size, D = dims_[0], O = dims_[L];
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

    std::vector<float*> slots;
    for (auto& s : slots_) slots.push_back(s.data());
    for (int64_t s = 0; s < steps; ++s) {
        const int64_t batch = batch_begin + s, p0 = batch * B, Bb = std::min(B, N - p0);
        const int64_t* rows = order_.data() + p0;
        forward(x, rows, 0, Bb);
        loss_rows(dz_[L - 1].data(), loss_row_.data() + p0, correct_row_.data() + p0,
                  z_[L - 1].data(), a_[L - 1].data(), y, sw, rows, 0, acts_[L - 1], loss_, O, Bb);
        for (int l = L - 1; l >= 1; --l)
            backward_input(dz_[l - 1].data(), dz_[l].data(), param(2 * l), z_[l - 1].data(),
                           a_[l - 1].data(), acts_[l - 1], dims_[l], dims_[l + 1], Bb);
        float* G = grads_.data();
        small_grads(G, offset_dev_.data(), dims_dev_.data(), dz_ptrs_.data(), a_ptrs_.data(), L,
                    offset_[1], offset_.back(), Bb);
        sparse_weight_grad(G, index_, batch, dz_[0].data(), D, dims_[1]);
        optimizer_step(opt_, iterations() + s, params_.data(), G, slots.data(), offset_.back());
    }
    iterations_ += steps;

    // Per-row losses back once per call, summed per batch in batch-row order (as the CPU).
    const int64_t r0 = batch_begin * B, r1 = std::min(N, batch_end * B);
    std::vector<double> lr(static_cast<size_t>(r1 - r0)), cr(lr.size());
    copy_to_host(lr.data(), loss_row_.data() + r0, r1 - r0);
    copy_to_host(cr.data(), correct_row_.data() + r0, r1 - r0);
    for (int64_t s = 0; s < steps; ++s) {
        const int64_t p0 = (batch_begin + s) * B, Bb = std::min(B, N - p0);
        double ls = 0.0, cs = 0.0;
        for (int64_t b = 0; b < Bb; ++b) {
            ls += lr[p0 - r0 + b];
            cs += cr[p0 - r0 + b];
        }
        total.loss_sum += ls;
        total.correct_sum += cs;
        total.rows += Bb;
        if (batch_loss) batch_loss[s] = ls / static_cast<double>(Bb);
        if (batch_acc) batch_acc[s] = cs / static_cast<double>(Bb);
    }
    return total;
}

void DeviceNet::predict(float* out, bool out_on_device, const DeviceCSR& x, int64_t first,
                        int64_t last) {
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
                          int64_t last) {
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
    loss_rows(nullptr, eval_loss_.data(), eval_correct_.data(), z_[L - 1].data(),
              a_[L - 1].data(), y, sw, nullptr, first, acts_[L - 1], loss_, O, n);
    std::vector<double> lr(static_cast<size_t>(n)), cr(lr.size());
    copy_to_host(lr.data(), eval_loss_.data(), n);
    copy_to_host(cr.data(), eval_correct_.data(), n);
    // Sums per tile of rows, then over tiles: the CPU's grouping, so both agree to the bit
    // when the per-row values do.
    for (int64_t t0 = 0; t0 < n; t0 += kTile) {
        double ls = 0.0, cs = 0.0;
        for (int64_t j = t0; j < std::min(n, t0 + kTile); ++j) {
            ls += lr[j];
            cs += cr[j];
        }
        st.loss_sum += ls;
        st.correct_sum += cs;
    }
    return st;
}

}  // namespace gpu
}  // namespace imdbfast
