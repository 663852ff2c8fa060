// sparse_grad.h: the gradient of the sparse first layer's weights, as a template that hands each
// gradient row to a consumer. Included by layers.cpp (sparse_backward_weight: rows to a buffer)
// and optimizers.cpp (sparse_backward_update: rows straight into the optimizer), so the
// algorithm exists once and the training loop never writes the gradient to memory.
//
// Method: the batch's non-zeros come sorted by column (sort_by_column, layers.cpp: count, find
// the columns present, place each non-zero's batch row in its column's group, batch rows
// ascending); then one sum per column over its group. The random accesses go to dz (B, H)
// rather than a D x H gradient, and each column's sum runs over batch rows in ascending order
// whatever the column split, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels.h"

namespace imdbfast {
namespace cpu {

// acc = sum over j in [start, end) of val_j * dz[ent[j]]  (val_j = 1 when vals is null), in a
// fixed order: entry j goes to partial sum (j - start) % 4, combined as (p0 + p1) + (p2 + p3),
// so that a frequent column's long group is four independent add chains rather than one.
// Groups of up to four entries (most columns: rare words) are summed directly in that same
// order, without zeroing and combining four partials.
template <int HC>
inline void sum_group(float* __restrict acc, const float* __restrict dz, const int32_t* ent,
                      const float* vals, int64_t start, int64_t end, int64_t Hrt) {
    const int64_t H = HC > 0 ? HC : Hrt;
    constexpr int64_t kW = HC > 0 ? HC : 64;
    const int64_t n = end - start;
    auto row = [&](int64_t j) { return dz + int64_t(ent[j]) * H; };
    auto val = [&](int64_t j) { return vals ? vals[j] : 1.0f; };
    // Each size and each partial sum is spelled out: indexing the partials by j % 4 at run time
    // keeps them in memory (a store-to-load chain per term), and a loop testing n per element
    // compiles to per-lane inserts.
    if (n <= 4) {
        const float* d0 = row(start);
        const float* d1 = row(start + (n > 1 ? 1 : 0));
        const float* d2 = row(start + (n > 2 ? 2 : 0));
        const float* d3 = row(start + (n > 3 ? 3 : 0));
        const float v0 = val(start), v1 = val(start + (n > 1 ? 1 : 0)),
                    v2 = val(start + (n > 2 ? 2 : 0)), v3 = val(start + (n > 3 ? 3 : 0));
        if (vals) {
            if (n == 1)
                for (int64_t h = 0; h < H; ++h) acc[h] = v0 * d0[h];
            else if (n == 2)
                for (int64_t h = 0; h < H; ++h) acc[h] = v0 * d0[h] + v1 * d1[h];
            else if (n == 3)
                for (int64_t h = 0; h < H; ++h) acc[h] = (v0 * d0[h] + v1 * d1[h]) + v2 * d2[h];
            else
                for (int64_t h = 0; h < H; ++h)
                    acc[h] = (v0 * d0[h] + v1 * d1[h]) + (v2 * d2[h] + v3 * d3[h]);
        } else if (n == 1) {
            for (int64_t h = 0; h < H; ++h) acc[h] = d0[h];
        } else if (n == 2) {
            for (int64_t h = 0; h < H; ++h) acc[h] = d0[h] + d1[h];
        } else if (n == 3) {
            for (int64_t h = 0; h < H; ++h) acc[h] = (d0[h] + d1[h]) + d2[h];
        } else {
            for (int64_t h = 0; h < H; ++h) acc[h] = (d0[h] + d1[h]) + (d2[h] + d3[h]);
        }
        return;
    }
    for (int64_t h0 = 0; h0 < H; h0 += kW) {
        const int64_t w = std::min<int64_t>(kW, H - h0);
        float p0[kW], p1[kW], p2[kW], p3[kW];
        {
            const float *d0 = row(start) + h0, *d1 = row(start + 1) + h0,
                        *d2 = row(start + 2) + h0, *d3 = row(start + 3) + h0;
            const float v0 = val(start), v1 = val(start + 1), v2 = val(start + 2),
                        v3 = val(start + 3);
            for (int64_t h = 0; h < w; ++h) {
                p0[h] = vals ? v0 * d0[h] : d0[h];
                p1[h] = vals ? v1 * d1[h] : d1[h];
                p2[h] = vals ? v2 * d2[h] : d2[h];
                p3[h] = vals ? v3 * d3[h] : d3[h];
            }
        }
        int64_t j = start + 4;
        for (; j + 4 <= end; j += 4) {
            const float *d0 = row(j) + h0, *d1 = row(j + 1) + h0, *d2 = row(j + 2) + h0,
                        *d3 = row(j + 3) + h0;
            if (vals) {
                const float v0 = vals[j], v1 = vals[j + 1], v2 = vals[j + 2], v3 = vals[j + 3];
                for (int64_t h = 0; h < w; ++h) {
                    p0[h] += v0 * d0[h];
                    p1[h] += v1 * d1[h];
                    p2[h] += v2 * d2[h];
                    p3[h] += v3 * d3[h];
                }
            } else {
                for (int64_t h = 0; h < w; ++h) {
                    p0[h] += d0[h];
                    p1[h] += d1[h];
                    p2[h] += d2[h];
                    p3[h] += d3[h];
                }
            }
        }
        // the last 0-3 terms continue the cycle: p0, p1, p2
        auto add = [&](float* p, int64_t k) {
            const float* d = row(k) + h0;
            const float v = val(k);
            for (int64_t h = 0; h < w; ++h) p[h] += vals ? v * d[h] : d[h];
        };
        if (j < end) add(p0, j);
        if (j + 1 < end) add(p1, j + 1);
        if (j + 2 < end) add(p2, j + 2);
        for (int64_t h = 0; h < w; ++h) acc[h0 + h] = (p0[h] + p1[h]) + (p2[h] + p3[h]);
    }
}

// The gradient rows of W1 for columns [c0, c1) (see sparse_backward_weight in kernels.h), handed
// one at a time, columns ascending, to sink(column, const float* row of H floats): the row lives
// in registers or scratch only until sink returns. sink.prefetch(column) is told a few columns
// ahead, so that a sink touching memory per column can start loading it.
template <int HC, class Sink>
void sparse_grad_rows(Sink&& sink, const ColumnSort& s, const float* dz, int64_t Hrt, int64_t c0,
                      int64_t c1) {
    const int64_t H = HC > 0 ? HC : Hrt;
    auto by_col = [](const ColumnGroup& g, int64_t c) { return g.col < c; };
    const ColumnGroup* first = std::lower_bound(s.groups, s.groups + s.n_groups, c0, by_col);
    const ColumnGroup* last = std::lower_bound(first, s.groups + s.n_groups, c1, by_col);
    const int64_t n = last - first;
    int64_t start = first == s.groups ? 0 : first[-1].end;
    thread_local std::vector<float> row;  // one gradient row, for widths not specialised
    if (HC == 0 && static_cast<int64_t>(row.size()) < H) row.resize(static_cast<size_t>(H));
    constexpr int64_t kAhead = 8;
    for (int64_t t = 0; t < n; ++t) {
        if (t + kAhead < n) sink.prefetch(first[t + kAhead].col);
        const int64_t end = first[t].end;
        float g[HC > 0 ? HC : 1] = {};  // a register block for the specialised widths
        float* acc = g;
        if constexpr (HC == 0) acc = row.data();
        sum_group<HC>(acc, dz, s.ent, s.vals, start, end, H);
        sink(first[t].col, static_cast<const float*>(acc));
        start = end;
    }
}

}  // namespace cpu
}  // namespace imdbfast
