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
#include <optional>
#include <stdexcept>
#include <string>

#include "bind_kernels.h"
#include "bind_net.h"
#include "bind_util.h"
#include "device.h"
#include "kernels.cuh"
#include "net.cuh"

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
    check_width(d->n_cols, D);
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
    const py::array host = ndarray_arg(a, name);
    return upload_array(check<float>(host, name, shape), n, name, device);
}

// Keeps a Python object alive from C++ (released with the GIL held).
std::shared_ptr<void> keep_alive(py::object o) {
    return std::shared_ptr<void>(new py::object(std::move(o)), [](void* p) {
        py::gil_scoped_acquire gil;
        delete static_cast<py::object*>(p);
    });
}

// Python arguments as the device Net's inputs (bind_net.h): data and labels on its device,
// copied up when they are host arrays.
struct GpuIo {
    using Data = std::shared_ptr<DeviceCSR>;
    struct Labels {
        std::shared_ptr<DeviceArray> y_array, sw_array;
        const float* y = nullptr;
        const float* sw = nullptr;
    };
    static Data data(const DeviceNet& n, const py::object& x) {
        return data_arg(x, n.device(), n.spec().input_dim);
    }
    static int64_t rows(const Data& d) { return d->n_rows; }
    static Labels labels(const DeviceNet& n, const Data& d, const py::object& y,
                         const py::object& sw) {
        const int64_t N = d->n_rows, O = n.spec().outputs();
        Labels l;
        l.y_array = array_arg(y, "y", {N, O}, n.device());
        l.y = l.y_array->ptr;
        if (!sw.is_none()) {
            l.sw_array = array_arg(sw, "sample_weight", {N}, n.device());
            l.sw = l.sw_array->ptr;
        }
        return l;
    }
};

// The GPU's compute for the single-kernel functions (bind_kernels.h): copy the host inputs to
// the device, launch, copy the outputs back (on the current device).
struct GpuKernels {
    static CSR multi_hot(const Ragged& r, int64_t D, int /*threads*/) {
        Buffer<int32_t> t = upload(r.tokens, r.n_tokens);
        Buffer<int64_t> o = upload(r.offsets, r.N + 1);
        DeviceCSR d;
        gpu::Scratch s;
        gpu::multi_hot(d, s, t.data(), o.data(), r.N, r.n_tokens, D);
        return std::move(*download_csr(d));
    }
    static void sparse_forward(float* z, const CSR& x, const int64_t* rows, int64_t B,
                               const float* W, const float* b, int64_t H) {
        auto xd = upload_csr(x, 0);
        Buffer<int64_t> rd = upload(rows, B);
        Buffer<float> wd = upload(W, x.n_cols * H), bd = upload(b, H), zd(B * H + 1), ad(B * H + 1);
        gpu::sparse_forward(zd.data(), ad.data(), ACT_LINEAR, xd->view(), rd.data(), 0, wd.data(),
                            bd.data(), H, B);
        gpu::copy_to_host(z, zd.data(), B * H);
    }
    static void dense_forward(float* z, const float* x, const float* W, const float* b, int64_t B,
                              int64_t I, int64_t H) {
        Buffer<float> xd = upload(x, B * I), wd = upload(W, I * H), bd = upload(b, H),
                      zd(B * H + 1), ad(B * H + 1);
        gpu::dense_forward(zd.data(), ad.data(), ACT_LINEAR, xd.data(), wd.data(), bd.data(), I, H, B);
        gpu::copy_to_host(z, zd.data(), B * H);
    }
    static void softmax_forward(float* a, const float* z, int64_t H, int64_t B) {
        Buffer<float> zd = upload(z, B * H), ad(B * H + 1);
        gpu::softmax_forward(ad.data(), zd.data(), H, B);
        gpu::copy_to_host(a, ad.data(), B * H);
    }
    static void dropout_forward(float* d, const float* a, const int64_t* rows,
                                const DropoutStep& s, int64_t H, int64_t B) {
        Buffer<float> ad = upload(a, B * H), dd(B * H + 1);
        Buffer<int64_t> rd = upload(rows, B);
        gpu::dropout_forward(dd.data(), ad.data(), rd.data(), 0, s, H, B);
        gpu::copy_to_host(d, dd.data(), B * H);
    }
    static void act_forward(float* a, const float* z, int act, int64_t n) {
        Buffer<float> zd = upload(z, n), ad(n + 1);
        gpu::act_forward(ad.data(), zd.data(), act, n);
        gpu::copy_to_host(a, ad.data(), n);
    }
    static void act_backward(float* dz, const float* da, const float* z, const float* a, int act,
                             int64_t n) {
        Buffer<float> dad = upload(da, n), zd = upload(z, n), ad = upload(a, n), dzd(n + 1);
        gpu::act_backward(dzd.data(), dad.data(), zd.data(), ad.data(), act, n);
        gpu::copy_to_host(dz, dzd.data(), n);
    }
    static void dense_backward(float* dx, float* dW, float* db, const float* dz, const float* x,
                               const float* W, int64_t B, int64_t I, int64_t H) {
        Buffer<float> dzd = upload(dz, B * H), xd = upload(x, B * I), wd = upload(W, I * H),
                      dxd(B * I + 1), dWd(I * H + 1), dbd(H + 1);
        // a linear "activation": the input gradient itself (x stands in for z and a)
        gpu::dense_backward_input(dxd.data(), dzd.data(), wd.data(), xd.data(), xd.data(), ACT_LINEAR, I,
                            H, B);
        gpu::dense_backward_weight(dWd.data(), dzd.data(), xd.data(), B, I, H);
        gpu::bias_backward(dbd.data(), dzd.data(), B, H);
        gpu::copy_to_host(dx, dxd.data(), B * I);
        gpu::copy_to_host(dW, dWd.data(), I * H);
        gpu::copy_to_host(db, dbd.data(), H);
    }
    // One batch of all B rows: the epoch index over `rows`, then the batch's gradient into a
    // zeroed (D, H) G; the touched columns are the index's groups (one per column present).
    static void sparse_backward(std::vector<int64_t>& touched, std::vector<float>& g,
                                const float* dz, const CSR& x, const int64_t* rows, int64_t B,
                                int64_t H, int /*parts*/) {
        const int64_t D = x.n_cols;
        auto xd = upload_csr(x, 0);
        std::vector<float> dense(static_cast<size_t>(D * H), 0.0f);
        Buffer<int64_t> rd = upload(rows, B);
        Buffer<float> dzd = upload(dz, B * H), G = upload(dense.data(), D * H);
        gpu::EpochIndex ix;
        gpu::Scratch s;
        if (B > 0) {
            gpu::build_epoch_index(ix, s, xd->view(), rd.data(), B, B);
            gpu::sparse_backward_weight(G.data(), ix, 0, dzd.data(), D, H);
        }
        gpu::copy_to_host(dense.data(), G.data(), D * H);
        std::vector<int64_t> starts(static_cast<size_t>(ix.n_groups));
        gpu::copy_to_host(starts.data(), ix.group_start.data(), ix.n_groups);
        touched.clear();
        g.clear();
        for (int64_t start : starts) {
            const int64_t c = static_cast<int64_t>(gpu::read_one(ix.sorted_keys.data() + start) %
                                                   static_cast<uint64_t>(D));
            touched.push_back(c);
            g.insert(g.end(), dense.begin() + c * H, dense.begin() + (c + 1) * H);
        }
    }
    static void loss_forward_backward(float* dz, double* lr, double* cr, const float* z,
                                      const float* a, const float* y, const float* sw, int act,
                                      int loss, int64_t B, int64_t O) {
        Buffer<float> zd = upload(z, B * O), ad = upload(a, B * O), yd = upload(y, B * O),
                      swd = upload(sw ? sw : z, sw ? B : 0), dzd(B * O + 1);
        Buffer<double> lrd(B + 1), crd(B + 1);
        gpu::loss_forward_backward(dzd.data(), lrd.data(), crd.data(), zd.data(), ad.data(), yd.data(),
                       sw ? swd.data() : nullptr, nullptr, 0, act, loss, O, B);
        gpu::copy_to_host(dz, dzd.data(), B * O);
        gpu::copy_to_host(lr, lrd.data(), B);
        gpu::copy_to_host(cr, crd.data(), B);
    }
    static void optimizer_update(const cpu::OptimizerConfig& c, int64_t iteration, float* w,
                                 const float* g, float* const* slots, int64_t n) {
        const int k = cpu::optimizer_num_slots(c);
        Buffer<float> wd = upload(w, n), gd = upload(g, n);
        std::vector<Buffer<float>> sd;
        std::vector<float*> sp;
        for (int i = 0; i < k; ++i) sd.push_back(upload(slots[i], n));
        for (auto& b : sd) sp.push_back(b.data());
        gpu::optimizer_update(c, iteration, wd.data(), gd.data(), sp.data(), n);
        gpu::copy_to_host(w, wd.data(), n);
        for (int i = 0; i < k; ++i) gpu::copy_to_host(slots[i], sd[i].data(), n);
    }
};

}  // namespace

PYBIND11_MODULE(IMDBFAST_CUDA_MODULE, m) {
    bind::register_memory_error();
#ifdef IMDBFAST_CUDA_SIM
    m.doc() = "imdbfast's GPU kernels run serially on the host (a test double of _cuda).";
    m.attr("simulated") = true;
    m.attr("architectures") = "host simulator";
    m.def("_set_launch_order", [](int order) {
        if (order < 0 || order > 2) throw std::invalid_argument("order: must be 0, 1 or 2");
        return gpu::sim_launch_order().exchange(order);
    }, py::arg("order"),
       "For tests: run every kernel's elements ascending (0), descending (1) or evens then odds "
       "(2); results must not change. Returns the previous order.");
    m.def("_take_waited_streams", [] { return gpu::sim_take_waited_streams(); },
          "For tests: the foreign streams waited for since the last call.");
    m.def("_set_strict_pointers", [](bool strict) { return gpu::sim_strict_pointers().exchange(strict); },
          py::arg("strict"),
          "For tests: count every pointer handed in as host memory (as a GPU would see a host "
          "pointer). Returns the previous setting.");
    m.def("_fail_allocation", [](int64_t k) {
        if (k < 0) throw std::invalid_argument("k: must be >= 0");
        return gpu::sim_fail_allocation().exchange(k);
    }, py::arg("k"), "For tests: the k-th next device allocation fails (0: none).");
#else
    m.doc() = "imdbfast's CUDA backend: device-resident training, inference and CSR building.";
    m.attr("simulated") = false;
    m.attr("architectures") = IMDBFAST_CUDA_ARCHITECTURES;
#endif
    m.def("_set_fuse_small_layers", [](bool on) { return gpu::fuse_small_layers().exchange(on); },
          py::arg("on"),
          "For tests and device benchmarks: train the small layers in one launch a step where "
          "possible (default) or layer by layer; results must not change. Returns the previous "
          "setting.");
    m.def("_set_cuda_graphs", [](bool on) { return gpu::cuda_graphs().exchange(on); },
          py::arg("on"),
          "For tests and device benchmarks: capture each training call's steps as a CUDA graph "
          "and launch it as one (default off; the simulator launches directly either way); "
          "results must not change. Returns the previous setting.");
    m.def("devices", [] {
        std::string reason;
        py::list out;
        for (const auto& d : gpu::devices(&reason)) {
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
    m.def("runtime_version", &gpu::runtime_version);
    m.def("driver_version", &gpu::driver_version);

    // ---- device data -------------------------------------------------------------------------
    py::class_<DeviceCSR, std::shared_ptr<DeviceCSR>>(m, "DeviceCSR", py::module_local(),
                                                      "A CSR matrix resident on a GPU.")
        .def(py::init([](const CSR& x, int device) { return upload_csr(x, device); }),
             py::arg("x"), py::arg("device") = 0, "Copy a host CSR matrix to the device.")
        .def_static("from_dense", [](uintptr_t ptr, int64_t n_rows, int64_t n_cols,
                                     const std::string& dtype, int device,
                                     std::optional<uintptr_t> stream) {
            if (n_rows < 0 || n_cols < 1) throw std::invalid_argument("x: bad shape");
            positive_dim(n_cols, "x: columns");
            if (dtype != "float32" && dtype != "float64")
                throw py::type_error("x: a device matrix must be float32 or float64, got " + dtype);
            const size_t item = dtype == "float32" ? 4 : 8;
            if (n_rows > 0 && n_cols > INT64_MAX / static_cast<int64_t>(item) / n_rows)
                throw std::invalid_argument("x: shape too large");
            auto d = std::make_shared<DeviceCSR>();
            d->device = device;
            gpu::Scratch s;
            py::gil_scoped_release nogil;
            gpu::set_device(device);
            gpu::check_device_pointer(reinterpret_cast<const void*>(ptr),
                                      static_cast<size_t>(n_rows * n_cols) * item, device, "x");
            if (stream) gpu::wait_for_stream(*stream);
            if (item == 4)
                gpu::csr_from_dense(*d, s, reinterpret_cast<const float*>(ptr), n_rows, n_cols);
            else
                gpu::csr_from_dense(*d, s, reinterpret_cast<const double*>(ptr), n_rows, n_cols);
            return d;
        }, py::arg("ptr"), py::arg("n_rows"), py::arg("n_cols"), py::arg("dtype"),
           py::arg("device") = 0, py::arg("stream") = py::none(),
           "CSR of a C-contiguous (n_rows, n_cols) matrix at device address ptr (cupy: "
           "x.data.ptr), built on the device once the producer's `stream` (the "
           "__cuda_array_interface__ field; None: nothing to wait for) has written it.")
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
            gpu::csr_take_rows(*d, s, x, rd.data(), n);
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
                 const py::array flat = a.attr("reshape")(-1);  // (a copy when a is not contiguous)
                 return upload_array(check<float>(flat, "array", {n}), n, "array", device);
             }),
             py::arg("array"), py::arg("device") = 0, "Copy a float32 host array to the device.")
        .def_static("borrow", [](uintptr_t ptr, int64_t size, py::object owner, int device,
                                 const std::string& name, std::optional<uintptr_t> stream) {
            if (size < 0) throw std::invalid_argument(name + ": negative size");
            if (size > INT64_MAX / 4) throw std::invalid_argument(name + ": size too large");
            auto d = std::make_shared<DeviceArray>();
            d->device = device;
            d->size = size;
            d->ptr = reinterpret_cast<const float*>(ptr);
            d->keep = keep_alive(std::move(owner));
            int64_t bad;
            {
                py::gil_scoped_release nogil;
                gpu::set_device(device);
                gpu::check_device_pointer(d->ptr, static_cast<size_t>(size) * 4, device, name);
                if (stream) gpu::wait_for_stream(*stream);
                bad = gpu::first_nonfinite(d->ptr, size);
            }
            if (bad >= 0)
                throw std::invalid_argument(name + ": holds NaN or infinity at flat index " +
                                            std::to_string(bad));
            return d;
        }, py::arg("ptr"), py::arg("size"), py::arg("owner"), py::arg("device") = 0,
           py::arg("name") = "array", py::arg("stream") = py::none(),
           "Use `size` float32 values at device address ptr in place (owner is kept alive), "
           "once the producer's `stream` (as from_dense's) has written them; refuses non-finite "
           "values.")
        .def("to_host", [](const DeviceArray& a) {
            py::array_t<float> out(a.size);
            gpu::set_device(a.device);
            gpu::copy_to_host(out.mutable_data(), a.ptr, a.size);
            return out;
        })
        .def_readonly("size", &DeviceArray::size)
        .def_readonly("device", &DeviceArray::device);

    // ---- Net: bind_net.h, as _core's -------------------------------------------------------
    py::class_<DeviceNet, std::shared_ptr<DeviceNet>> net(m, "Net", py::module_local(),
                                                          "A network on one device (cuda/net.cuh).");
    net.def(py::init([](py::dict spec, int device) {
                if (device < 0) throw std::invalid_argument("device: must be >= 0");
                return std::make_shared<DeviceNet>(device, parse_spec(spec));
            }),
            py::arg("spec"), py::arg("device") = 0,
            "As _core.Net, on device `device`. Data and labels may be host arrays (copied up for "
            "the call) or DeviceCSR / DeviceArray objects on that device.")
        .def_property_readonly("device", &DeviceNet::device)
        .def("predict_to", [](DeviceNet& n, py::object x, uintptr_t out, int64_t first, int64_t last,
                              std::optional<uintptr_t> stream) {
            const GpuIo::Data d = GpuIo::data(n, x);
            check_row_range(first, last, d->n_rows);
            const int64_t rows = last - first;  // (last resolved by the check)
            py::gil_scoped_release nogil;
            gpu::set_device(n.device());
            gpu::check_device_pointer(reinterpret_cast<const void*>(out),
                                      static_cast<size_t>(std::max<int64_t>(0, rows)) *
                                          static_cast<size_t>(n.spec().outputs()) * 4,
                                      n.device(), "out");
            if (stream) gpu::wait_for_stream(*stream);  // (its memory may still be in use there)
            n.predict_on_device(reinterpret_cast<float*>(out), *d, first, last);
        }, py::arg("x"), py::arg("out"), py::arg("first") = 0, py::arg("last") = -1,
           py::arg("stream") = py::none(),
           "Outputs for rows [first, last) written to device address `out` (float32, C order), "
           "after the work on `out`'s producer stream; done when this returns.");
    def_net<DeviceNet, GpuIo>(net);

    // ---- single kernels on host arrays (tests): bind_kernels.h, as _core's ---------------------
    bind::def_kernels<GpuKernels>(m);
}
