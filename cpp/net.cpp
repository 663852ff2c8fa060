// net.cpp: the compiled training loop, inference and evaluation; thread-count policy; shuffles.
//
// Training runs all steps of a call inside one OpenMP region. W1's rows are split into fixed
// column lanes (cpu::lane_plan) and each thread owns whole lanes: it alone reads and writes those
// rows, so they stay in its core's cache. For each step of a batch of B rows:
//   phase 1, rows split evenly among threads: the first layer's pre-activation from the lane
//            partials (lanes_sum), the rest of the forward pass, the loss and its gradient, and
//            the backward pass down to dz of the first layer; per row, so rows are independent.
//            Meanwhile each thread prefetches its lanes of the next batch's (shuffled) rows.
//                                                                                   -- barrier
//   phase 2, parameters split among threads: each thread scatters the first layer's gradient
//            into its lanes' rows of G, updates the rows the batch touched, and gathers its
//            lanes' partials of the NEXT batch's first layer with the new weights; the small
//            layers' gradients and updates are divided row by row.                 -- barrier
// (The call's first batch has its partials gathered before the first step.) Every float is
// computed by one thread, in an order fixed by the data alone (batch rows ascending, lanes
// fixed by the data and the batch size), so the weights are bitwise identical for any thread
// count. Small batches run on one thread: a parallel step would cost more in synchronisation
// than it saves.
#include "net.h"
#include "parallel.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <stdexcept>


namespace imdbfast {
namespace cpu {

namespace {
inline uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
}  // namespace

void shuffle_order(int64_t* order, int64_t n, uint64_t seed, int64_t epoch) {
    uint64_t s = seed;
    s = splitmix64(s) ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ull);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    for (int64_t i = n - 1; i > 0; --i) {
        // Unbiased j in [0, i] (Lemire's multiply-and-reject).
        const uint64_t bound = static_cast<uint64_t>(i) + 1;
        __uint128_t m = static_cast<__uint128_t>(splitmix64(s)) * bound;
        uint64_t low = static_cast<uint64_t>(m);
        if (low < bound) {
            const uint64_t t = (0 - bound) % bound;
            while (low < t) {
                m = static_cast<__uint128_t>(splitmix64(s)) * bound;
                low = static_cast<uint64_t>(m);
            }
        }
        std::swap(order[i], order[static_cast<int64_t>(m >> 64)]);
    }
}

}  // namespace cpu

namespace {

// [lo, hi) of n items for part t of nt.
inline int64_t part(int64_t n, int t, int nt) { return n * t / nt; }

// Non-zeros per thread below which a training step runs on one thread. Measured on the 2-core
// development machine: a step of ~64k non-zeros (batch 512) gains from two threads, one of a few
// thousand (batch <= ~40) loses to the barriers.
constexpr int64_t kStepGrainNnz = 8192;
// Signs of a busy machine, measured on the 2-core development machine at batch 512. Beside
// one busy process a call of 16 steps on 2 threads was preempted 6-12 times (idle: never) and
// took twice the 1-thread time; its longest barrier waits were 4-8 ms (a scheduler slice), where
// idle ones stay under 0.15 ms but for the VM's own stalls of 1.5-2.2 ms now and then. One sign
// alone shed threads on the idle machine too often (the book's fit 13 % slower); three do not.
constexpr int64_t kBusySigns = 3;
constexpr int64_t kLongWaitNs = 3000000;

}  // namespace

Net::Net(NetSpec spec)
    : spec_(std::move(spec)),
      slots_layout_(cpu::optimizer_slots(spec_.optimizer)),
      dims_(spec_.dims()),
      acts_(spec_.activations()),
      loss_(spec_.loss),
      opt_(spec_.optimizer) {
    const int P = n_params();
    params_.resize(P);
    slots_.resize(P);
    grads_.resize(P);
    for (int p = 0; p < P; ++p) {
        params_[p].assign(static_cast<size_t>(param_size(p)), 0.0f);
        grads_[p].assign(static_cast<size_t>(param_size(p)), 0.0f);
        slots_[p].assign(n_slots(), AlignedFloats(static_cast<size_t>(param_size(p)), 0.0f));
    }
    synced_.assign(static_cast<size_t>(dims_[0]), 0);
    pen_ = spec_.penalty_table();
}

void Net::penalty_rows(double* out, int64_t r0, int64_t r1) const {
    for (int k = 0; k < pen_.size(); ++k) {
        const int p = pen_.params[k];
        const int64_t lo = std::max(r0, pen_.start[k]), hi = std::min(r1, pen_.start[k + 1]);
        if (lo < hi)
            cpu::penalty_rows(out + (lo - r0), param(p), spec_.units(NetSpec::layer_of(p)),
                              spec_.penalty_l1(p), spec_.penalty_l2(p), lo - pen_.start[k],
                              hi - pen_.start[k]);
    }
}

double Net::penalty() const {
    if (pen_.size() == 0) return 0.0;
    std::vector<double> rows(static_cast<size_t>(pen_.rows()));
    penalty_rows(rows.data(), 0, pen_.rows());
    return penalty_total(rows.data(), pen_.counts.data(), pen_.size());
}

void Net::get_param(int p, float* out) const { std::copy_n(param(p), param_size(p), out); }
void Net::set_param(int p, const float* in) { std::copy_n(in, param_size(p), param(p)); }
void Net::get_slot(int p, int s, float* out) const {
    std::copy_n(slots_[p][s].data(), param_size(p), out);
}

void Net::sync_optimizer() {
    if (!lazy()) return;
    float* s[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < n_slots(); ++k) s[k] = slots_[0][k].data();
    cpu::optimizer_catch_up(opt_, iterations(), s, dims_[1], synced_.data(), 0, dims_[0]);
}

std::vector<std::vector<float>> Net::first_slots_now() const {
    std::vector<std::vector<float>> out(static_cast<size_t>(n_slots()));
    float* s[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < n_slots(); ++k) {
        out[k].assign(slots_[0][k].begin(), slots_[0][k].end());
        s[k] = out[k].data();
    }
    if (lazy()) {
        std::vector<int64_t> synced(synced_);
        cpu::optimizer_catch_up(opt_, iterations(), s, dims_[1], synced.data(), 0, dims_[0]);
    }
    return out;
}

void Net::set_iterations(int64_t it) {
    sync_optimizer();
    iterations_ = it;
    std::fill(synced_.begin(), synced_.end(), it);
}

void Net::restore(const std::vector<const float*>& weights,
                  const std::vector<std::vector<const float*>>& slots, const int64_t* synced,
                  int64_t iterations) {
    for (int p = 0; p < n_params(); ++p) set_param(p, weights[p]);
    for (int p = 0; p < n_params(); ++p)
        for (int s = 0; s < n_slots(); ++s) std::copy_n(slots[p][s], param_size(p), slot(p, s));
    iterations_ = iterations;
    if (synced) std::copy_n(synced, synced_.size(), synced_.begin());
    else std::fill(synced_.begin(), synced_.end(), iterations);
}

void Net::replace_slots(const std::vector<std::vector<const float*>>& slots) {
    sync_optimizer();  // marks every row current, so the new slots count from now
    for (int p = 0; p < n_params(); ++p)
        for (int s = 0; s < n_slots(); ++s) std::copy_n(slots[p][s], param_size(p), slot(p, s));
}

void Net::forward_rows(std::vector<std::vector<float>>& z, std::vector<std::vector<float>>& a,
                       const CSRView& x, const int64_t* rows, int64_t b0, int64_t b1) const {
    cpu::sparse_forward(z[0].data(), x, rows, param(0), param(1), dims_[1], b0, b1);
    forward_after_first(z, a, nullptr, nullptr, 0, b0, b1);
}

void Net::forward_after_first(std::vector<std::vector<float>>& z,
                              std::vector<std::vector<float>>& a,
                              std::vector<std::vector<float>>* d, const int64_t* rows,
                              int64_t step, int64_t b0, int64_t b1) const {
    const int L = n_layers();
    for (int l = 0; l < L; ++l) {
        const int64_t H = dims_[l + 1];
        if (l > 0) {
            const bool masked = d && has_dropout(l - 1);
            const float* in = masked ? (*d)[l - 1].data() : a[l - 1].data();
            cpu::dense_forward(z[l].data(), in, param(NetSpec::kernel(l)), param(NetSpec::bias(l)),
                               dims_[l], H, b0, b1);
        }
        if (acts_[l] == ACT_SOFTMAX)  // (the output layer's: parse_spec)
            cpu::softmax_forward(a[l].data(), z[l].data(), H, b0, b1);
        else
            cpu::act_forward(a[l].data(), z[l].data(), acts_[l], b0 * H, b1 * H);
        if (d && has_dropout(l))
            cpu::dropout_forward((*d)[l].data(), a[l].data(), rows, dropout(l, step), H, b0, b1);
    }
}

Stats Net::train_batches(const CSR& x, const float* y, const float* sw, const int64_t* order,
                         int64_t N, int64_t batch_size, int64_t batch_begin, int64_t batch_end,
                         int threads, double* batch_loss, double* batch_acc, float* out) {
    std::unique_lock<std::mutex> trainer(trainer_mutex_, std::try_to_lock);
    if (!trainer.owns_lock())
        throw std::runtime_error("this model is being trained by another thread");
    std::unique_lock<std::shared_mutex> lock(mutex_);  // waits for readers' current calls
    // Batches never exceed the data: scratch is sized by the rows a step can really have.
    const int64_t Bmax = std::max<int64_t>(1, std::min(batch_size, N));
    Stats total;
    if (batch_end - batch_begin <= 0) return total;

    // Threads: worth it only when a step has enough non-zeros to share. OpenMP may give a
    // smaller team than asked (OMP_THREAD_LIMIT, OMP_DYNAMIC): the work split is made for nt
    // threads, so such a call runs again on one.
    const int64_t step_nnz = N > 0 ? x.nnz() / N * Bmax : 0;
    int nt = cpu::threads_for(threads, step_nnz, kStepGrainNnz);
    if (nt > 1 && cpu::contention_says_solo()) nt = 1;
    for (int64_t b = batch_begin; b < batch_end;) {
        const int64_t k = b - batch_begin;
        int64_t done = 0;
        bool contended = false;
        float* team_out = out ? out + k * batch_size * dims_.back() : nullptr;
        if (!train_team(nt, x, y, sw, order, team_out, N, batch_size, b, batch_end, threads,
                        batch_loss ? batch_loss + k : nullptr, batch_acc ? batch_acc + k : nullptr,
                        total, &done, &contended)) {
            nt = 1;  // a short team: nothing was done
            continue;
        }
        if (nt > 1) cpu::contention_report(contended);
        if (contended) nt = 1;  // the rest of the call alone
        b += done;
    }
    return total;
}

bool Net::train_team(int nt, const CSR& x, const float* y, const float* sw, const int64_t* order,
                     float* out, int64_t N, int64_t batch_size, int64_t batch_begin, int64_t batch_end,
                     int threads, double* batch_loss, double* batch_acc, Stats& total,
                     int64_t* steps_done, bool* contended) {
    const int L = n_layers();
    const int64_t D = dims_[0], H0 = dims_[1], O = dims_[L], B = batch_size,
                  Bmax = std::max<int64_t>(1, std::min(batch_size, N));
    const int64_t steps = batch_end - batch_begin;
    const CSRView xv = x.narrow_view();
    // Lanes: thread t owns lanes [K t / nt, K (t + 1) / nt) (none when nt > K), i.e. W1's rows
    // [cb[t], cb[t + 1]).
    constexpr int K = cpu::kLanes;
    if (!plan_ || plan_->csr_uid != x.uid || plan_->batch_size != B)  // (under the trainer lock)
        plan_ = std::make_shared<const cpu::LanePlan>(cpu::lane_plan(x, B, threads));
    const std::shared_ptr<const cpu::LanePlan> lanes = plan_;
    const int32_t* pos = lanes->pos.data();
    std::vector<int64_t> cb(static_cast<size_t>(nt) + 1);
    for (int t = 0; t <= nt; ++t) cb[t] = lanes->bounds[K * t / nt];
    // One or two threads own whole pairs of lanes: each adds its pair before phase 1 reads it.
    const bool pairs = nt <= 2;

    // Scratch: activations and gradients of every layer for one batch, the lane partials.
    // da[l] is the gradient of layer l's input (B, dims_[l]). Each layer has its own: phase 1
    // has no barrier between layers, so one buffer shared by layers of different widths would
    // let a thread on one layer overwrite the rows another thread is reading on another.
    // d[l]: layer l's output after its Dropout (when it has one), the next layer's input.
    std::vector<std::vector<float>> z(L), a(L), dz(L), da(L), d(L);
    for (int l = 0; l < L; ++l) {
        const size_t n = static_cast<size_t>(Bmax * dims_[l + 1]);
        z[l].resize(n);
        a[l].resize(n);
        dz[l].resize(n);
        if (l >= 1) da[l].resize(static_cast<size_t>(Bmax * dims_[l]));
        if (has_dropout(l)) d[l].resize(n);
    }
    // The input of layer l + 1 in training.
    auto input_of = [&](int l) { return has_dropout(l) ? d[l].data() : a[l].data(); };
    std::vector<double> loss_row(static_cast<size_t>(Bmax)), correct_row(static_cast<size_t>(Bmax));
    if (static_cast<int64_t>(lane_sums_.size()) < K * Bmax * H0)
        lane_sums_.resize(static_cast<size_t>(K * Bmax * H0));
    float* P = lane_sums_.data();
    // W1's gradient (kept zero between steps) and which of its rows a step touched.
    float* G = grads_[0].data();
    if (static_cast<int64_t>(touched_flag_.size()) < D) touched_flag_.assign(static_cast<size_t>(D), 0);
    if (static_cast<int64_t>(touched_.size()) < D + nt) touched_.resize(static_cast<size_t>(D + nt));
    uint8_t* flag = touched_flag_.data();

    // Small-parameter work items: blocks of kernel rows of layers >= 1 (4 rows, the block
    // dense_backward_weight reads dz once for; all rows of a 1-wide layer, which it vectorises
    // across rows), one per bias; each thread takes a run of them of about equal cost. A row or
    // bias of width H costs about H + 10 (measured: a 16-wide row of the book's model 2.4 times
    // a 1-wide one).
    struct Task { int p; int64_t row0, row1; };
    std::vector<Task> tasks;
    // A frozen layer (trainable=False) has no tasks: no gradient, no update, as Keras leaves
    // non-trainable variables out of the optimizer.
    for (int l = 1; l < L; ++l) {
        if (!spec_.layers[l].trainable) continue;
        const int64_t step = dims_[l + 1] == 1 ? dims_[l] : 4;
        for (int64_t i = 0; i < dims_[l]; i += step)
            tasks.push_back({NetSpec::kernel(l), i, std::min(dims_[l], i + step)});
    }
    for (int l = 0; l < L; ++l)
        if (spec_.layers[l].trainable) tasks.push_back({NetSpec::bias(l), 0, 1});
    const bool train_first = spec_.layers[0].trainable;
    std::vector<int64_t> task_cost(tasks.size() + 1, 0);  // prefix sums
    for (size_t k = 0; k < tasks.size(); ++k)
        task_cost[k + 1] = task_cost[k] +
                           (tasks[k].row1 - tasks[k].row0) * (dims_[tasks[k].p / 2 + 1] + 10);
    std::vector<int64_t> task_split(static_cast<size_t>(nt) + 1);
    for (int t = 0; t <= nt; ++t)
        task_split[t] = std::lower_bound(task_cost.begin(), task_cost.end(),
                                         part(task_cost.back(), t, nt)) - task_cost.begin();

    std::vector<std::array<float*, 3>> sp(n_params());
    for (int p = 0; p < n_params(); ++p)
        for (int s = 0; s < n_slots(); ++s) sp[p][s] = slots_[p][s].data();
    const bool lazy = this->lazy();
    // Weight penalties: each step's penalty rows, computed in phase 1 from the weights before
    // the step (W1's by the owners of its rows) and added up by thread 0 in phase 2; the
    // gradient factors in float32.
    const int64_t pen_n = pen_.rows();
    const int64_t pen_w1 = spec_.penalized(0) ? D : 0;  // W1's rows come first in the table
    std::vector<double> pen_rows(static_cast<size_t>(pen_n));
    std::vector<float> pen_l1(n_params()), pen_2l2(n_params());
    for (int p = 0; p < n_params(); ++p) {
        pen_l1[p] = static_cast<float>(spec_.penalty_l1(p));
        pen_2l2[p] = static_cast<float>(2.0 * spec_.penalty_l2(p));
    }
    const int64_t it0 = iterations();
    auto batch_rows = [&](int64_t batch) { return std::min(B, N - batch * B); };

    // Phases are numbered for RegionErrors, the one way the threads leave early together: 0
    // the first gather, then 2s + 1 and 2s + 2 for step s. Three reasons to leave: a failure (an
    // allocation in a kernel's scratch) in phase p (its work void: the steps completed before
    // it count); contention, a thread that shows kBusySigns signs of sharing its cores with
    // other work in this call (times the OS preempted it, barrier waits longer than kLongWaitNs
    // and than a step's average: a partner descheduled for a slice), which asks to leave at the
    // end of a step, and train_batches finishes the call on one thread; and a short team
    // (OpenMP gave fewer threads than nt), which leaves before any work.
    cpu::Barrier barrier(nt);
    cpu::RegionErrors errors;
    const int64_t t_start = cpu::now_ns();
    // A contention sign seen at the barrier ending phase `phase`: leave at the end of that
    // step, or of the next one when the step is over (other threads may have passed its check).
    auto after_barrier = [&](int64_t waited, int64_t preempted0, int64_t& long_waits,
                             int64_t steps_so_far, int64_t phase) {
        if (nt == 1) return;
        const int64_t avg_step = (cpu::now_ns() - waited - t_start) /
                                 std::max<int64_t>(1, steps_so_far);
        long_waits += waited > kLongWaitNs && waited > avg_step;
        if (long_waits + cpu::thread_preemptions() - preempted0 < kBusySigns) return;
        errors.request_leave(phase % 2 == 1 ? phase + 1 : phase + 2);
    };
    cpu::run_region(nt, [&] {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int tid = cpu::thread_num();
        const int64_t preempted0 = cpu::thread_preemptions();
        int64_t long_waits = 0;
        if (cpu::team_size() != nt) {  // leave before any work or barrier
            errors.request_leave(-1);
        } else {
        const int k0 = K * tid / nt, k1 = K * (tid + 1) / nt;
        // the thread's slice of touched_: one slot per column of its lanes, plus the one
        // collect_flagged may write past the last
        int32_t* touched = touched_.data() + cb[tid] + tid;
        errors.guard([&] {
            if (k0 < k1)
                cpu::sparse_forward_lanes(P, xv, pos, K, order + batch_begin * B,
                                          batch_rows(batch_begin), param(0), H0, k0, k1, pairs);
        });
        after_barrier(barrier.wait(), preempted0, long_waits, 1, 0);
        for (int64_t s = 0; s < steps && !errors.leaves_after(0); ++s) {
            const int64_t batch = batch_begin + s;
            const int64_t r0 = batch * B, Bb = batch_rows(batch);  // <= Bmax
            const int64_t* rows = order + r0;
            const int64_t it = it0 + s;

            // ---- phase 1: per-row forward, loss, backward to the first layer's dz
            // (meanwhile the next batch's rows are fetched for this thread's phase 2)
            errors.guard([&] {
                const bool ahead = k0 < k1 && s + 1 < steps;
                if (ahead)
                    cpu::prefetch_lane_rows(xv, pos, K, rows + B, batch_rows(batch + 1), k0, k1, 0);
                const int64_t b0 = part(Bb, tid, nt), b1 = part(Bb, tid + 1, nt);
                if (pen_n > 0) {
                    if (pen_w1 > 0) penalty_rows(pen_rows.data() + cb[tid], cb[tid], cb[tid + 1]);
                    const int64_t q0 = pen_w1 + part(pen_n - pen_w1, tid, nt),
                                  q1 = pen_w1 + part(pen_n - pen_w1, tid + 1, nt);
                    penalty_rows(pen_rows.data() + q0, q0, q1);
                }
                cpu::lanes_sum(z[0].data(), P, param(1), H0, Bb, b0, b1, pairs);
                forward_after_first(z, a, &d, rows, it, b0, b1);
                cpu::loss_forward_backward(dz[L - 1].data(), loss_row.data(), correct_row.data(),
                                           z[L - 1].data(), a[L - 1].data(), y, sw, rows,
                                           acts_[L - 1], loss_, O, Bb, b0, b1);
                if (out)
                    std::copy_n(a[L - 1].data() + b0 * O, (b1 - b0) * O, out + (s * B + b0) * O);
                for (int l = L - 1; l >= 1; --l) {
                    const int64_t I = dims_[l], H = dims_[l + 1];
                    cpu::dense_backward_input(da[l].data(), dz[l].data(), param(NetSpec::kernel(l)), I, H, b0,
                                              b1);
                    if (has_dropout(l - 1))
                        cpu::dropout_backward(da[l].data(), rows, dropout(l - 1, it), I, b0, b1);
                    cpu::act_backward(dz[l - 1].data(), da[l].data(), z[l - 1].data(),
                                      a[l - 1].data(), acts_[l - 1], b0 * I, b1 * I);
                }
                if (ahead)
                    cpu::prefetch_lane_rows(xv, pos, K, rows + B, batch_rows(batch + 1), k0, k1, 1);
            }, 2 * s + 1);
            after_barrier(barrier.wait(), preempted0, long_waits, s + 1, 2 * s + 1);
            if (errors.leaves_after(2 * s + 1)) break;

            // ---- phase 2: gradients and updates, parameters split among threads
            errors.guard([&] {
                if (tid == 0) {
                    const double pen =
                        pen_n > 0 ? penalty_total(pen_rows.data(), pen_.counts.data(), pen_.size())
                                  : 0.0;
                    total.add_batch(loss_row.data(), correct_row.data(), Bb, pen,
                                    batch_loss ? batch_loss + s : nullptr,
                                    batch_acc ? batch_acc + s : nullptr);
                }
                if (k0 < k1 && train_first)
                    cpu::sparse_backward_scatter(G, flag, xv, pos, K, rows, Bb, dz[0].data(), H0,
                                                 k0, k1);
                const int64_t n_touched = cpu::collect_flagged(touched, flag, cb[tid], cb[tid + 1]);
                if (train_first) {  // (frozen: W1 and its slots stay as they are)
                    if (lazy) {  // the touched rows only; the others catch up when next touched
                        cpu::optimizer_update_touched(opt_, it, params_[0].data(), G, sp[0].data(),
                                                      H0, touched, n_touched, synced_.data());
                    } else {  // every row moves: a dense update of this thread's rows
                        const int64_t n0 = cb[tid] * H0, n1 = cb[tid + 1] * H0;
                        if (pen_w1 > 0)  // every row has a gradient: all are zeroed after
                            cpu::penalty_grad_add(G, param(0), pen_l1[0], pen_2l2[0], n0, n1);
                        cpu::optimizer_update(opt_, it, params_[0].data(), G, sp[0].data(), n0, n1);
                        if (pen_w1 > 0)
                            std::fill(G + n0, G + n1, 0.0f);
                        else
                            for (int64_t i = 0; i < n_touched; ++i)
                                std::fill_n(G + int64_t(touched[i]) * H0, H0, 0.0f);
                    }
                }
                if (k0 < k1 && s + 1 < steps)  // the next batch's lane partials, new weights
                    cpu::sparse_forward_lanes(P, xv, pos, K, order + (batch + 1) * B,
                                              batch_rows(batch + 1), param(0), H0, k0, k1, pairs);
                for (int64_t k = task_split[tid]; k < task_split[tid + 1]; ++k) {
                    const Task& t = tasks[k];
                    const int l = t.p / 2;
                    const int64_t H = dims_[l + 1];
                    float* g = grads_[t.p].data();
                    const int64_t n0 = t.row0 * H, n1 = t.row1 * H;  // a bias: 0, H
                    if (NetSpec::is_kernel(t.p))
                        cpu::dense_backward_weight(g, dz[l].data(), input_of(l - 1), Bb, dims_[l],
                                                   H, t.row0, t.row1);
                    else
                        cpu::bias_backward(g, dz[l].data(), Bb, H);
                    if (spec_.penalized(t.p))
                        cpu::penalty_grad_add(g, param(t.p), pen_l1[t.p], pen_2l2[t.p], n0, n1);
                    cpu::optimizer_update(opt_, it, params_[t.p].data(), g, sp[t.p].data(), n0, n1);
                }
            }, 2 * s + 2);
            after_barrier(barrier.wait(), preempted0, long_waits, s + 1, 2 * s + 2);
            if (errors.leaves_after(2 * s + 2)) break;
        }
        }
    }
    });
    // Steps done: those whose phase 2 ended at or before the phase left after, unless that
    // phase failed (then its work is void).
    const int64_t left = errors.left_after(), failed = errors.failed_at();
    if (left < 0 && failed == cpu::RegionErrors::kNone) return false;  // a short team
    const int64_t done = left == cpu::RegionErrors::kNone
                             ? steps
                             : std::min(steps, (failed == left ? left - 1 : left) / 2);
    iterations_ += done;
    errors.rethrow();
    *contended = left != cpu::RegionErrors::kNone;
    *steps_done = done;
    return true;
}

// Inference over rows [first, last) in tiles of kTile rows, work-shared among threads: each
// thread owns activation buffers for one tile, and per_tile(tile, rows, n, z, a) sees the tile's
// outputs. Tiles are fixed by the row range alone, so results do not depend on the threads.
template <class PerTile>
void Net::for_each_tile(const CSR& x, int64_t first, int64_t last, int threads,
                        PerTile&& per_tile) const {
    const int L = n_layers();
    const int64_t N = last - first;
    const CSRView xv = x.inference_view();
    const int nt = cpu::threads_for(threads, x.indptr[last] - x.indptr[first], 1 << 15);
    const int64_t n_tiles = (N + kTile - 1) / kTile;
    // Each thread's buffers for one tile, allocated here: nothing may throw inside the region.
    struct Scratch {
        std::vector<std::vector<float>> z, a;
        std::vector<int64_t> rows;
    };
    std::vector<Scratch> scratch(static_cast<size_t>(nt));
    cpu::RegionErrors errors;  // kernels' own scratch (thread_local) may still fail to grow
    for (Scratch& sc : scratch) {
        sc.z.resize(L);
        sc.a.resize(L);
        for (int l = 0; l < L; ++l) {
            sc.z[l].resize(static_cast<size_t>(kTile * dims_[l + 1]));
            sc.a[l].resize(sc.z[l].size());
        }
        sc.rows.resize(kTile);
    }
    cpu::run_region(nt, [&] {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        Scratch& sc = scratch[cpu::thread_num()];
#pragma omp for schedule(dynamic, 1)  // a call may hold only a few tiles: one at a time
        for (int64_t t = 0; t < n_tiles; ++t) {
            if (errors.leaves_after(0)) continue;
            errors.guard([&] {
                const int64_t r0 = t * kTile, n = std::min(kTile, N - r0);
                for (int64_t j = 0; j < n; ++j) sc.rows[j] = first + r0 + j;
                forward_rows(sc.z, sc.a, xv, sc.rows.data(), 0, n);
                per_tile(t, sc.rows.data(), n, sc.z, sc.a);
            });
        }
    }
    });
    errors.rethrow();
}

void Net::predict(float* out, const CSR& x, int64_t first, int64_t last, int threads) const {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const int L = n_layers();
    const int64_t O = dims_[L];
    for_each_tile(x, first, last, threads,
                  [&](int64_t t, const int64_t*, int64_t n, auto&, auto& a) {
                      std::copy_n(a[L - 1].data(), n * O, out + t * kTile * O);
                  });
}

Stats Net::evaluate(const CSR& x, const float* y, const float* sw, int64_t first, int64_t last,
                    int threads) const {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    const int L = n_layers();
    const int64_t O = dims_[L];
    const int64_t n_tiles = (last - first + kTile - 1) / kTile;
    // Per-tile partial sums, added in tile order afterwards: fixed order for any thread count.
    std::vector<Stats> tiles(static_cast<size_t>(n_tiles));
    for_each_tile(x, first, last, threads,
                  [&](int64_t t, const int64_t* rows, int64_t n, auto& z, auto& a) {
                      double lr[kTile], cr[kTile];
                      cpu::loss_forward(lr, cr, z[L - 1].data(), a[L - 1].data(), y, sw, rows,
                                        acts_[L - 1], loss_, O, 0, n);
                      tiles[t].add_batch(lr, cr, n, 0.0, nullptr, nullptr);
                  });
    Stats st;
    for (const Stats& t : tiles) {
        st.loss_sum += t.loss_sum;
        st.correct_sum += t.correct_sum;
    }
    st.rows = last - first;
    // Keras adds the weight penalty to each batch's loss (training or not): n * penalty here.
    st.loss_sum += static_cast<double>(st.rows) * penalty();
    return st;
}

}  // namespace imdbfast
