// bind_util.h: argument checks and conversions shared by the pybind11 modules (_core in
// cpp/bindings.cpp, _cuda and _cuda_sim in cuda/bindings_cuda.cpp), so that both backends refuse
// bad input with the same messages.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <cmath>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"

namespace imdbfast {
namespace bind {

namespace py = pybind11;

// A Python integer argument in [lo, hi] (anything with __index__, not a bool), or an error naming
// it: never pybind11's "incompatible function arguments" for a huge int, a float or a bool.
inline int64_t int_arg(const py::handle& v, const std::string& name, int64_t lo, int64_t hi) {
    if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr()))
        throw py::type_error(name + ": expected an int, got " +
                             std::string(py::str(py::type::handle_of(v).attr("__name__"))));
    auto i = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
    if (!i) throw py::error_already_set();
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
    if (overflow || x < lo || x > hi)
        throw py::value_error(name + ": must be in [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "], got " + std::string(py::str(i)));
    return x;
}

// A thread count: 0 (or below, as the core reads it) is the default.
inline int threads_arg(const py::handle& v) {
    return static_cast<int>(int_arg(v, "threads", 0, INT32_MAX));
}

// std::bad_alloc (an allocation in compiled code failed, often inside a region's threads) as a
// MemoryError that says what happened; every module registers it.
inline void register_memory_error() {
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::bad_alloc&) {
            PyErr_SetString(PyExc_MemoryError,
                            "imdbfast: out of memory (an allocation in the compiled core failed)");
        }
    });
}

// A NumPy array argument as it is (never a converted copy, whose data would be freed at the end
// of the statement while a pointer into it is still used), or a TypeError naming it.
inline py::array ndarray_arg(const py::handle& v, const std::string& name) {
    if (!py::isinstance<py::array>(v))
        throw py::type_error(name + ": expected a NumPy array, got " +
                             std::string(py::str(py::type::handle_of(v).attr("__name__"))));
    return py::reinterpret_borrow<py::array>(v);
}

template <typename T>
const char* dtype_name();
template <> inline const char* dtype_name<float>() { return "float32"; }
template <> inline const char* dtype_name<double>() { return "float64"; }
template <> inline const char* dtype_name<int32_t>() { return "int32"; }
template <> inline const char* dtype_name<int64_t>() { return "int64"; }

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// Checks dtype, C-contiguity, rank and (where >= 0) each dimension; returns the data pointer.
template <typename T>
T* check(const py::array& a, const std::string& name, std::initializer_list<int64_t> shape,
         bool writeable = false) {
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(name + ": expected a " + dtype_name<T>() + " array, got " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(name + ": array must be C-contiguous");
    if (a.ndim() != static_cast<py::ssize_t>(shape.size()))
        throw std::invalid_argument(name + ": expected " + std::to_string(shape.size()) +
                                    "-D array, got shape " + shape_str(a));
    int i = 0;
    for (int64_t d : shape) {
        // -1 means any size; other negative sizes come from an overflowed computation
        if (d < -1) throw std::invalid_argument(name + ": the expected size overflows");
        if (d >= 0 && a.shape(i) != d)
            throw std::invalid_argument(name + ": expected dimension " + std::to_string(i) +
                                        " to be " + std::to_string(d) + ", got shape " +
                                        shape_str(a));
        ++i;
    }
    if (writeable && !a.writeable()) throw std::invalid_argument(name + ": array is read-only");
    return static_cast<T*>(const_cast<void*>(a.data()));
}

inline void check_offsets(const int64_t* off, int64_t N, int64_t n_tokens, const char* name) {
    if (off[0] != 0) throw std::invalid_argument(std::string(name) + ": must start at 0");
    for (int64_t r = 0; r < N; ++r)
        if (off[r + 1] < off[r])
            throw std::invalid_argument(std::string(name) + ": not monotone at position " +
                                        std::to_string(r + 1));
    if (off[N] != n_tokens)
        throw std::invalid_argument(std::string(name) + ": last offset " + std::to_string(off[N]) +
                                    " does not match the token count " + std::to_string(n_tokens));
}

// Flat int32 tokens + int64 offsets (N + 1), both checked; the sequences' pointers and sizes.
struct Ragged {
    const int32_t* tokens;
    const int64_t* offsets;
    int64_t n_tokens, N;
};
inline Ragged check_ragged(const py::array& tokens, const py::array& offsets) {
    const int64_t nt = tokens.ndim() == 1 ? tokens.shape(0) : -1;
    const int32_t* t = check<int32_t>(tokens, "tokens", {nt});
    const int64_t N = offsets.ndim() == 1 ? offsets.shape(0) - 1 : -1;
    if (N < 0) throw std::invalid_argument("offsets: expected a 1-D array of N + 1 offsets");
    const int64_t* o = check<int64_t>(offsets, "offsets", {N + 1});
    check_offsets(o, N, nt, "offsets");
    return Ragged{t, o, nt, N};
}

inline void check_rows(const int64_t* rows, int64_t n, int64_t N, const char* name) {
    for (int64_t i = 0; i < n; ++i)
        if (rows[i] < 0 || rows[i] >= N)
            throw std::out_of_range(std::string(name) + ": row " + std::to_string(rows[i]) +
                                    " at position " + std::to_string(i) + " is outside [0, " +
                                    std::to_string(N) + ")");
}

// The sparse first layer's inputs: batch rows of x (B), W (x.n_cols, H), b (H).
struct FirstLayerArgs {
    int64_t B, H;
    const int64_t* rows;
    const float *W, *b;
};
inline FirstLayerArgs check_first_layer(const CSR& x, const py::array& rows, const py::array& W,
                                        const py::array& b) {
    const int64_t B = rows.ndim() == 1 ? rows.shape(0) : -1;
    const int64_t* r = check<int64_t>(rows, "rows", {B});
    check_rows(r, B, x.n_rows, "rows");
    const int64_t H = W.ndim() == 2 ? W.shape(1) : -1;
    const float* w = check<float>(W, "W", {x.n_cols, H});
    return FirstLayerArgs{B, H, r, w, check<float>(b, "b", {H})};
}

inline void check_finite(const float* v, int64_t n, const char* name) {
    for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i]))
            throw std::invalid_argument(std::string(name) + ": holds NaN or infinity at flat index " +
                                        std::to_string(i));
}

inline int64_t positive_dim(int64_t d, const char* name) {
    if (d < 1 || d > INT32_MAX)
        throw std::invalid_argument(std::string(name) + ": must be in [1, 2**31 - 1], got " +
                                    std::to_string(d));
    return d;
}

template <typename T>
py::array_t<T> vector_to_array(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(shape, heap->data(), owner);
}

// Numpy views of a CSR's arrays that keep the CSR alive.
template <typename T>
py::array_t<T> view_of(const std::shared_ptr<CSR>& m, const std::vector<T>& v) {
    py::capsule owner(new std::shared_ptr<CSR>(m),
                      [](void* p) { delete static_cast<std::shared_ptr<CSR>*>(p); });
    py::array_t<T> a({static_cast<py::ssize_t>(v.size())}, v.data(), owner);
    a.attr("setflags")(py::arg("write") = false);  // the CSR is immutable once built
    return a;
}

inline int parse_act(const std::string& s) {
    if (s == "linear") return ACT_LINEAR;
    if (s == "relu") return ACT_RELU;
    if (s == "tanh") return ACT_TANH;
    if (s == "sigmoid") return ACT_SIGMOID;
    if (s == "softmax") return ACT_SOFTMAX;
    throw std::invalid_argument("activation: unknown '" + s +
                                "'; valid: 'linear', 'relu', 'sigmoid', 'tanh', 'softmax'");
}

inline int parse_loss(const std::string& s) {
    if (s == "bce_logits") return LOSS_BCE_LOGITS;
    if (s == "bce_probs") return LOSS_BCE_PROBS;
    if (s == "mse") return LOSS_MSE;
    if (s == "bce_from_logits") return LOSS_BCE_FROM_LOGITS;
    if (s == "cce_logits") return LOSS_CCE_LOGITS;
    if (s == "cce_from_logits") return LOSS_CCE_FROM_LOGITS;
    throw std::invalid_argument("loss: unknown '" + s + "'; valid: 'bce_logits', 'bce_probs', "
                                "'bce_from_logits', 'cce_logits', 'cce_from_logits', 'mse'");
}

inline cpu::OptimizerConfig parse_optimizer(const std::string& kind, double learning_rate, double rho,
                                     double momentum, double epsilon, double beta_1, double beta_2,
                                     bool centered, bool nesterov, bool amsgrad) {
    cpu::OptimizerConfig c;
    if (kind == "rmsprop") c.kind = cpu::OPT_RMSPROP;
    else if (kind == "adam") c.kind = cpu::OPT_ADAM;
    else if (kind == "sgd") c.kind = cpu::OPT_SGD;
    else throw std::invalid_argument("optimizer: unknown '" + kind + "'; valid: 'adam', 'rmsprop', 'sgd'");
    auto finite = [](double v, const char* n) {
        if (!std::isfinite(v)) throw std::invalid_argument(std::string(n) + ": must be finite");
    };
    finite(learning_rate, "learning_rate");
    finite(rho, "rho");
    finite(momentum, "momentum");
    finite(epsilon, "epsilon");
    finite(beta_1, "beta_1");
    finite(beta_2, "beta_2");
    auto got = [](double v) { return ", got " + std::string(py::repr(py::float_(v))); };
    if (learning_rate < 0) throw std::invalid_argument("learning_rate: must be >= 0" + got(learning_rate));
    if (rho < 0 || rho >= 1) throw std::invalid_argument("rho: must be in [0, 1)" + got(rho));
    if (momentum < 0 || momentum > 1)
        throw std::invalid_argument("momentum: must be in [0, 1]" + got(momentum));
    if (epsilon < 0) throw std::invalid_argument("epsilon: must be >= 0" + got(epsilon));
    if (beta_1 < 0 || beta_1 >= 1) throw std::invalid_argument("beta_1: must be in [0, 1)" + got(beta_1));
    if (beta_2 < 0 || beta_2 >= 1) throw std::invalid_argument("beta_2: must be in [0, 1)" + got(beta_2));
    c.learning_rate = learning_rate;
    c.rho = rho;
    c.momentum = momentum;
    c.epsilon = epsilon;
    c.beta_1 = beta_1;
    c.beta_2 = beta_2;
    c.centered = centered;
    c.nesterov = nesterov;
    c.amsgrad = amsgrad;
    return c;
}

// ---- the network description (spec.h) from Python's dict -----------------------------------

// A real number argument (int or float, not a bool), or an error naming it.
inline double float_arg(const py::handle& v, const std::string& name) {
    const std::string type = py::str(py::type::handle_of(v).attr("__name__"));
    if (PyBool_Check(v.ptr()) || type == "bool" || type == "bool_" ||  // (numpy's bool too)
        PyComplex_Check(v.ptr()) || py::isinstance<py::array>(v) || !PyNumber_Check(v.ptr()))
        throw py::type_error(name + ": expected a number, got " + type);
    const double x = PyFloat_AsDouble(v.ptr());
    if (x == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return x;
}

inline bool bool_arg(const py::handle& v, const std::string& name) {
    if (!PyBool_Check(v.ptr()))
        throw py::type_error(name + ": expected a bool, got " +
                             std::string(py::str(py::type::handle_of(v).attr("__name__"))));
    return v.ptr() == Py_True;
}

// The entries of dict d (named `what`), every key one of `known`.
inline void check_keys(const py::dict& d, const std::string& what,
                       std::initializer_list<const char*> known) {
    for (auto item : d) {
        const std::string key = py::str(item.first);
        bool ok = false;
        for (const char* k : known) ok = ok || key == k;
        if (!ok) {
            std::string valid;
            for (const char* k : known) valid += std::string(valid.empty() ? "" : ", ") + "'" + k + "'";
            throw std::invalid_argument(what + ": unknown key '" + key + "'; valid: " + valid);
        }
    }
}

// {"kind": "rmsprop" | "adam" | "sgd", "learning_rate": ..., and that kind's hyper-parameters
// (Keras's names; missing ones take Keras's defaults)}.
inline cpu::OptimizerConfig parse_optimizer(const py::dict& d) {
    if (!d.contains("kind")) throw std::invalid_argument("optimizer: needs a 'kind'");
    const std::string kind = py::str(d["kind"]);
    if (kind == "rmsprop")
        check_keys(d, "optimizer", {"kind", "learning_rate", "rho", "momentum", "epsilon", "centered"});
    else if (kind == "adam")
        check_keys(d, "optimizer", {"kind", "learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"});
    else if (kind == "sgd")
        check_keys(d, "optimizer", {"kind", "learning_rate", "momentum", "nesterov"});
    const cpu::OptimizerConfig def;
    auto num = [&](const char* k, double v) { return d.contains(k) ? float_arg(d[k], k) : v; };
    auto flag = [&](const char* k) { return d.contains(k) && bool_arg(d[k], k); };
    return parse_optimizer(kind, num("learning_rate", kind == "sgd" ? 0.01 : def.learning_rate),
                           num("rho", def.rho), num("momentum", def.momentum),
                           num("epsilon", def.epsilon), num("beta_1", def.beta_1),
                           num("beta_2", def.beta_2), flag("centered"), flag("nesterov"),
                           flag("amsgrad"));
}

// {"input_dim": D, "layers": [{"kind": "dense", "units": H, "activation": ...}, ...],
//  "loss": ..., "optimizer": {...}}: models.py's Sequential._spec, checked whole.
inline NetSpec parse_spec(const py::dict& d) {
    check_keys(d, "spec", {"input_dim", "layers", "loss", "optimizer"});
    for (const char* k : {"input_dim", "layers", "loss", "optimizer"})
        if (!d.contains(k)) throw std::invalid_argument(std::string("spec: needs '") + k + "'");
    NetSpec s;
    s.input_dim = int_arg(d["input_dim"], "input_dim", 1, INT32_MAX);
    const py::list layers = d["layers"].cast<py::list>();
    if (layers.size() == 0) throw std::invalid_argument("layers: the network has no layers");
    for (size_t i = 0; i < layers.size(); ++i) {
        const std::string at = "layers[" + std::to_string(i) + "]";
        const py::dict l = layers[i].cast<py::dict>();
        check_keys(l, at, {"kind", "units", "activation", "dropout", "dropout_seed", "kernel_l1",
                           "kernel_l2", "bias_l1", "bias_l2", "trainable"});
        LayerSpec ls;
        const std::string kind = l.contains("kind") ? std::string(py::str(l["kind"])) : "dense";
        if (kind != "dense")
            throw std::invalid_argument(at + ": unknown kind '" + kind + "'; valid: 'dense'");
        if (!l.contains("units")) throw std::invalid_argument(at + ": needs 'units'");
        ls.units = int_arg(l["units"], "units", 1, INT32_MAX);
        ls.activation = parse_act(l.contains("activation") ? std::string(py::str(l["activation"]))
                                                           : "linear");
        if (l.contains("dropout")) {
            ls.dropout = float_arg(l["dropout"], "dropout");
            if (!(ls.dropout >= 0.0 && ls.dropout < 1.0))
                throw std::invalid_argument(at + ": dropout: the rate must be in [0, 1), got " +
                                            py::repr(l["dropout"]).cast<std::string>());
            if (ls.dropout > 0.0 && i + 1 == layers.size())
                throw std::invalid_argument(at + ": dropout on the output layer is not supported "
                                            "(the loss reads its outputs)");
        }
        if (l.contains("dropout_seed"))
            ls.dropout_seed = static_cast<uint64_t>(int_arg(l["dropout_seed"], "dropout_seed", 0,
                                                            INT64_MAX));
        // Penalty factors: finite, >= 0 (Keras's validate_float_arg), and 2 * factor finite in
        // float32 (the gradient's factor).
        double* factors[] = {&ls.kernel_l1, &ls.kernel_l2, &ls.bias_l1, &ls.bias_l2};
        const char* names[] = {"kernel_l1", "kernel_l2", "bias_l1", "bias_l2"};
        for (int k = 0; k < 4; ++k) {
            if (!l.contains(names[k])) continue;
            const double v = float_arg(l[names[k]], names[k]);
            if (!(v >= 0.0 && v <= 1e38))
                throw std::invalid_argument(at + ": " + names[k] +
                                            ": expected a finite number >= 0 (at most 1e38), got " +
                                            py::repr(l[names[k]]).cast<std::string>());
            *factors[k] = v;
        }
        if (l.contains("trainable")) ls.trainable = bool_arg(l["trainable"], "trainable");
        s.layers.push_back(ls);
    }
    s.loss = parse_loss(py::str(d["loss"]));
    if (s.loss == LOSS_BCE_LOGITS && s.layers.back().activation != ACT_SIGMOID)
        throw std::invalid_argument("loss: 'bce_logits' needs a sigmoid output layer");
    if (s.loss == LOSS_CCE_LOGITS && s.layers.back().activation != ACT_SOFTMAX)
        throw std::invalid_argument("loss: 'cce_logits' needs a softmax output layer");
    for (int l = 0; l + 1 < s.n_layers(); ++l)
        if (s.layers[l].activation == ACT_SOFTMAX)
            throw std::invalid_argument("layers[" + std::to_string(l) + "]: softmax is supported "
                                        "on the output layer only");
    s.optimizer = parse_optimizer(d["optimizer"].cast<py::dict>());
    return s;
}

inline std::vector<float*> slot_ptrs(const py::list& slots, const std::string& name, int64_t n) {
    std::vector<float*> p;
    for (size_t i = 0; i < slots.size(); ++i) {
        const std::string item = name + "[" + std::to_string(i) + "]";
        p.push_back(check<float>(ndarray_arg(slots[i], item), item, {n}, true));
    }
    return p;
}

// ---- a Net's parameters and arguments, checked the same way for every backend ----------------

// A Net's parameters as new arrays with Keras's shapes, each filled by copy(p, out); the caller
// holds the Net's lock. Shared by the CPU and CUDA Nets, which differ only in how they copy.
template <class N, class Copy>
py::list weights_list(const N& n, Copy&& copy) {
    py::list out;
    for (int p = 0; p < n.n_params(); ++p) {
        py::array_t<float> a(n.spec().param_shape(p));
        copy(p, a.mutable_data());
        out.append(a);
    }
    return out;
}

// A Net's optimizer slots, [[slot arrays of param 0], ...], flat, each filled by
// copy(p, s, out); the caller holds the Net's lock.
template <class N, class Copy>
py::list slots_list(const N& n, Copy&& copy) {
    py::list out;
    for (int p = 0; p < n.n_params(); ++p) {
        py::list ps;
        for (int s = 0; s < n.n_slots(); ++s) {
            py::array_t<float> a(n.param_size(p));
            copy(p, s, a.mutable_data());
            ps.append(a);
        }
        out.append(ps);
    }
    return out;
}

// Pointers to `ws`, one finite float32 array per parameter with its shape.
inline std::vector<const float*> check_weights(const py::list& ws, const NetSpec& spec) {
    const size_t n_params = static_cast<size_t>(spec.n_params());
    if (ws.size() != n_params)
        throw std::invalid_argument("weights: expected " + std::to_string(n_params) +
                                    " arrays, got " + std::to_string(ws.size()));
    std::vector<const float*> src;
    for (int p = 0; p < spec.n_params(); ++p) {
        const std::string name = "weights[" + std::to_string(p) + "]";
        py::array a = ndarray_arg(ws[p], name);
        const auto shape = spec.param_shape(p);
        const float* d = shape.size() == 2 ? check<float>(a, name, {shape[0], shape[1]})
                                           : check<float>(a, name, {shape[0]});
        check_finite(d, spec.param_size(p), name.c_str());
        src.push_back(d);
    }
    return src;
}

// Pointers to `slots`: per parameter, n_slots finite flat float32 arrays of its size.
inline std::vector<std::vector<const float*>> check_slots(const py::list& slots,
                                                          const NetSpec& spec) {
    const int n_slots = cpu::optimizer_num_slots(spec.optimizer);
    if (slots.size() != static_cast<size_t>(spec.n_params()))
        throw std::invalid_argument("slots: expected one list per parameter");
    std::vector<std::vector<const float*>> src(static_cast<size_t>(spec.n_params()));
    for (int p = 0; p < spec.n_params(); ++p) {
        py::list ps = slots[p].cast<py::list>();
        if (static_cast<int>(ps.size()) != n_slots)
            throw std::invalid_argument("slots: expected " + std::to_string(n_slots) +
                                        " arrays per parameter");
        for (int s = 0; s < n_slots; ++s) {
            const std::string name = "slots[" + std::to_string(p) + "][" + std::to_string(s) + "]";
            const int64_t n = spec.param_size(p);
            const float* d = check<float>(ndarray_arg(ps[s], name), name, {n});
            check_finite(d, n, name.c_str());
            src[p].push_back(d);
        }
    }
    return src;
}

// An epoch order (a permutation's worth of rows of x, N of them) and the batch range
// [batch_begin, batch_end) of batches of batch_size rows.
inline const int64_t* check_epoch(const py::array& order, int64_t N, int64_t batch_size,
                                  int64_t batch_begin, int64_t batch_end) {
    const int64_t* op = check<int64_t>(order, "order", {N});
    check_rows(op, N, N, "order");
    if (batch_size < 1) throw std::invalid_argument("batch_size: must be >= 1");
    const int64_t n_batches = N == 0 ? 0 : 1 + (N - 1) / batch_size;  // no overflow
    if (batch_begin < 0 || batch_end < batch_begin || batch_end > n_batches)
        throw std::out_of_range("batches: [" + std::to_string(batch_begin) + ", " +
                                std::to_string(batch_end) + ") is not within [0, " +
                                std::to_string(n_batches) + "]");
    return op;
}

// W1's per-row steps of a lazy optimizer (D rows), each in [0, iterations].
inline void check_synced(const int64_t* synced, int64_t D, int64_t iterations) {
    for (int64_t r = 0; r < D; ++r)
        if (synced[r] < 0 || synced[r] > iterations)
            throw std::invalid_argument("synced: entries must be in [0, iterations], got " +
                                        std::to_string(synced[r]) + " at row " + std::to_string(r));
}

// Rows [first, last) of n_rows (last < 0: to the end), checked; `last` is resolved in place.
inline void check_row_range(int64_t first, int64_t& last, int64_t n_rows) {
    if (last < 0) last = n_rows;
    if (first < 0 || first > last || last > n_rows)
        throw std::out_of_range("rows: [" + std::to_string(first) + ", " + std::to_string(last) +
                                ") is not within the " + std::to_string(n_rows) + " rows of x");
}

}  // namespace bind
}  // namespace imdbfast
