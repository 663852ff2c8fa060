// bindings_cuda.cpp: the GPU backend's Python module. Built twice from this one source:
//   _cuda      with nvcc, when CMake finds a CUDA compiler; it links the CUDA runtime
//              statically, so importing it on a machine without a driver works and simply
//              reports no devices;
//   _cuda_sim  with the host compiler (IMDBFAST_CUDA_SIM): the same kernels run serially on the
//              host, so CPU-only machines (and CI) test the GPU algorithms (cuda/launch.h).
// The Net here has the same methods as _core.Net; data and labels may be host arrays (copied up
// for the call) or DeviceCSR / DeviceArray objects already on the device (what fit uses, so the
// training set goes up once). Checks are bind_util.h's, shared with _core. The classes are
// module-local: both modules may be loaded at once.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "bind_util.h"
#include "device.h"
#include "device_kernels.h"
#include "device_net.h"

#ifdef IMDBFAST_CUDA_SIM
#define IMDBFAST_CUDA_MODULE _cuda_sim
#else
#define IMDBFAST_CUDA_MODULE _cuda
#endif

namespace py = pybind11;
using namespace imdbfast;
using namespace imdbfast::bind;
using gpu::Buffer;
using gpu::DeviceArray;
using gpu::DeviceCSR;
using gpu::DeviceNet;

namespace {

template <typename T>
Buffer<T> upload(const T* p, int64_t n) {
    Buffer<T> b(std::max<int64_t>(1, n));
    gpu::copy_to_device(b.data(), p, n);
    return b;
}

template <typename T>
py::array_t<T> download(const Buffer<T>& b, std::vector<py::ssize_t> shape) {
    py::array_t<T> a(shape);
    gpu::copy_to_host(a.mutable_data(), b.data(), static_cast<int64_t>(a.size()));
    return a;
}

std::shared_ptr<DeviceCSR> upload_csr(const CSR& x, int device) {
    gpu::set_device(device);
    auto d = std::make_shared<DeviceCSR>();
    d->device = device;
    d->n_rows = x.n_rows;
    d->n_cols = x.n_cols;
    d->nnz = x.nnz();
    d->binary = x.binary;
    d->indptr = upload(x.indptr.data(), x.n_rows + 1);
    d->indices = upload(x.indices.data(), d->nnz);
    if (!x.binary) d->values = upload(x.values.data(), d->nnz);
    d->uid = gpu::next_uid();
    return d;
}

std::shared_ptr<CSR> download_csr(const DeviceCSR& d) {
    gpu::set_device(d.device);
    auto x = std::make_shared<CSR>();
    x->n_rows = d.n_rows;
    x->n_cols = d.n_cols;
    x->binary = d.binary;
    x->indptr.resize(static_cast<size_t>(d.n_rows + 1));
    x->indices.resize(static_cast<size_t>(d.nnz));
    gpu::copy_to_host(x->indptr.data(), d.indptr.data(), d.n_rows + 1);
    gpu::copy_to_host(x->indices.data(), d.indices.data(), d.nnz);
    if (!d.binary) {
        x->values.resize(static_cast<size_t>(d.nnz));
        gpu::copy_to_host(x->values.data(), d.values.data(), d.nnz);
    }
    return x;
}

// A data set argument: a DeviceCSR on the net's device, or a host CSR copied up for this call.
std::shared_ptr<DeviceCSR> data_arg(const py::object& x, int device, int64_t D) {
    std::shared_ptr<DeviceCSR> d;
    if (py::isinstance<DeviceCSR>(x)) {
        d = x.cast<std::shared_ptr<DeviceCSR>>();
        if (d->device != device)
            throw std::invalid_argument("x: is on device " + std::to_string(d->device) +
                                        ", the model on device " + std::to_string(device));
    } else if (py::isinstance<CSR>(x)) {
        d = upload_csr(x.cast<const CSR&>(), device);
    } else {
        throw py::type_error("x: expected an imdbfast CSR or DeviceCSR");
    }
    if (d->n_cols != D)
        throw std::invalid_argument("x: has " + std::to_string(d->n_cols) +
                                    " columns, the model's input dimension is " + std::to_string(D));
    return d;
}

// A device copy of n finite host floats.
std::shared_ptr<DeviceArray> upload_array(const float* p, int64_t n, const std::string& name,
                                          int device) {
    check_finite(p, n, name.c_str());
    auto d = std::make_shared<DeviceArray>();
    d->device = device;
    d->size = n;
    gpu::set_device(device);
    d->own = upload(p, n);
    d->ptr = d->own.data();
    return d;
}

// A float32 argument of n elements: a DeviceArray on `device`, or a host array copied up.
std::shared_ptr<DeviceArray> array_arg(const py::object& a, const std::string& name,
                                       std::initializer_list<int64_t> shape, int device) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (py::isinstance<DeviceArray>(a)) {
        auto d = a.cast<std::shared_ptr<DeviceArray>>();
        if (d->device != device)
            throw std::invalid_argument(name + ": is on device " + std::to_string(d->device) +
                                        ", the model on device " + std::to_string(device));
        if (d->size != n)
            throw std::invalid_argument(name + ": has " + std::to_string(d->size) +
                                        " elements, expected " + std::to_string(n));
        return d;
    }
    return upload_array(check<float>(a.cast<py::array>(), name, shape), n, name, device);
}

// Keeps a Python object alive from C++ (released with the GIL held).
std::shared_ptr<void> keep_alive(py::object o) {
    return std::shared_ptr<void>(new py::object(std::move(o)), [](void* p) {
        py::gil_scoped_acquire gil;
        delete static_cast<py::object*>(p);
    });
}

}  // namespace

PYBIND11_MODULE(IMDBFAST_CUDA_MODULE, m) {
#ifdef IMDBFAST_CUDA_SIM
    m.doc() = "imdbfast's GPU kernels run serially on the host (a test double of _cuda).";
    m.attr("simulated") = true;
    m.attr("architectures") = "host simulator";
#else
    m.doc() = "imdbfast's CUDA backend: device-resident training, inference and CSR building.";
    m.attr("simulated") = false;
    m.attr("architectures") = IMDBFAST_CUDA_ARCHITECTURES;
#endif
    m.def("devices", [] {
        std::string reason;
        py::list out;
        for (const auto& d : cuda::devices(&reason)) {
            py::dict e;
            e["index"] = d.index;
            e["name"] = d.name;
            e["compute_capability"] = py::make_tuple(d.major, d.minor);
            e["memory_bytes"] = d.total_memory;
            e["multiprocessors"] = d.multiprocessors;
            out.append(e);
        }
        return py::make_tuple(out, reason);
    }, "(list of usable devices, reason when the list is empty).");
    m.def("runtime_version", &cuda::runtime_version);
    m.def("driver_version", &cuda::driver_version);

    // ---- device data -------------------------------------------------------------------------
    py::class_<DeviceCSR, std::shared_ptr<DeviceCSR>>(m, "DeviceCSR", py::module_local(),
                                                      "A CSR matrix resident on a GPU.")
        .def(py::init([](const CSR& x, int device) { return upload_csr(x, device); }),
             py::arg("x"), py::arg("device") = 0, "Copy a host CSR matrix to the device.")
        .def_static("from_dense", [](uintptr_t ptr, int64_t n_rows, int64_t n_cols,
                                     const std::string& dtype, int device) {
            if (n_rows < 0 || n_cols < 1) throw std::invalid_argument("x: bad shape");
            positive_dim(n_cols, "x: columns");
            auto d = std::make_shared<DeviceCSR>();
            d->device = device;
            gpu::Scratch s;
            py::gil_scoped_release nogil;
            gpu::set_device(device);
            if (dtype == "float32")
                gpu::csr_from_dense(*d, s, reinterpret_cast<const float*>(ptr), n_rows, n_cols);
            else if (dtype == "float64")
                gpu::csr_from_dense(*d, s, reinterpret_cast<const double*>(ptr), n_rows, n_cols);
            else
                throw py::type_error("x: a device matrix must be float32 or float64, got " + dtype);
            return d;
        }, py::arg("ptr"), py::arg("n_rows"), py::arg("n_cols"), py::arg("dtype"),
           py::arg("device") = 0,
           "CSR of a C-contiguous (n_rows, n_cols) matrix at device address ptr (cupy: "
           "x.data.ptr), built on the device.")
        .def_static("multi_hot", [](py::array tokens, py::array offsets, int64_t n_cols, int device) {
            const Ragged r = check_ragged(tokens, offsets);
            positive_dim(n_cols, "n_cols");
            auto d = std::make_shared<DeviceCSR>();
            d->device = device;
            py::gil_scoped_release nogil;
            gpu::set_device(device);
            Buffer<int32_t> t = upload(r.tokens, r.n_tokens);
            Buffer<int64_t> o = upload(r.offsets, r.N + 1);
            gpu::Scratch s;
            gpu::multi_hot(*d, s, t.data(), o.data(), r.N, r.n_tokens, n_cols);
            return d;
        }, py::arg("tokens"), py::arg("offsets"), py::arg("n_cols"), py::arg("device") = 0,
           "Multi-hot rows of ragged tokens (int32 tokens, int64 offsets), built on the device.")
        .def("take", [](const DeviceCSR& x, py::array rows, int /*threads*/) {
            const int64_t n = rows.ndim() == 1 ? rows.shape(0) : -1;
            const int64_t* r = check<int64_t>(rows, "rows", {n});
            check_rows(r, n, x.n_rows, "rows");
            auto d = std::make_shared<DeviceCSR>();
            py::gil_scoped_release nogil;
            gpu::set_device(x.device);
            Buffer<int64_t> rd = upload(r, n);
            gpu::Scratch s;
            gpu::take_rows(*d, s, x, rd.data(), n);
            return d;
        }, py::arg("rows"), py::arg("threads") = 0, "Rows `rows` as a new device matrix.")
        .def("to_host", [](const DeviceCSR& x) { return download_csr(x); },
             "A host copy (an imdbfast CSR).")
        .def_readonly("n_rows", &DeviceCSR::n_rows)
        .def_readonly("n_cols", &DeviceCSR::n_cols)
        .def_readonly("nnz", &DeviceCSR::nnz)
        .def_readonly("binary", &DeviceCSR::binary)
        .def_readonly("device", &DeviceCSR::device)
        .def_property_readonly("shape", [](const DeviceCSR& x) { return py::make_tuple(x.n_rows, x.n_cols); });

    py::class_<DeviceArray, std::shared_ptr<DeviceArray>>(m, "DeviceArray", py::module_local(),
                                                          "A float32 array on a GPU.")
        .def(py::init([](py::array a, int device) {
                 const int64_t n = a.size();
                 const float* p = check<float>(a.attr("reshape")(-1).cast<py::array>(), "array", {n});
                 return upload_array(p, n, "array", device);
             }),
             py::arg("array"), py::arg("device") = 0, "Copy a float32 host array to the device.")
        .def_static("borrow", [](uintptr_t ptr, int64_t size, py::object owner, int device,
                                 const std::string& name) {
            if (size < 0) throw std::invalid_argument(name + ": negative size");
            auto d = std::make_shared<DeviceArray>();
            d->device = device;
            d->size = size;
            d->ptr = reinterpret_cast<const float*>(ptr);
            d->keep = keep_alive(std::move(owner));
            int64_t bad;
            {
                py::gil_scoped_release nogil;
                gpu::set_device(device);
                bad = gpu::first_nonfinite(d->ptr, size);
            }
            if (bad >= 0)
                throw std::invalid_argument(name + ": holds NaN or infinity at flat index " +
                                            std::to_string(bad));
            return d;
        }, py::arg("ptr"), py::arg("size"), py::arg("owner"), py::arg("device") = 0,
           py::arg("name") = "array",
           "Use `size` float32 values at device address ptr in place (owner is kept alive); "
           "refuses non-finite values.")
        .def("to_host", [](const DeviceArray& a) {
            py::array_t<float> out(a.size);
            gpu::set_device(a.device);
            gpu::copy_to_host(out.mutable_data(), a.ptr, a.size);
            return out;
        })
        .def_readonly("size", &DeviceArray::size)
        .def_readonly("device", &DeviceArray::device);

    // ---- Net: the same interface as _core.Net ---------------------------------------------------
    py::class_<DeviceNet, std::shared_ptr<DeviceNet>>(m, "Net", py::module_local())
        .def(py::init([](std::vector<int64_t> dims, std::vector<std::string> acts,
                         const std::string& loss, const std::string& optimizer,
                         double learning_rate, double rho, double momentum, double epsilon,
                         double beta_1, double beta_2, bool centered, bool nesterov, bool amsgrad,
                         int device) {
                 if (dims.size() < 2 || acts.size() != dims.size() - 1)
                     throw std::invalid_argument("dims: need the input dimension and one width per "
                                                 "layer, with one activation per layer");
                 for (size_t i = 0; i < dims.size(); ++i)
                     positive_dim(dims[i], i == 0 ? "input dimension" : "units");
                 std::vector<int> a;
                 for (auto& s : acts) a.push_back(parse_act(s));
                 const int lk = parse_loss(loss);
                 if (lk == LOSS_BCE_LOGITS && a.back() != ACT_SIGMOID)
                     throw std::invalid_argument("loss: 'bce_logits' needs a sigmoid output layer");
                 if (device < 0) throw std::invalid_argument("device: must be >= 0");
                 return std::make_shared<DeviceNet>(
                     device, std::move(dims), std::move(a), lk,
                     parse_optimizer(optimizer, learning_rate, rho, momentum, epsilon, beta_1,
                                     beta_2, centered, nesterov, amsgrad));
             }),
             py::arg("dims"), py::arg("activations"), py::arg("loss"), py::arg("optimizer"),
             py::arg("learning_rate"), py::arg("rho") = 0.9, py::arg("momentum") = 0.0,
             py::arg("epsilon") = 1e-7, py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999,
             py::arg("centered") = false, py::arg("nesterov") = false, py::arg("amsgrad") = false,
             py::arg("device") = 0)
        .def_property_readonly("dims", &DeviceNet::dims)
        .def_property_readonly("n_slots", &DeviceNet::n_slots)
        .def_property_readonly("device", &DeviceNet::device)
        .def_property("iterations", &DeviceNet::iterations, [](DeviceNet& n, int64_t it) {
            if (it < 0) throw std::invalid_argument("iterations: must be >= 0");
            std::lock_guard<std::mutex> lock(n.mutex());
            n.set_iterations(it);
        })
        .def("get_weights", [](DeviceNet& n) {
            std::lock_guard<std::mutex> lock(n.mutex());
            py::list out;
            const auto shapes = param_shapes(n.dims());
            for (int p = 0; p < n.n_params(); ++p) {
                py::array_t<float> a(shapes[p]);
                n.get_param(p, a.mutable_data());
                out.append(a);
            }
            return out;
        }, "Copies of [kernel_1 (I, H), bias_1 (H), ...] in Keras's order.")
        .def("set_weights", [](DeviceNet& n, py::list ws) {
            const auto src = check_weights(ws, n.dims());
            std::lock_guard<std::mutex> lock(n.mutex());
            for (int p = 0; p < n.n_params(); ++p) n.set_param(p, src[p]);
        })
        .def("get_slots", [](DeviceNet& n) {
            std::lock_guard<std::mutex> lock(n.mutex());
            py::list out;
            for (int p = 0; p < n.n_params(); ++p) {
                py::list ps;
                for (int s = 0; s < n.n_slots(); ++s) {
                    py::array_t<float> a(n.param_size(p));
                    n.get_slot(p, s, a.mutable_data());
                    ps.append(a);
                }
                out.append(ps);
            }
            return out;
        }, "Optimizer slots: [[slot arrays of param 0], ...], flat.")
        .def("set_slots", [](DeviceNet& n, py::list slots) {
            const auto src = check_slots(slots, n.dims(), n.n_slots());
            std::lock_guard<std::mutex> lock(n.mutex());
            for (int p = 0; p < n.n_params(); ++p)
                for (int s = 0; s < n.n_slots(); ++s) n.set_slot(p, s, src[p][s]);
        })
        .def("train_batches", [](DeviceNet& n, py::object x, py::object y, py::object sw,
                                 py::array order, int64_t batch_size, int64_t batch_begin,
                                 int64_t batch_end, int /*threads*/, bool per_batch) {
            auto xd = data_arg(x, n.device(), n.dims()[0]);
            const int64_t N = xd->n_rows, O = n.dims().back();
            auto yd = array_arg(y, "y", {N, O}, n.device());
            std::shared_ptr<DeviceArray> swd;
            if (!sw.is_none()) swd = array_arg(sw, "sample_weight", {N}, n.device());
            const int64_t* op = check_epoch(order, N, batch_size, batch_begin, batch_end);
            const int64_t steps = batch_end - batch_begin;
            py::array_t<double> bl(per_batch ? steps : 0), ba(per_batch ? steps : 0);
            double* blp = per_batch ? bl.mutable_data() : nullptr;
            double* bap = per_batch ? ba.mutable_data() : nullptr;
            Stats st;
            {
                py::gil_scoped_release nogil;
                std::unique_lock<std::mutex> lock(n.mutex(), std::try_to_lock);
                if (!lock.owns_lock())
                    throw std::runtime_error("this model is being used by another thread; fit needs it alone");
                st = n.train_batches(*xd, yd->ptr, swd ? swd->ptr : nullptr, op, batch_size,
                                     batch_begin, batch_end, blp, bap);
            }
            return py::make_tuple(st.loss_sum, st.correct_sum, st.rows, bl, ba);
        }, py::arg("x"), py::arg("y"), py::arg("sample_weight"), py::arg("order"),
           py::arg("batch_size"), py::arg("batch_begin"), py::arg("batch_end"),
           py::arg("threads") = 0, py::arg("per_batch") = false,
           "As _core.Net.train_batches; x a CSR or DeviceCSR, y and sample_weight host arrays "
           "or DeviceArrays (threads is ignored).")
        .def("predict", [](DeviceNet& n, py::object x, int /*threads*/, int64_t first, int64_t last) {
            auto xd = data_arg(x, n.device(), n.dims()[0]);
            check_row_range(first, last, xd->n_rows);
            py::array_t<float> out({last - first, n.dims().back()});
            float* o = out.mutable_data();
            py::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(n.mutex());
            n.predict(o, false, *xd, first, last);
            return out;
        }, py::arg("x"), py::arg("threads") = 0, py::arg("first") = 0, py::arg("last") = -1,
           "Outputs for rows [first, last) of x as a host array.")
        .def("predict_to", [](DeviceNet& n, py::object x, uintptr_t out, int64_t first, int64_t last) {
            auto xd = data_arg(x, n.device(), n.dims()[0]);
            check_row_range(first, last, xd->n_rows);
            py::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(n.mutex());
            n.predict(reinterpret_cast<float*>(out), true, *xd, first, last);
        }, py::arg("x"), py::arg("out"), py::arg("first") = 0, py::arg("last") = -1,
           "Outputs for rows [first, last) written to device address `out` (float32, C order).")
        .def("evaluate", [](DeviceNet& n, py::object x, py::object y, py::object sw, int /*threads*/,
                            int64_t first, int64_t last) {
            auto xd = data_arg(x, n.device(), n.dims()[0]);
            const int64_t N = xd->n_rows, O = n.dims().back();
            auto yd = array_arg(y, "y", {N, O}, n.device());
            std::shared_ptr<DeviceArray> swd;
            if (!sw.is_none()) swd = array_arg(sw, "sample_weight", {N}, n.device());
            check_row_range(first, last, N);
            Stats st;
            {
                py::gil_scoped_release nogil;
                std::lock_guard<std::mutex> lock(n.mutex());
                st = n.evaluate(*xd, yd->ptr, swd ? swd->ptr : nullptr, first, last);
            }
            return py::make_tuple(st.loss_sum, st.correct_sum, st.rows);
        }, py::arg("x"), py::arg("y"), py::arg("sample_weight"), py::arg("threads") = 0,
           py::arg("first") = 0, py::arg("last") = -1);

    // ---- single kernels on host arrays (tests: the same signatures as _core's) -------------------
    m.def("sparse_forward", [](const CSR& x, py::array rows, py::array W, py::array b) {
        const int64_t B = rows.ndim() == 1 ? rows.shape(0) : -1;
        const int64_t* r = check<int64_t>(rows, "rows", {B});
        check_rows(r, B, x.n_rows, "rows");
        const int64_t H = W.ndim() == 2 ? W.shape(1) : -1;
        const float* w = check<float>(W, "W", {x.n_cols, H});
        const float* bb = check<float>(b, "b", {H});
        auto xd = upload_csr(x, 0);
        Buffer<int64_t> rd = upload(r, B);
        Buffer<float> wd = upload(w, x.n_cols * H), bd = upload(bb, H), z(B * H + 1), a(B * H + 1);
        gpu::sparse_forward(z.data(), a.data(), ACT_LINEAR, xd->view(), rd.data(), 0, wd.data(),
                            bd.data(), H, B);
        return download(z, {B, H});
    }, py::arg("x"), py::arg("rows"), py::arg("W"), py::arg("b"));

    m.def("dense_forward", [](py::array x, py::array W, py::array b) {
        const int64_t B = x.ndim() == 2 ? x.shape(0) : -1, I = x.ndim() == 2 ? x.shape(1) : -1;
        const float* xp = check<float>(x, "x", {B, I});
        const int64_t H = W.ndim() == 2 ? W.shape(1) : -1;
        const float* w = check<float>(W, "W", {I, H});
        const float* bb = check<float>(b, "b", {H});
        Buffer<float> xd = upload(xp, B * I), wd = upload(w, I * H), bd = upload(bb, H),
                      z(B * H + 1), a(B * H + 1);
        gpu::dense_forward(z.data(), a.data(), ACT_LINEAR, xd.data(), wd.data(), bd.data(), I, H, B);
        return download(z, {B, H});
    }, py::arg("x"), py::arg("W"), py::arg("b"));

    m.def("act_forward", [](py::array z, const std::string& act) {
        const int64_t n = z.size();
        const float* zp = check<float>(z, "z", {n});
        const int k = parse_act(act);
        Buffer<float> zd = upload(zp, n), a(n + 1);
        gpu::act_forward(a.data(), zd.data(), k, n);
        return download(a, {n});
    }, py::arg("z"), py::arg("activation"));

    m.def("act_backward", [](py::array da, py::array z, py::array a, const std::string& act) {
        const int64_t n = z.size();
        const float* dap = check<float>(da, "da", {n});
        const float* zp = check<float>(z, "z", {n});
        const float* ap = check<float>(a, "a", {n});
        const int k = parse_act(act);
        Buffer<float> dad = upload(dap, n), zd = upload(zp, n), ad = upload(ap, n), dz(n + 1);
        gpu::act_backward(dz.data(), dad.data(), zd.data(), ad.data(), k, n);
        return download(dz, {n});
    }, py::arg("da"), py::arg("z"), py::arg("a"), py::arg("activation"));

    m.def("dense_backward", [](py::array dz, py::array x, py::array W) {
        const int64_t B = dz.ndim() == 2 ? dz.shape(0) : -1, H = dz.ndim() == 2 ? dz.shape(1) : -1;
        const float* dzp = check<float>(dz, "dz", {B, H});
        const int64_t I = x.ndim() == 2 ? x.shape(1) : -1;
        const float* xp = check<float>(x, "x", {B, I});
        const float* w = check<float>(W, "W", {I, H});
        Buffer<float> dzd = upload(dzp, B * H), xd = upload(xp, B * I), wd = upload(w, I * H),
                      dx(B * I + 1), dW(I * H + 1), db(H + 1);
        // linear "activation" below: the input gradient itself (x stands in for z and a)
        gpu::backward_input(dx.data(), dzd.data(), wd.data(), xd.data(), xd.data(), ACT_LINEAR, I,
                            H, B);
        gpu::weight_grad(dW.data(), dzd.data(), xd.data(), B, I, H);
        gpu::weight_grad(db.data(), dzd.data(), nullptr, B, 1, H);
        return py::make_tuple(download(dx, {B, I}), download(dW, {I, H}), download(db, {H}));
    }, py::arg("dz"), py::arg("x"), py::arg("W"), "Returns (dx, dW, db).");

    m.def("sparse_backward", [](py::array dz, const CSR& x, py::array rows, int /*parts*/) {
        const int64_t B = rows.ndim() == 1 ? rows.shape(0) : -1;
        const int64_t* r = check<int64_t>(rows, "rows", {B});
        check_rows(r, B, x.n_rows, "rows");
        const int64_t H = dz.ndim() == 2 ? dz.shape(1) : -1;
        const float* dzp = check<float>(dz, "dz", {B, H});
        const int64_t D = x.n_cols;
        auto xd = upload_csr(x, 0);
        // One batch of all B rows: the epoch index over `rows`, then the batch's gradient.
        Buffer<int64_t> rd = upload(r, B);
        Buffer<float> dzd = upload(dzp, B * H), G(D * H);
        std::vector<float> zero(static_cast<size_t>(D * H), 0.0f);
        gpu::copy_to_device(G.data(), zero.data(), D * H);
        gpu::EpochIndex ix;
        gpu::Scratch s;
        if (B > 0) {
            gpu::build_epoch_index(ix, s, xd->view(), rd.data(), B, B);
            gpu::sparse_weight_grad(G.data(), ix, 0, dzd.data(), D, H);
        }
        std::vector<float> g(static_cast<size_t>(D * H));
        gpu::copy_to_host(g.data(), G.data(), D * H);
        std::vector<char> seen(static_cast<size_t>(D), 0);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t k = x.indptr[r[b]]; k < x.indptr[r[b] + 1]; ++k) seen[x.indices[k]] = 1;
        std::vector<int64_t> touched;
        for (int64_t c = 0; c < D; ++c)
            if (seen[c]) touched.push_back(c);
        const int64_t n = static_cast<int64_t>(touched.size());
        py::array_t<int64_t> t(n);
        py::array_t<float> gc({n, H});
        for (int64_t i = 0; i < n; ++i) {
            t.mutable_data()[i] = touched[i];
            std::copy_n(g.data() + touched[i] * H, H, gc.mutable_data() + i * H);
        }
        return py::make_tuple(t, gc);
    }, py::arg("dz"), py::arg("x"), py::arg("rows"), py::arg("parts") = 1,
       "Returns (the W1 rows the batch touches, ascending, and their gradient rows).");

    m.def("loss_forward_backward", [](py::array z, py::array a, py::array y, py::object sw,
                                      const std::string& last_act, const std::string& loss) {
        const int64_t B = z.ndim() == 2 ? z.shape(0) : -1, O = z.ndim() == 2 ? z.shape(1) : -1;
        const float* zp = check<float>(z, "z", {B, O});
        const float* ap = check<float>(a, "a", {B, O});
        const float* yp = check<float>(y, "y", {B, O});
        const float* swp = sw.is_none() ? nullptr : check<float>(sw.cast<py::array>(), "sample_weight", {B});
        const int la = parse_act(last_act), lk = parse_loss(loss);
        Buffer<float> zd = upload(zp, B * O), ad = upload(ap, B * O), yd = upload(yp, B * O),
                      swd = upload(swp ? swp : zp, swp ? B : 0), dz(B * O + 1);
        Buffer<double> lr(B + 1), cr(B + 1);
        gpu::loss_rows(dz.data(), lr.data(), cr.data(), zd.data(), ad.data(), yd.data(),
                       swp ? swd.data() : nullptr, nullptr, 0, la, lk, O, B);
        return py::make_tuple(download(dz, {B, O}), download(lr, {B}), download(cr, {B}));
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
        Buffer<float> wd = upload(wp, n), gd = upload(gp, n);
        std::vector<Buffer<float>> sd;
        std::vector<float*> sdp;
        for (float* p : sp) sd.push_back(upload(p, n));
        for (auto& b : sd) sdp.push_back(b.data());
        gpu::optimizer_step(c, iteration, wd.data(), gd.data(), sdp.data(), n);
        gpu::copy_to_host(wp, wd.data(), n);
        for (size_t i = 0; i < sp.size(); ++i) gpu::copy_to_host(sp[i], sd[i].data(), n);
    }, py::arg("kind"), py::arg("iteration"), py::arg("w"), py::arg("g"), py::arg("slots"),
       py::arg("learning_rate"), py::arg("rho") = 0.9, py::arg("momentum") = 0.0,
       py::arg("epsilon") = 1e-7, py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999,
       py::arg("centered") = false, py::arg("nesterov") = false, py::arg("amsgrad") = false,
       "One optimizer step in place on flat float32 host arrays.");

    m.def("multi_hot", [](py::array tokens, py::array offsets, int64_t n_cols, int /*threads*/) {
        const Ragged r = check_ragged(tokens, offsets);
        positive_dim(n_cols, "n_cols");
        DeviceCSR d;
        {
            py::gil_scoped_release nogil;
            Buffer<int32_t> t = upload(r.tokens, r.n_tokens);
            Buffer<int64_t> o = upload(r.offsets, r.N + 1);
            gpu::Scratch s;
            gpu::multi_hot(d, s, t.data(), o.data(), r.N, r.n_tokens, n_cols);
        }
        return download_csr(d);
    }, py::arg("tokens"), py::arg("offsets"), py::arg("n_cols"), py::arg("threads") = 0,
       "Multi-hot CSR of ragged tokens, built on the device, returned as a host CSR.");
}
