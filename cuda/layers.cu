// layers.cu: the GPU's dense layers, activations and the sparse first layer (contract in kernels.cuh). Each kernel is one parallel_for
// over the output elements with the element's math from cpp/common.h, so every output element
// is computed in the CPU's summation order: no floating-point atomics, and the results are the
// same run to run. The long sums that are four partial sums (the sparse gather, the weight and
// bias gradients) are parallel_sum4s: a thread per partial, combined within the quad, the same
// bits. The sparse layer's gradient is four partials too (common.h's group_part), where the
// CPU's scatter is one chain: equal to rounding. The CPU's counterpart: cpp/layers.cpp.
#include "kernels.cuh"

namespace imdbfast {
namespace gpu {

void sparse_forward(float* z, float* a, int act, const CSRView& x, const int64_t* rows,
                    int64_t first, const float* W, const float* bias, int64_t H, int64_t B) {
    const int64_t* indptr = x.indptr;
    const int32_t* indices = x.indices;
    const float* values = x.values;
    auto part = [=] IMDBFAST_HD(int64_t i, int j) {
        const int64_t b = i / H, h = i % H;
        const int64_t r = rows ? rows[b] : first + b;
        const int64_t s = indptr[r];
        return gather_part(indices + s, values ? values + s : nullptr, indptr[r + 1] - s, W, H, h, j);
    };
    parallel_sum4(B * H, part, [=] IMDBFAST_HD(int64_t i, float sum) {
        const float v = sum + bias[i % H];  // gather_sum's formula
        z[i] = v;
        a[i] = activate(act, v);
    });
}

void dense_forward(float* z, float* a, int act, const float* x, const float* W, const float* bias,
                   int64_t I, int64_t H, int64_t B) {
    parallel_for(B * H, [=] IMDBFAST_HD(int64_t i) {
        const int64_t b = i / H, h = i % H;
        const float v = dense_sum(x + b * I, W, I, H, h, bias[h]);
        z[i] = v;
        a[i] = activate(act, v);
    });
}

void act_forward(float* a, const float* z, int act, int64_t n) {
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) { a[i] = activate(act, z[i]); });
}

void act_backward(float* dz, const float* da, const float* z, const float* a, int act, int64_t n) {
    parallel_for(n, [=] IMDBFAST_HD(int64_t i) { dz[i] = activate_grad(act, da[i], z[i], a[i]); });
}

void softmax_forward(float* a, const float* z, int64_t H, int64_t B) {
    parallel_for(B, [=] IMDBFAST_HD(int64_t b) { softmax_row(a + b * H, z + b * H, H); });
}

void dropout_forward(float* d, const float* a, const int64_t* rows, int64_t first,
                     const DropoutStep& s, int64_t H, int64_t B) {
    const DropoutStep st = s;
    parallel_for(B * H, [=] IMDBFAST_HD(int64_t k) {
        const int64_t b = k / H, h = k % H;
        const uint64_t key = dropout_row_key(st, rows ? rows[b] : first + b);
        d[k] = dropout_apply(a[k], dropout_keep(key, h, st.threshold), st.keep_prob);
    });
}

void dropout_backward(float* g, const int64_t* rows, int64_t first, const DropoutStep& s,
                      int64_t H, int64_t B) {
    dropout_forward(g, g, rows, first, s, H, B);  // the same mask and scale, in place
}

void dense_backward_input(float* dz_prev, const float* dz, const float* W, const float* z_prev,
                    const float* a_prev, int act_prev, int64_t I, int64_t H, int64_t B) {
    parallel_for(B * I, [=] IMDBFAST_HD(int64_t k) {
        const int64_t b = k / I, i = k % I;
        const float da = input_grad_sum(dz + b * H, W, H, i);
        dz_prev[k] = activate_grad(act_prev, da, z_prev[k], a_prev[k]);
    });
}

void dense_backward_weight(float* dW, const float* dz, const float* x, int64_t B, int64_t I, int64_t H) {
    parallel_sum4(I * H, [=] IMDBFAST_HD(int64_t k, int j) {
        return batch_part(dz, x, B, I, k / H, H, k % H, j);
    }, [=] IMDBFAST_HD(int64_t k, float sum) { dW[k] = sum; });
}

void bias_backward(float* db, const float* dz, int64_t B, int64_t H) {
    parallel_sum4(H, [=] IMDBFAST_HD(int64_t h, int j) {
        return batch_part(dz, nullptr, B, 1, 0, H, h, j);
    }, [=] IMDBFAST_HD(int64_t h, float sum) { db[h] = sum; });
}

void small_grads(float* G, const int64_t* offsets, const int64_t* dims, float* const* dz,
                 float* const* a, int L, int64_t first, int64_t last, int64_t B) {
    parallel_sum4(last - first, [=] IMDBFAST_HD(int64_t k, int j) {
        const int64_t e = first + k;
        int p = 1;
        while (p + 1 < 2 * L && offsets[p + 1] <= e) ++p;  // 2L - 1 parameters at most
        const int l = p / 2;
        const int64_t H = dims[l + 1], off = e - offsets[p];
        return p % 2 == 0 ? batch_part(dz[l], a[l - 1], B, dims[l], off / H, H, off % H, j)
                          : batch_part(dz[l], nullptr, B, 1, 0, H, off, j);
    }, [=] IMDBFAST_HD(int64_t k, float sum) { G[first + k] = sum; });
}

std::atomic<bool>& fuse_small_layers() {
    static std::atomic<bool> on{true};
    return on;
}

void small_layers_step(const SmallLayers& net, double* loss_row, double* correct_row,
                       const float* y, const float* sw, const int64_t* rows, int loss, int64_t B) {
    const SmallLayers s = net;  // captured by value: the kernel's parameter
    parallel_for(B, [=] IMDBFAST_HD(int64_t b) {
        const int L = s.L;
        if (s.acts[0] == ACT_SOFTMAX)  // a softmax output straight after the sparse layer
            softmax_row(s.a[0] + b * s.dims[1], s.z[0] + b * s.dims[1], s.dims[1]);
        for (int l = 1; l < L; ++l) {  // dense_forward, softmax_forward
            const int64_t I = s.dims[l], H = s.dims[l + 1];
            const float* in = s.a[l - 1] + b * I;
            float* z = s.z[l] + b * H;
            float* a = s.a[l] + b * H;
            for (int64_t h = 0; h < H; ++h) {
                const float v = dense_sum(in, s.W[l], I, H, h, s.bias[l][h]);
                z[h] = v;
                a[h] = activate(s.acts[l], v);
            }
            if (s.acts[l] == ACT_SOFTMAX) softmax_row(a, z, H);
        }
        const int64_t O = s.dims[L], r = rows[b];  // loss_forward_backward
        row_loss<true>(s.dz[L - 1] + b * O, loss_row + b, correct_row + b, s.z[L - 1] + b * O,
                       s.a[L - 1] + b * O, y + r * O, sw ? sw[r] : 1.0f, s.acts[L - 1], loss, O, B);
        for (int l = L - 1; l >= 1; --l) {  // dense_backward_input
            const int64_t I = s.dims[l], H = s.dims[l + 1];
            for (int64_t i = 0; i < I; ++i) {
                const int64_t k = b * I + i;
                s.dz[l - 1][k] = activate_grad(s.acts[l - 1], input_grad_sum(s.dz[l] + b * H, s.W[l], H, i),
                                               s.z[l - 1][k], s.a[l - 1][k]);
            }
        }
    });
}

// ---- the sparse first layer's gradient: the epoch index -------------------------------------

void build_epoch_index(EpochIndex& ix, Scratch& s, const CSRView& x, const int64_t* order,
                       int64_t N, int64_t B) {
    const int64_t D = x.n_cols;
    ix.N = N;
    ix.B = B;
    ix.n_batches = N == 0 ? 0 : 1 + (N - 1) / B;
    const int64_t n_batches = ix.n_batches;
    // 1. each epoch position's first non-zero: a prefix sum of the row lengths in epoch order
    ix.eptr.resize(N + 1);
    int64_t* eptr = ix.eptr.data();
    const int64_t* indptr = x.indptr;
    parallel_for(N + 1, [=] IMDBFAST_HD(int64_t p) {
        eptr[p] = p < N ? indptr[order[p] + 1] - indptr[order[p]] : 0;
    });
    exclusive_sum(s, eptr, eptr, N + 1);
    const int64_t nnz = read_one(eptr + N);
    if (nnz > INT32_MAX)
        throw std::length_error("x: more than 2**31 - 1 non-zeros in one epoch; the GPU path "
                                "indexes them with int32");
    ix.nnz = nnz;
    // 2. key every non-zero by (batch, column); batch * D + column < n_batches * D
    int bits = 1;
    while (bits < 64 && (uint64_t(1) << bits) < static_cast<uint64_t>(n_batches * D)) ++bits;
    ix.keys.resize(nnz);
    ix.sorted_keys.resize(nnz);
    ix.ids.resize(nnz);
    ix.sorted_ids.resize(nnz);
    ix.pos.resize(nnz);
    ix.has_values = x.values != nullptr;
    if (x.values) ix.vals.resize(nnz);
    uint64_t* keys = ix.keys.data();
    int32_t* ids = ix.ids.data();
    int32_t* pos = ix.pos.data();
    float* vals = x.values ? ix.vals.data() : nullptr;
    const int32_t* indices = x.indices;
    const float* values = x.values;
    parallel_for(N, [=] IMDBFAST_HD(int64_t p) {
        const int64_t r = order[p], src = indptr[r], len = indptr[r + 1] - src;
        const uint64_t base = static_cast<uint64_t>(p / B) * static_cast<uint64_t>(D);
        for (int64_t k = 0; k < len; ++k) {
            const int64_t e = eptr[p] + k;
            keys[e] = base + static_cast<uint64_t>(indices[src + k]);
            ids[e] = static_cast<int32_t>(e);
            pos[e] = static_cast<int32_t>(p);
            if (vals) vals[e] = values[src + k];
        }
    });
    // 3. the stable sort keeps each group in epoch order, i.e. batch rows ascending
    sort_pairs(s, keys, ix.sorted_keys.data(), ids, ix.sorted_ids.data(), nnz, bits);
    // 4. groups: starts flagged, numbered by a prefix sum, their first entries recorded
    ix.heads.resize(nnz + 1);
    int64_t* heads = ix.heads.data();
    const uint64_t* sk = ix.sorted_keys.data();
    parallel_for(nnz + 1, [=] IMDBFAST_HD(int64_t i) {
        heads[i] = i < nnz && (i == 0 || sk[i] != sk[i - 1]) ? 1 : 0;
    });
    // group_start needs the flags after the sum turns them into numbers: flag = next - this
    exclusive_sum(s, heads, heads, nnz + 1);
    const int64_t n_groups = read_one(heads + nnz);
    ix.n_groups = n_groups;
    ix.group_start.resize(n_groups + 1);
    int64_t* gs = ix.group_start.data();
    parallel_for(nnz + 1, [=] IMDBFAST_HD(int64_t i) {
        if (i == nnz) gs[n_groups] = nnz;
        else if (heads[i + 1] != heads[i]) gs[heads[i]] = i;
    });
    // 5. each batch's first group: group g's batch is key / D; batches without non-zeros get
    //    an empty range
    ix.batch_group.resize(n_batches + 1);
    int64_t* bg = ix.batch_group.data();
    parallel_for(n_groups + 1, [=] IMDBFAST_HD(int64_t g) {
        const int64_t b = g < n_groups ? static_cast<int64_t>(sk[gs[g]] / D) : n_batches;
        const int64_t prev = g == 0 ? -1 : static_cast<int64_t>(sk[gs[g - 1]] / D);
        for (int64_t k = prev + 1; k <= b; ++k) bg[k] = g;
    });
    ix.host_batch_group.resize(static_cast<size_t>(n_batches + 1));
    copy_to_host(ix.host_batch_group.data(), bg, n_batches + 1);
}

void sparse_backward_weight(float* G, const EpochIndex& ix, int64_t batch, const float* dz1,
                        int64_t D, int64_t H) {
    const int64_t g0 = ix.host_batch_group[batch], n = ix.host_batch_group[batch + 1] - g0;
    const int64_t p0 = batch * ix.B;
    const int64_t* gs = ix.group_start.data();
    const uint64_t* sk = ix.sorted_keys.data();
    const int32_t* sid = ix.sorted_ids.data();
    const int32_t* pos = ix.pos.data();
    const float* ev = ix.has_values ? ix.vals.data() : nullptr;
    parallel_sum4(n * H, [=] IMDBFAST_HD(int64_t k, int j) {
        const int64_t g = g0 + k / H, h = k % H;
        const int64_t start = gs[g], len = gs[g + 1] - start;
        auto term = [=](int64_t i) {  // inherits the kernel's execution space
            const int32_t e = sid[start + i];
            const float d = dz1[(static_cast<int64_t>(pos[e]) - p0) * H + h];
            return ev ? ev[e] * d : d;
        };
        return group_part(term, len, j);
    }, [=] IMDBFAST_HD(int64_t k, float sum) {
        const int64_t col = static_cast<int64_t>(sk[gs[g0 + k / H]] % static_cast<uint64_t>(D));
        G[col * H + k % H] = sum;
    });
}

}  // namespace gpu
}  // namespace imdbfast
