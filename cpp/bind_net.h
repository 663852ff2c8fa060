// bind_net.h: the Net class of a backend module, defined once for _core, _cuda and _cuda_sim
// (as bind_kernels.h defines the single kernels). Every method checks its arguments here with
// bind_util.h's checks; the backend supplies its Net (cpp/net.h or cuda/net.cuh, which share
// one interface) and an `Io` struct that turns Python arguments into that Net's inputs:
//
//   Io::Data                   what the Net trains on (a held CSR, or one on the device)
//   Io::data(n, x)             x as Data, refusing other types and a wrong width
//   Io::rows(d)                its row count
//   Io::Labels                 y (N, O) and sample weights (N) or null, kept alive for the call
//   Io::labels(n, d, y, sw)    checked Labels
//
// Each module defines its constructor and what only it has (the device, predict_to).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "bind_util.h"
#include "net.h"  // Stats

namespace imdbfast {
namespace bind {

// x's width against the model's input dimension: the same message for every backend.
inline void check_width(int64_t n_cols, int64_t input_dim) {
    if (n_cols != input_dim)
        throw std::invalid_argument("x: has " + std::to_string(n_cols) +
                                    " columns, the model's input dimension is " +
                                    std::to_string(input_dim));
}

template <class N, class Io>
void def_net(py::class_<N, std::shared_ptr<N>>& c) {
    using Mutex = std::remove_reference_t<decltype(std::declval<const N&>().mutex())>;
    using Read = std::shared_lock<Mutex>;
    using Write = std::unique_lock<Mutex>;

    // The parameters and the slots as new arrays; the caller holds the lock.
    auto weights = [](const N& n) {
        return weights_list(n, [&](int p, float* out) { n.get_param(p, out); });
    };
    auto stored_slots = [](const N& n) {
        return slots_list(n, [&](int p, int s, float* out) { n.get_slot(p, s, out); });
    };

    c.def_property_readonly("dims", [](const N& n) { return n.dims(); },
                            "The input dimension, then each layer's units.")
        .def_property_readonly("n_slots", &N::n_slots)
        .def_property_readonly("slot_names", [](const N& n) { return n.slot_layout().names(); },
                               "The optimizer's slots per parameter, in order, by Keras's names.")
        .def_property("iterations", &N::iterations, [](N& n, py::object v) {
            const int64_t it = int_arg(v, "iterations", 0, INT64_MAX);
            Write lock(n.mutex());
            n.set_iterations(it);
        })
        .def_property("learning_rate", [](const N& n) { return n.spec().optimizer.learning_rate; },
                      [](N& n, py::object v) {
            const double lr = float_arg(v, "learning_rate");
            if (!std::isfinite(lr) || lr < 0)
                throw std::invalid_argument("learning_rate: must be finite and >= 0, got " +
                                            std::string(py::repr(v)));
            Write lock(n.mutex());
            n.set_learning_rate(lr);
        }, "The optimizer's learning rate for the next steps.")
        .def("get_weights", [weights](const N& n) {
            Read lock(n.mutex());
            return weights(n);
        }, "Copies of [kernel_1 (I, H), bias_1 (H), ...] in Keras's order.")
        .def("set_weights", [](N& n, py::list ws) {
            const auto src = check_weights(ws, n.spec());
            Write lock(n.mutex());
            for (int p = 0; p < n.n_params(); ++p) n.set_param(p, src[p]);
        })
        .def("get_slots", [](const N& n) {
            Read lock(n.mutex());
            const auto first = n.first_slots_now();
            return slots_list(n, [&](int p, int s, float* out) {
                if (p == 0) std::copy_n(first[s].data(), n.param_size(p), out);
                else n.get_slot(p, s, out);
            });
        }, "Optimizer slots, brought up to date: [[slot arrays of param 0], ...], flat.")
        .def("state", [weights, stored_slots](const N& n) {
            Read lock(n.mutex());
            py::object synced = py::none();
            if (n.lazy())
                synced = py::array_t<int64_t>(static_cast<py::ssize_t>(n.synced().size()),
                                              n.synced().data());
            return py::make_tuple(weights(n), stored_slots(n), synced, n.iterations());
        }, "The exact training state of one moment (between two training calls): (weights, "
           "slots as stored, synced, iterations). With a lazy optimizer W1's rows r are current "
           "through step synced[r] (else synced is None); set_state restores it bit for bit.")
        .def("set_state", [](N& n, py::list ws, py::list slots, py::object synced,
                             py::object iters) {
            const auto w = check_weights(ws, n.spec());
            const auto src = check_slots(slots, n.spec());
            const int64_t iterations = int_arg(iters, "iterations", 0, INT64_MAX);
            const int64_t* sy = nullptr;
            if (!synced.is_none()) {
                const int64_t D = n.spec().input_dim;
                sy = check<int64_t>(ndarray_arg(synced, "synced"), "synced", {D});
                check_synced(sy, D, iterations);
                // (either backend takes a lazy CPU state; a penalty on W1 makes it dense)
                if (!cpu::optimizer_is_lazy(n.spec().optimizer) || n.spec().penalized(0))
                    throw std::invalid_argument("synced: only a lazy optimizer has it");
            }
            Write lock(n.mutex());
            n.restore(w, src, sy, iterations);
        }, py::arg("weights"), py::arg("slots"), py::arg("synced"), py::arg("iterations"))
        .def("set_slots", [](N& n, py::list slots) {
            const auto src = check_slots(slots, n.spec());
            Write lock(n.mutex());
            n.replace_slots(src);
        })
        .def("train_batches", [](N& n, py::object x, py::object y, py::object sw,
                                 py::array order, py::object batch_size, py::object batch_begin,
                                 py::object batch_end, py::object threads, bool per_batch,
                                 py::object outputs) {
            const typename Io::Data d = Io::data(n, x);
            const typename Io::Labels lab = Io::labels(n, d, y, sw);
            const int64_t N_rows = Io::rows(d);
            const int64_t bs = int_arg(batch_size, "batch_size", 1, INT64_MAX);
            const int64_t b0 = int_arg(batch_begin, "batch_begin", 0, INT64_MAX);
            const int64_t b1 = int_arg(batch_end, "batch_end", 0, INT64_MAX);
            const int nt = threads_arg(threads);
            const int64_t* op = check_epoch(order, N_rows, bs, b0, b1);
            const int64_t steps = b1 - b0;
            py::array_t<double> bl(per_batch ? steps : 0), ba(per_batch ? steps : 0);
            double* blp = per_batch ? bl.mutable_data() : nullptr;
            double* bap = per_batch ? ba.mutable_data() : nullptr;
            float* outp = nullptr;
            if (!outputs.is_none()) {  // the call's rows, in epoch order
                const int64_t rows = std::min(N_rows, b1 * bs) - std::min(N_rows, b0 * bs);
                outp = check<float>(ndarray_arg(outputs, "outputs"), "outputs",
                                    {rows, n.spec().outputs()}, true);
            }
            Stats st;
            {
                py::gil_scoped_release nogil;
                st = n.train_batches(*d, lab.y, lab.sw, op, N_rows, bs, b0, b1, nt, blp, bap, outp);
            }
            return py::make_tuple(st.loss_sum, st.correct_sum, st.rows, bl, ba);
        }, py::arg("x"), py::arg("y"), py::arg("sample_weight"), py::arg("order"),
           py::arg("batch_size"), py::arg("batch_begin"), py::arg("batch_end"),
           py::arg("threads") = 0, py::arg("per_batch") = false, py::arg("outputs") = py::none(),
           "Train on batches [batch_begin, batch_end) of the epoch ordered by `order`. Returns "
           "(sum of weighted losses, sum of accuracies, rows, per-batch mean losses, per-batch "
           "accuracies); the per-batch arrays are empty unless per_batch. `outputs` (float32, "
           "(rows of the call, O)) receives each row's outputs before its step.")
        .def("predict", [](N& n, py::object x, py::object threads, int64_t first,
                           int64_t last) {
            const typename Io::Data d = Io::data(n, x);
            const int nt = threads_arg(threads);
            check_row_range(first, last, Io::rows(d));
            py::array_t<float> out({last - first, n.spec().outputs()});
            float* o = out.mutable_data();
            py::gil_scoped_release nogil;
            n.predict(o, *d, first, last, nt);
            return out;
        }, py::arg("x"), py::arg("threads") = 0, py::arg("first") = 0, py::arg("last") = -1,
           "Outputs for rows [first, last) of x (last = -1: to the end) as a host array.")
        .def("penalty", [](N& n) {
            Read lock(n.mutex());
            return n.penalty();
        }, "The weight penalty of the current weights (Keras's sum of model.losses).")
        .def("evaluate", [](N& n, py::object x, py::object y, py::object sw,
                            py::object threads, int64_t first, int64_t last) {
            const typename Io::Data d = Io::data(n, x);
            const typename Io::Labels lab = Io::labels(n, d, y, sw);
            const int nt = threads_arg(threads);
            check_row_range(first, last, Io::rows(d));
            Stats st;
            {
                py::gil_scoped_release nogil;
                st = n.evaluate(*d, lab.y, lab.sw, first, last, nt);
            }
            return py::make_tuple(st.loss_sum, st.correct_sum, st.rows);
        }, py::arg("x"), py::arg("y"), py::arg("sample_weight"), py::arg("threads") = 0,
           py::arg("first") = 0, py::arg("last") = -1,
           "(sum of weighted losses plus rows x the weight penalty, sum of accuracies, rows) "
           "over rows [first, last) of x.");
}


}  // namespace bind
}  // namespace imdbfast
