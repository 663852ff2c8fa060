// bindings.cpp: the _core extension module. Checks every array (dtype, contiguity, shape,
// ranges) before any work, releases the GIL around the kernels, and does no math of its own.
// Arrays must arrive with the exact dtype: nothing is cast silently here (a float64 token array
// cast to int32 could wrap). The Python layer (imdbfast/) converts user input first.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "bind_kernels.h"
#include "bind_net.h"
#include "bind_util.h"
#include "bind_vectorize.h"
#include "kernels.h"
#include "net.h"

namespace py = pybind11;
using namespace imdbfast;
using namespace imdbfast::bind;

namespace {

// The CPU's compute for the single-kernel functions (bind_kernels.h).
struct CpuKernels {
    static CSR multi_hot(const Ragged& r, int64_t D, int threads) {
        return cpu::multi_hot(r.tokens, r.offsets, r.N, D, threads);
    }
    static void sparse_forward(float* z, const CSR& x, const int64_t* rows, int64_t B,
                               const float* W, const float* b, int64_t H) {
        cpu::sparse_forward(z, x.view(), rows, W, b, H, 0, B);
    }
    static void dense_forward(float* z, const float* x, const float* W, const float* b, int64_t B,
                              int64_t I, int64_t H) {
        cpu::dense_forward(z, x, W, b, I, H, 0, B);
    }
    static void act_forward(float* a, const float* z, int act, int64_t n) {
        cpu::act_forward(a, z, act, 0, n);
    }
    static void softmax_forward(float* a, const float* z, int64_t H, int64_t B) {
        cpu::softmax_forward(a, z, H, 0, B);
    }
    static void dropout_forward(float* d, const float* a, const int64_t* rows,
                                const DropoutStep& s, int64_t H, int64_t B) {
        cpu::dropout_forward(d, a, rows, s, H, 0, B);
    }
    static void act_backward(float* dz, const float* da, const float* z, const float* a, int act,
                             int64_t n) {
        cpu::act_backward(dz, da, z, a, act, 0, n);
    }
    static void dense_backward(float* dx, float* dW, float* db, const float* dz, const float* x,
                               const float* W, int64_t B, int64_t I, int64_t H) {
        cpu::dense_backward_input(dx, dz, W, I, H, 0, B);
        cpu::dense_backward_weight(dW, dz, x, B, I, H, 0, I);
        cpu::bias_backward(db, dz, B, H);
    }
    static void sparse_backward(std::vector<int64_t>& touched, std::vector<float>& g,
                                const float* dz, const CSR& x, const int64_t* rows, int64_t B,
                                int64_t H, int parts) {
        // `parts` column ranges split evenly by index, as lanes, one scatter each
        const int64_t D = x.n_cols;
        std::vector<int64_t> bounds(static_cast<size_t>(parts) + 1);
        for (int p = 0; p <= parts; ++p) bounds[p] = D * p / parts;
        std::vector<int32_t> pos(static_cast<size_t>(x.n_rows * (parts + 1)));
        cpu::lane_offsets(pos.data(), x.view(), bounds.data(), parts, 1);
        std::vector<float> G(static_cast<size_t>(D * H), 0.0f);
        std::vector<uint8_t> flag(static_cast<size_t>(D), 0);
        std::vector<int32_t> t(static_cast<size_t>(D + 1));
        for (int p = 0; p < parts; ++p)
            cpu::sparse_backward_scatter(G.data(), flag.data(), x.view(), pos.data(), parts, rows,
                                         B, dz, H, p, p + 1);
        const int64_t n = cpu::collect_flagged(t.data(), flag.data(), 0, D);
        touched.assign(t.begin(), t.begin() + n);
        g.resize(static_cast<size_t>(n * H));
        for (int64_t i = 0; i < n; ++i)
            std::copy_n(G.data() + touched[i] * H, H, g.data() + i * H);
    }
    static void loss_forward_backward(float* dz, double* lr, double* cr, const float* z,
                                      const float* a, const float* y, const float* sw, int act,
                                      int loss, int64_t B, int64_t O) {
        cpu::loss_forward_backward(dz, lr, cr, z, a, y, sw, nullptr, act, loss, O, B, 0, B);
    }
    static void optimizer_update(const cpu::OptimizerConfig& c, int64_t iteration, float* w,
                                 const float* g, float* const* slots, int64_t n) {
        cpu::optimizer_update(c, iteration, w, g, slots, 0, n);
    }
};

// Python arguments as the CPU Net's inputs (bind_net.h): host CSR data, host float32 labels.
struct CpuIo {
    using Data = std::shared_ptr<const CSR>;
    struct Labels {
        py::array y_array, sw_array;  // hold what a conversion made
        const float* y = nullptr;
        const float* sw = nullptr;
    };
    static Data data(const Net& n, const py::object& x) {
        if (!py::isinstance<CSR>(x))
            throw py::type_error("x: expected an imdbfast CSR, got " +
                                 std::string(py::str(py::type::handle_of(x).attr("__name__"))));
        auto d = x.cast<std::shared_ptr<CSR>>();
        check_width(d->n_cols, n.spec().input_dim);
        return d;
    }
    static int64_t rows(const Data& d) { return d->n_rows; }
    static Labels labels(const Net& n, const Data& d, const py::object& y, const py::object& sw) {
        const int64_t N = d->n_rows, O = n.spec().outputs();
        Labels l;
        l.y_array = y.cast<py::array>();
        l.y = check<float>(l.y_array, "y", {N, O});
        check_finite(l.y, N * O, "y");
        if (!sw.is_none()) {
            l.sw_array = sw.cast<py::array>();
            l.sw = check<float>(l.sw_array, "sample_weight", {N});
            check_finite(l.sw, N, "sample_weight");
        }
        return l;
    }
};

// A CSR from Python's arrays, every argument checked (the constructor, and unpickling).
std::shared_ptr<CSR> make_csr(py::array indptr, py::array indices, py::object data,
                              py::object rows, py::object cols, py::object nthreads) {
    // (an upper bound far beyond any memory, so that n_rows + 1 cannot overflow)
    const int64_t n_rows = int_arg(rows, "shape: n_rows", 0, int64_t(1) << 62);
    const int64_t n_cols = int_arg(cols, "shape: n_cols", 1, INT32_MAX);
    const int threads = threads_arg(nthreads);
    const int64_t* ip = check<int64_t>(indptr, "indptr", {n_rows + 1});
    const int64_t nnz = indices.ndim() == 1 ? indices.shape(0) : -1;
    const int32_t* ix = check<int32_t>(indices, "indices", {nnz});
    check_offsets(ip, n_rows, nnz, "indptr");
    for (int64_t k = 0; k < nnz; ++k)
        if (ix[k] < 0 || ix[k] >= n_cols)
            throw std::out_of_range("indices: column " + std::to_string(ix[k]) +
                                    " is outside [0, " + std::to_string(n_cols) + ")");
    const float* v = nullptr;
    if (!data.is_none()) {
        v = check<float>(ndarray_arg(data, "data"), "data", {nnz});
        check_finite(v, nnz, "data");
    }
    py::gil_scoped_release nogil;
    return std::make_shared<CSR>(cpu::csr_from_arrays(ip, ix, v, n_rows, n_cols, threads));
}

// A one-time notice from the core (parallel.h) as a RuntimeWarning. The core may say it on any
// thread, with or without the GIL, even while holding a Net's lock that a thread holding the
// GIL waits for: so it is handed to the interpreter (Py_AddPendingCall, which needs neither)
// and warned on the main thread at its next bytecode.
int warn_pending(void* text) {
    std::unique_ptr<char[]> msg(static_cast<char*>(text));
    if (PyErr_WarnEx(PyExc_RuntimeWarning, msg.get(), 1) < 0) PyErr_WriteUnraisable(nullptr);
    return 0;
}

void notice_as_warning(const std::string& text) {
    char* msg = new (std::nothrow) char[text.size() + 1];
    if (msg) std::memcpy(msg, text.c_str(), text.size() + 1);
    if (!msg || Py_AddPendingCall(warn_pending, msg) != 0) {
        delete[] msg;
        std::fprintf(stderr, "%s\n", text.c_str());
    }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "imdbfast's compiled CPU core: multi-hot CSR encoding, dense layers, losses, "
              "optimizers and the training loop (OpenMP). See cpp/kernels.h.";
    m.attr("__version__") = IMDBFAST_VERSION;
    m.attr("INFERENCE_TILE") = kTile;  // rows a thread takes at a time in predict/evaluate
    cpu::set_notice(notice_as_warning);
    bind::register_memory_error();

    m.def("build_info", [] {
        py::dict d;
        d["version"] = IMDBFAST_VERSION;
        d["openmp"] = cpu::have_openmp();
        d["threads"] = cpu::default_threads();
        d["available_cpus"] = cpu::available_cpus();
        d["forked_child"] = cpu::forked_child();
        d["compiler"] = __VERSION__;
#ifdef __AVX512F__
        d["simd"] = "avx512";
#elif defined(__AVX2__)
        d["simd"] = "avx2";
#else
        d["simd"] = "baseline";
#endif
        return d;
    }, "Version, OpenMP, default thread count, compiler and SIMD level (CUDA: imdbfast.build_info).");
    m.def("set_num_threads", [](py::object n) {
        cpu::set_default_threads(static_cast<int>(int_arg(n, "n", 0, INT32_MAX)));
    }, py::arg("n"), "Default thread count for every kernel; 0 restores OpenMP's default.");
    m.def("get_num_threads", &cpu::default_threads);
    // (the test module imdbfast._testing binds these; see cpu::TestHooks)
    m.attr("_test_hooks") = py::capsule(static_cast<const void*>(cpu::test_hooks()),
                                        "imdbfast._core._test_hooks");
    m.def("available_cpus", &cpu::available_cpus,
          "CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.");

    // ---- CSR ---------------------------------------------------------------------------------
    py::class_<CSR, std::shared_ptr<CSR>>(m, "CSR", "A CSR matrix with sorted unique columns per row.")
        .def(py::init(&make_csr),
             py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("n_rows"),
             py::arg("n_cols"), py::arg("threads") = 0)
        .def_readonly("n_rows", &CSR::n_rows)
        .def_readonly("n_cols", &CSR::n_cols)
        .def_readonly("binary", &CSR::binary)
        .def_property_readonly("nnz", &CSR::nnz)
        .def_property_readonly("indptr", [](const std::shared_ptr<CSR>& s) { return view_of(s, s->indptr); })
        .def_property_readonly("indices", [](const std::shared_ptr<CSR>& s) { return view_of(s, s->indices); })
        .def_property_readonly("data", [](const std::shared_ptr<CSR>& s) -> py::object {
            if (s->binary) return py::none();
            return view_of(s, s->values);
        })
        .def("to_dense", [](const CSR& s, py::object nthreads) {
            const int threads = threads_arg(nthreads);
            py::array_t<float> out({s.n_rows, s.n_cols});
            float* o = out.mutable_data();
            py::gil_scoped_release nogil;
            cpu::csr_to_dense(o, s.view(), threads);
            return out;
        }, py::arg("threads") = 0)
        .def("take", [](const CSR& s, py::array rows, py::object nthreads) {
            const int threads = threads_arg(nthreads);
            const int64_t n = rows.ndim() == 1 ? rows.shape(0) : -1;
            const int64_t* r = check<int64_t>(rows, "rows", {n});
            check_rows(r, n, s.n_rows, "rows");
            py::gil_scoped_release nogil;
            return std::make_shared<CSR>(cpu::csr_take_rows(s.view(), r, n, threads));
        }, py::arg("rows"), py::arg("threads") = 0)
        // Pickles as its arrays (NumPy pickles those as buffers) and shape; unpickling runs
        // the constructor's checks, so a doctored pickle cannot make an invalid matrix.
        .def(py::pickle(
            [](const std::shared_ptr<CSR>& s) {
                return py::make_tuple(view_of(s, s->indptr), view_of(s, s->indices),
                                      s->binary ? py::object(py::none())
                                                : py::object(view_of(s, s->values)),
                                      s->n_rows, s->n_cols);
            },
            [](py::tuple t) {
                if (t.size() != 5) throw std::invalid_argument("CSR: a pickle of 5 items expected");
                return make_csr(ndarray_arg(t[0], "indptr"), ndarray_arg(t[1], "indices"), t[2], t[3], t[4],
                                py::int_(0));
            }))
        .def("lane_bounds", [](const CSR& s, py::object size) {
            const int64_t batch_size = int_arg(size, "batch_size", 1, int64_t(1) << 62);
            std::vector<int64_t> b = cpu::lane_plan(s, batch_size, 1).bounds;
            return vector_to_array(std::move(b), {static_cast<py::ssize_t>(b.size())});
        }, py::arg("batch_size"),
           "The training loop's column lanes for batches of batch_size rows: kLanes + 1 bounds.");

    m.def("ragged_take", [](py::array tokens, py::array offsets, py::array rows, int64_t prefix,
                            int64_t add, int threads) {
        const Ragged rg = check_ragged(tokens, offsets);
        const int32_t* t = rg.tokens;
        const int64_t* o = rg.offsets;
        const int64_t nt = rg.n_tokens, N = rg.N;
        const int64_t n = rows.ndim() == 1 ? rows.shape(0) : -1;
        const int64_t* r = check<int64_t>(rows, "rows", {n});
        check_rows(r, n, N, "rows");
        if (prefix > INT32_MAX) throw std::invalid_argument("prefix: does not fit int32");
        if (add != 0) {  // every shifted id must stay in int32
            int32_t lo = INT32_MAX, hi = INT32_MIN;
            for (int64_t k = 0; k < nt; ++k) {
                lo = std::min(lo, t[k]);
                hi = std::max(hi, t[k]);
            }
            if (nt && (hi + add > INT32_MAX || lo + add < INT32_MIN))
                throw std::invalid_argument("add: shifted ids do not fit int32");
        }
        CSR out;
        {
            py::gil_scoped_release nogil;
            // A ragged array has CSR's layout: offsets are the indptr, tokens the indices.
            out = cpu::ragged_take(CSRView{N, INT32_MAX, o, t, nullptr}, r, n, prefix, add, threads);
        }
        const py::ssize_t total = static_cast<py::ssize_t>(out.indices.size());
        return py::make_tuple(vector_to_array(std::move(out.indices), {total}),
                              vector_to_array(std::move(out.indptr), {static_cast<py::ssize_t>(n + 1)}));
    }, py::arg("tokens"), py::arg("offsets"), py::arg("rows"), py::arg("prefix") = -1,
       py::arg("add") = 0, py::arg("threads") = 0,
       "Rows `rows` of a ragged int32 array as new (tokens, offsets); each row becomes "
       "[prefix] + (row + add), the prefix only when prefix >= 0.");

    m.def("multi_hot_dense", [](py::array tokens, py::array offsets, int64_t n_cols, int threads) {
        positive_dim(n_cols, "num_words");
        const Ragged rg = check_ragged(tokens, offsets);
        const int32_t* t = rg.tokens;
        const int64_t* o = rg.offsets;
        const int64_t N = rg.N;
        py::array_t<float> out({N, n_cols});
        float* op = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            cpu::multi_hot_dense(op, t, o, N, n_cols, threads);
        }
        return out;
    }, py::arg("tokens"), py::arg("offsets"), py::arg("num_words"), py::arg("threads") = 0);

    m.def("csr_from_dense", [](py::array x, int threads) {
        if (x.ndim() != 2) throw std::invalid_argument("x: expected a 2-D array, got shape " + shape_str(x));
        const int64_t N = x.shape(0), D = x.shape(1);
        positive_dim(D, "x: number of columns");
        if (py::isinstance<py::array_t<double>>(x)) {
            const double* p = check<double>(x, "x", {N, D});
            py::gil_scoped_release nogil;
            return std::make_shared<CSR>(cpu::csr_from_dense<double>(p, N, D, threads));
        }
        const float* p = check<float>(x, "x", {N, D});
        py::gil_scoped_release nogil;
        return std::make_shared<CSR>(cpu::csr_from_dense<float>(p, N, D, threads));
    }, py::arg("x"), py::arg("threads") = 0);

    // ---- raw text ------------------------------------------------------------------------------
    py::class_<Vocabulary, std::shared_ptr<Vocabulary>>(m, "Vocabulary", "A word index for encoding raw text.")
        .def(py::init([](py::dict word_index) {
                 std::vector<std::string> words;
                 std::vector<int64_t> ranks;
                 words.reserve(word_index.size());
                 for (auto item : word_index) {
                     // an int rank; True is not a rank, and a huge int is out of range, not cast
                     if (!py::isinstance<py::str>(item.first) || !py::isinstance<py::int_>(item.second) ||
                         PyBool_Check(item.second.ptr()))
                         throw py::type_error("word_index: expected a dict of str -> int");
                     int overflow = 0;
                     const long long rank = PyLong_AsLongLongAndOverflow(item.second.ptr(), &overflow);
                     words.push_back(item.first.cast<std::string>());
                     ranks.push_back(overflow ? -1 : rank);  // -1: refused as out of range
                 }
                 return std::make_shared<Vocabulary>(words, ranks);
             }),
             py::arg("word_index"))
        .def("__len__", &Vocabulary::size)
        .def("encode", [](const Vocabulary& v, py::list texts, int64_t num_words, int64_t skip_top,
                          int64_t start_char, int64_t oov_char, int64_t index_from, int threads) {
            const TextArgs t(texts);  // (bind_vectorize.h: the UTF-8 of each str)
            const int64_t N = t.view().n;
            TextEncoding e{num_words, skip_top, start_char, oov_char, index_from};
            std::vector<int32_t> tokens;
            std::vector<int64_t> offsets;
            {
                py::gil_scoped_release nogil;
                cpu::texts_to_sequences(tokens, offsets, t.ptr.data(), t.len.data(), N, v, e, threads);
            }
            const py::ssize_t total = static_cast<py::ssize_t>(tokens.size());
            return py::make_tuple(vector_to_array(std::move(tokens), {total}),
                                  vector_to_array(std::move(offsets), {static_cast<py::ssize_t>(N + 1)}));
        }, py::arg("texts"), py::arg("num_words"), py::arg("skip_top"), py::arg("start_char"),
           py::arg("oov_char"), py::arg("index_from"), py::arg("threads") = 0,
           "Encode a list of str as (tokens, offsets); None-like arguments are passed as -1 "
           "(start_char, oov_char) or 0 (num_words).");

    // ---- TextVectorization (vectorize.h) ---------------------------------------------------------
    def_vectorize(m);

    // ---- single kernels (tests and embedding; the training loop calls the same functions) ----
    def_kernels<CpuKernels>(m);

    m.def("sparse_forward_lanes", [](const CSR& x, py::array rows, py::array W, py::array b,
                                     py::array bounds, bool pairs) {
        const FirstLayerArgs f = check_first_layer(x, rows, W, b);
        const int64_t B = f.B, H = f.H;
        constexpr int K = cpu::kLanes;
        const int64_t* lb = check<int64_t>(bounds, "bounds", {K + 1});
        if (lb[0] != 0 || lb[K] != x.n_cols)
            throw std::invalid_argument("bounds: must run from 0 to the number of columns");
        for (int k = 0; k < K; ++k)
            if (lb[k + 1] < lb[k]) throw std::invalid_argument("bounds: must be ascending");
        py::array_t<float> z({B, H}), P({static_cast<int64_t>(K), B, H});
        std::fill_n(P.mutable_data(), K * B * H, 0.0f);  // pairs leave lanes 1 and 3 unwritten
        float *zp = z.mutable_data(), *pp = P.mutable_data();
        {
            py::gil_scoped_release nogil;
            std::vector<int32_t> pos(static_cast<size_t>(x.n_rows * (K + 1)));
            cpu::lane_offsets(pos.data(), x.view(), lb, K, 1);
            cpu::sparse_forward_lanes(pp, x.view(), pos.data(), K, f.rows, B, f.W, H, 0, K, pairs);
            cpu::lanes_sum(zp, pp, f.b, H, B, 0, B, pairs);
        }
        return py::make_tuple(z, P);
    }, py::arg("x"), py::arg("rows"), py::arg("W"), py::arg("b"), py::arg("bounds"),
       py::arg("pairs") = false,
       "The training loop's first layer: (z, the lane partials P (kLanes, B, H)) for lanes "
       "`bounds` (kLanes + 1 column bounds); with pairs, P[0] and P[2] hold pair sums.");

    m.def("optimizer_update_rows", [](const std::string& kind, int64_t iteration, py::array W,
                                      py::array Gc, py::list slots, py::array rows, py::array synced,
                                      double learning_rate, double rho, double momentum,
                                      double epsilon, bool centered) {
        auto c = parse_optimizer(kind, learning_rate, rho, momentum, epsilon, 0.9, 0.999, centered,
                                 false, false);
        if (!cpu::optimizer_is_lazy(c))
            throw std::invalid_argument("optimizer: lazy row updates need RMSprop or SGD without momentum");
        const int64_t D = W.ndim() == 2 ? W.shape(0) : -1, H = W.ndim() == 2 ? W.shape(1) : -1;
        float* wp = check<float>(W, "W", {D, H}, true);
        const int64_t n = rows.ndim() == 1 ? rows.shape(0) : -1;
        const int64_t* rp = check<int64_t>(rows, "rows", {n});
        check_rows(rp, n, D, "rows");
        const float* gp = check<float>(Gc, "Gc", {n, H});
        int64_t* syp = check<int64_t>(synced, "synced", {D}, true);
        check_synced(syp, D, iteration);
        if (static_cast<int>(slots.size()) != cpu::optimizer_num_slots(c))
            throw std::invalid_argument("slots: wrong count");
        auto sp = slot_ptrs(slots, "slots", D * H);
        std::vector<float> G(static_cast<size_t>(D * H), 0.0f);  // the training loop's layout
        std::vector<int32_t> touched(rp, rp + n);
        for (int64_t i = 0; i < n; ++i) std::copy_n(gp + i * H, H, G.data() + rp[i] * H);
        py::gil_scoped_release nogil;
        cpu::optimizer_update_touched(c, iteration, wp, G.data(), sp.data(), H, touched.data(), n,
                                      syp);
    }, py::arg("kind"), py::arg("iteration"), py::arg("W"), py::arg("Gc"), py::arg("slots"),
       py::arg("rows"), py::arg("synced"), py::arg("learning_rate"), py::arg("rho") = 0.9,
       py::arg("momentum") = 0.0, py::arg("epsilon") = 1e-7, py::arg("centered") = false,
       "Lazy update of W's rows `rows` (unique) with compact gradient rows Gc (len(rows), H).");

    m.def("optimizer_catch_up", [](const std::string& kind, int64_t iterations, py::list slots,
                                   py::array synced, int64_t H, double rho, bool centered) {
        auto c = parse_optimizer(kind, 1e-3, rho, 0.0, 1e-7, 0.9, 0.999, centered, false, false);
        if (!cpu::optimizer_is_lazy(c))
            throw std::invalid_argument("optimizer: catch-up applies to lazy optimizers only");
        const int64_t D = synced.ndim() == 1 ? synced.shape(0) : -1;
        int64_t* syp = check<int64_t>(synced, "synced", {D}, true);
        check_synced(syp, D, iterations);
        if (static_cast<int>(slots.size()) != cpu::optimizer_num_slots(c))
            throw std::invalid_argument("slots: wrong count");
        auto sp = slot_ptrs(slots, "slots", D * H);
        py::gil_scoped_release nogil;
        cpu::optimizer_catch_up(c, iterations, sp.data(), H, syp, 0, D);
    }, py::arg("kind"), py::arg("iterations"), py::arg("slots"), py::arg("synced"), py::arg("H"),
       py::arg("rho") = 0.9, py::arg("centered") = false);

    m.def("shuffle_order", [](int64_t n, uint64_t seed, int64_t epoch) {
        if (n < 0) throw std::invalid_argument("n: must be >= 0");
        py::array_t<int64_t> out(n);
        int64_t* p = out.mutable_data();
        py::gil_scoped_release nogil;
        cpu::shuffle_order(p, n, seed, epoch);
        return out;
    }, py::arg("n"), py::arg("seed"), py::arg("epoch"),
       "The permutation of range(n) used for epoch `epoch` of a fit seeded with `seed`.");

    // ---- metrics.cpp ---------------------------------------------------------------------------
    auto metric_kind = [](const std::string& k) {
        static const std::pair<const char*, int> kinds[] = {
            {"binary_accuracy", cpu::METRIC_BINARY_ACCURACY}, {"mse", cpu::METRIC_MSE},
            {"mae", cpu::METRIC_MAE}, {"bce", cpu::METRIC_BCE}, {"auc", cpu::METRIC_AUC},
            {"precision", cpu::METRIC_PRECISION}, {"recall", cpu::METRIC_RECALL},
            {"categorical_accuracy", cpu::METRIC_CATEGORICAL_ACCURACY},
            {"top_k", cpu::METRIC_TOP_K}, {"cce", cpu::METRIC_CCE}};
        for (const auto& kv : kinds)
            if (k == kv.first) return kv.second;
        throw std::invalid_argument("metric: unknown kind '" + k + "'; valid: 'binary_accuracy', "
                                    "'mse', 'mae', 'bce', 'auc', 'precision', 'recall', "
                                    "'categorical_accuracy', 'top_k', 'cce'");
    };
    // (AUC's thresholds; top-k's k)
    auto thresholds_arg = [](py::object v) {
        return int_arg(v, "num_thresholds", 1, 1 << 24);
    };
    m.def("metric_state_size", [=](const std::string& kind, py::object num_thresholds) {
        return cpu::metric_state_size(metric_kind(kind), thresholds_arg(num_thresholds));
    }, py::arg("kind"), py::arg("num_thresholds") = 200);
    m.def("metric_update", [=](const std::string& kind, py::object state, py::object out,
                               py::object y, py::object sw, py::object rows,
                               py::object threshold, py::object num_thresholds) {
        const int k = metric_kind(kind);
        const int64_t T = thresholds_arg(num_thresholds);
        const py::array o = ndarray_arg(out, "outputs"), ya = ndarray_arg(y, "y");
        if (o.ndim() != 2 || ya.ndim() != 2)
            throw std::invalid_argument("outputs and y: expected 2-D arrays (rows, outputs)");
        const int64_t n = o.shape(0), O = o.shape(1), N = ya.shape(0);
        const float* op = check<float>(o, "outputs", {n, O});
        const float* yp = check<float>(ya, "y", {N, O});
        double* st = check<double>(ndarray_arg(state, "state"), "state",
                                   {cpu::metric_state_size(k, T)}, true);
        const float* wp = sw.is_none() ? nullptr : check<float>(ndarray_arg(sw, "sample_weight"),
                                                                "sample_weight", {N});
        const int64_t* rp = nullptr;
        if (rows.is_none()) {
            if (n > N) throw std::invalid_argument("outputs: more rows than y");
        } else {
            rp = check<int64_t>(ndarray_arg(rows, "rows"), "rows", {n});
            for (int64_t i = 0; i < n; ++i)
                if (rp[i] < 0 || rp[i] >= N)
                    throw std::invalid_argument("rows: index " + std::to_string(rp[i]) +
                                                " out of range for " + std::to_string(N) + " rows");
        }
        const double t = float_arg(threshold, "threshold");
        if (!std::isfinite(t)) throw std::invalid_argument("threshold: must be finite");
        py::gil_scoped_release nogil;
        cpu::metric_update(k, st, op, yp, wp, rp, n, O, static_cast<float>(t), T);
    }, py::arg("kind"), py::arg("state"), py::arg("outputs"), py::arg("y"),
       py::arg("sample_weight") = py::none(), py::arg("rows") = py::none(),
       py::arg("threshold") = 0.5, py::arg("num_thresholds") = 200,
       "Adds rows to a metric's state (float64, metric_state_size): outputs (n, O), labels y "
       "(N, O) and weights (N) of data rows `rows` (n; default 0..n-1).");
    m.def("metric_result", [=](const std::string& kind, py::object state,
                               py::object num_thresholds) {
        const int k = metric_kind(kind);
        const int64_t T = thresholds_arg(num_thresholds);
        const double* st = check<double>(ndarray_arg(state, "state"), "state",
                                         {cpu::metric_state_size(k, T)});
        return cpu::metric_result(k, st, T);
    }, py::arg("kind"), py::arg("state"), py::arg("num_thresholds") = 200,
       "Keras's value of a metric from its state.");

    // ---- Net: bind_net.h, as the CUDA modules' ----------------------------------------------
    py::class_<Net, std::shared_ptr<Net>> net(m, "Net", "A network and its optimizer state (cpp/net.h).");
    net.def(py::init([](py::dict spec) { return std::make_shared<Net>(parse_spec(spec)); }),
            py::arg("spec"),
            "A network from its description: {'input_dim', 'layers', 'loss', 'optimizer'} "
            "(cpp/spec.h); weights and slots start at zero.");
    def_net<Net, CpuIo>(net);
    m.def("check_optimizer", [](py::dict d) { parse_optimizer(d); }, py::arg("config"),
          "Raises unless `config` ({'kind', 'learning_rate', ...}, cpp/spec.h) describes an "
          "optimizer the core runs: the one place its hyper-parameters' ranges are checked.");
}
