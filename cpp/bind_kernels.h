// bind_kernels.h: the single-kernel functions of a backend module (multi_hot, sparse_forward,
// ..., optimizer_update), defined once for _core, _cuda and _cuda_sim: argument checks, output
// arrays, names and docstrings live here, and each module supplies only the compute, as a struct
// K of static functions on host pointers (the CPU calls its kernels; the GPU modules copy in,
// launch and copy out). The tests run the same calls on every backend.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "bind_util.h"

namespace imdbfast {
namespace bind {

// An elementwise activation (softmax is a row's: softmax_forward).
inline int elementwise_act(const std::string& name) {
    const int k = parse_act(name);
    if (k == ACT_SOFTMAX)
        throw py::value_error("activation: softmax is a row's function; use softmax_forward");
    return k;
}

template <class K>
void def_kernels(py::module_& m) {
    m.def("multi_hot", [](py::array tokens, py::array offsets, int64_t n_cols, int threads) {
        positive_dim(n_cols, "num_words");
        const Ragged rg = check_ragged(tokens, offsets);
        py::gil_scoped_release nogil;
        return std::make_shared<CSR>(K::multi_hot(rg, n_cols, threads));
    }, py::arg("tokens"), py::arg("offsets"), py::arg("num_words"), py::arg("threads") = 0,
       "Multi-hot CSR (N, num_words) of ragged sequences given as flat int32 tokens + int64 offsets.");

    m.def("sparse_forward", [](const CSR& x, py::array rows, py::array W, py::array b) {
        const FirstLayerArgs f = check_first_layer(x, rows, W, b);
        py::array_t<float> z({f.B, f.H});
        float* zp = z.mutable_data();
        py::gil_scoped_release nogil;
        K::sparse_forward(zp, x, f.rows, f.B, f.W, f.b, f.H);
        return z;
    }, py::arg("x"), py::arg("rows"), py::arg("W"), py::arg("b"));

    m.def("dense_forward", [](py::array x, py::array W, py::array b) {
        const int64_t B = x.ndim() == 2 ? x.shape(0) : -1, I = x.ndim() == 2 ? x.shape(1) : -1;
        const float* xp = check<float>(x, "x", {B, I});
        const int64_t H = W.ndim() == 2 ? W.shape(1) : -1;
        const float* w = check<float>(W, "W", {I, H});
        const float* bb = check<float>(b, "b", {H});
        py::array_t<float> z({B, H});
        float* zp = z.mutable_data();
        py::gil_scoped_release nogil;
        K::dense_forward(zp, xp, w, bb, B, I, H);
        return z;
    }, py::arg("x"), py::arg("W"), py::arg("b"));

    m.def("act_forward", [](py::array z, const std::string& act) {
        const int64_t n = z.size();
        const float* zp = check<float>(z, "z", {n});
        py::array_t<float> a(n);
        float* ap = a.mutable_data();
        const int k = elementwise_act(act);
        py::gil_scoped_release nogil;
        K::act_forward(ap, zp, k, n);
        return a;
    }, py::arg("z"), py::arg("activation"));

    m.def("softmax_forward", [](py::array z) {
        const int64_t B = z.ndim() == 2 ? z.shape(0) : -1, H = z.ndim() == 2 ? z.shape(1) : -1;
        const float* zp = check<float>(z, "z", {B, H});
        if (H < 1) throw py::value_error("z: needs at least one column");
        py::array_t<float> a({B, H});
        float* ap = a.mutable_data();
        py::gil_scoped_release nogil;
        K::softmax_forward(ap, zp, H, B);
        return a;
    }, py::arg("z"), "Softmax of each row of z (B, H).");

    m.def("act_backward", [](py::array da, py::array z, py::array a, const std::string& act) {
        const int64_t n = z.size();
        const float* dap = check<float>(da, "da", {n});
        const float* zp = check<float>(z, "z", {n});
        const float* ap = check<float>(a, "a", {n});
        py::array_t<float> dz(n);
        float* dzp = dz.mutable_data();
        const int k = elementwise_act(act);
        py::gil_scoped_release nogil;
        K::act_backward(dzp, dap, zp, ap, k, n);
        return dz;
    }, py::arg("da"), py::arg("z"), py::arg("a"), py::arg("activation"));

    m.def("dropout", [](py::array a, py::array rows, py::object seed, double rate,
                        py::object step) {
        const int64_t B = a.ndim() == 2 ? a.shape(0) : -1, H = a.ndim() == 2 ? a.shape(1) : -1;
        const float* ap = check<float>(a, "a", {B, H});
        const int64_t* rp = check<int64_t>(rows, "rows", {B});
        if (!(rate >= 0.0 && rate < 1.0)) throw py::value_error("rate: must be in [0, 1)");
        const DropoutStep s = dropout_step(
            static_cast<uint64_t>(int_arg(seed, "seed", 0, INT64_MAX)), rate,
            int_arg(step, "step", 0, INT64_MAX));
        py::array_t<float> d({B, H});
        float* dp = d.mutable_data();
        py::gil_scoped_release nogil;
        K::dropout_forward(dp, ap, rp, s, H, B);
        return d;
    }, py::arg("a"), py::arg("rows"), py::arg("seed"), py::arg("rate"), py::arg("step"),
       "Training dropout of a (B, H) whose batch row b is data row rows[b], at optimizer step "
       "`step`: a / (1 - rate) where kept, else 0 (the backward applies the same mask).");

    m.def("dense_backward", [](py::array dz, py::array x, py::array W) {
        const int64_t B = dz.ndim() == 2 ? dz.shape(0) : -1, H = dz.ndim() == 2 ? dz.shape(1) : -1;
        const float* dzp = check<float>(dz, "dz", {B, H});
        const int64_t I = x.ndim() == 2 ? x.shape(1) : -1;
        const float* xp = check<float>(x, "x", {B, I});
        const float* w = check<float>(W, "W", {I, H});
        py::array_t<float> dx({B, I}), dW({I, H}), db(H);
        float *dxp = dx.mutable_data(), *dWp = dW.mutable_data(), *dbp = db.mutable_data();
        {
            py::gil_scoped_release nogil;
            K::dense_backward(dxp, dWp, dbp, dzp, xp, w, B, I, H);
        }
        return py::make_tuple(dx, dW, db);
    }, py::arg("dz"), py::arg("x"), py::arg("W"), "Returns (dx, dW, db).");

    m.def("sparse_backward", [](py::array dz, const CSR& x, py::array rows, int parts) {
        const int64_t B = rows.ndim() == 1 ? rows.shape(0) : -1;
        const int64_t* r = check<int64_t>(rows, "rows", {B});
        check_rows(r, B, x.n_rows, "rows");
        const int64_t H = dz.ndim() == 2 ? dz.shape(1) : -1;
        const float* dzp = check<float>(dz, "dz", {B, H});
        if (parts < 1) throw std::invalid_argument("parts: must be >= 1");
        std::vector<int64_t> touched;
        std::vector<float> g;
        {
            py::gil_scoped_release nogil;
            K::sparse_backward(touched, g, dzp, x, r, B, H, parts);
        }
        const auto n = static_cast<py::ssize_t>(touched.size());
        return py::make_tuple(vector_to_array(std::move(touched), {n}),
                              vector_to_array(std::move(g), {n, static_cast<py::ssize_t>(H)}));
    }, py::arg("dz"), py::arg("x"), py::arg("rows"), py::arg("parts") = 1,
       "Returns (the W1 rows the batch touches, ascending, and their gradient rows); `parts` "
       "splits the columns among that many calls (the CPU's threads), which must not matter.");

    m.def("loss_forward_backward", [](py::array z, py::array a, py::array y, py::object sw,
                                      const std::string& last_act, const std::string& loss) {
        const int64_t B = z.ndim() == 2 ? z.shape(0) : -1, O = z.ndim() == 2 ? z.shape(1) : -1;
        const float* zp = check<float>(z, "z", {B, O});
        const float* ap = check<float>(a, "a", {B, O});
        const float* yp = check<float>(y, "y", {B, O});
        const float* swp = sw.is_none() ? nullptr : check<float>(ndarray_arg(sw, "sample_weight"), "sample_weight", {B});
        const int act = parse_act(last_act), lk = parse_loss(loss);
        if (lk == LOSS_BCE_LOGITS && act != ACT_SIGMOID)
            throw std::invalid_argument("loss: 'bce_logits' needs a sigmoid output layer");
        if (lk == LOSS_CCE_LOGITS && act != ACT_SOFTMAX)
            throw std::invalid_argument("loss: 'cce_logits' needs a softmax output layer");
        py::array_t<float> dz({B, O});
        py::array_t<double> lr(B), cr(B);
        float* dzp = dz.mutable_data();
        double *lrp = lr.mutable_data(), *crp = cr.mutable_data();
        {
            py::gil_scoped_release nogil;
            K::loss_forward_backward(dzp, lrp, crp, zp, ap, yp, swp, act, lk, B, O);
        }
        return py::make_tuple(dz, lr, cr);
    }, py::arg("z"), py::arg("a"), py::arg("y"), py::arg("sample_weight"), py::arg("last_activation"),
       py::arg("loss"), "Returns (dz, per-row weighted loss, per-row accuracy).");

    m.def("optimizer_update", [](const std::string& kind, int64_t iteration, py::array w,
                                 py::array g, py::list slots, double learning_rate, double rho,
                                 double momentum, double epsilon, double beta_1, double beta_2,
                                 bool centered, bool nesterov, bool amsgrad) {
        auto c = parse_optimizer(kind, learning_rate, rho, momentum, epsilon, beta_1, beta_2,
                                 centered, nesterov, amsgrad);
        const int64_t n = w.size();
        float* wp = check<float>(w, "w", {n}, true);
        const float* gp = check<float>(g, "g", {n});
        if (static_cast<int>(slots.size()) != cpu::optimizer_num_slots(c))
            throw std::invalid_argument("slots: this optimizer needs " +
                                        std::to_string(cpu::optimizer_num_slots(c)));
        auto sp = slot_ptrs(slots, "slots", n);
        py::gil_scoped_release nogil;
        K::optimizer_update(c, iteration, wp, gp, sp.data(), n);
    }, py::arg("kind"), py::arg("iteration"), py::arg("w"), py::arg("g"), py::arg("slots"),
       py::arg("learning_rate"), py::arg("rho") = 0.9, py::arg("momentum") = 0.0,
       py::arg("epsilon") = 1e-7, py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999,
       py::arg("centered") = false, py::arg("nesterov") = false, py::arg("amsgrad") = false,
       "One optimizer step in place on flat float32 arrays.");
}

}  // namespace bind
}  // namespace imdbfast
