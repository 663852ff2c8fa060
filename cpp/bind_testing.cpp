// bind_testing.cpp: the test module imdbfast._testing (built with the test option,
// IMDBFAST_CUDA_SIM, as _cuda_sim): the core's switches for tests, reached through _core's
// capsule, so that _core binds no test hook. The GPU simulator's own switch is
// _cuda_sim._set_launch_order.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "parallel.h"

namespace py = pybind11;

PYBIND11_MODULE(_testing, m) {
    m.doc() = "imdbfast's test switches (not for use outside the tests).";
    py::object capsule = py::module_::import("imdbfast._core").attr("_test_hooks");
    const auto* hooks = static_cast<const imdbfast::cpu::TestHooks*>(
        PyCapsule_GetPointer(capsule.ptr(), "imdbfast._core._test_hooks"));
    if (!hooks) throw py::error_already_set();
    m.attr("_hooks_owner") = capsule;  // keeps the pointer's module alive
    m.def("split_all_work", [hooks](bool on) { return hooks->split_all_work(on); }, py::arg("on"),
          "Use every requested thread even where the work is too small to gain from it (results "
          "are the same by design). Returns the previous setting.");
    m.def("fake_busy", [hooks](bool on) { return hooks->fake_busy(on); }, py::arg("on"),
          "Pretend the machine is busy, so that training calls shed threads midway (results are "
          "the same by design). Returns the previous setting.");
    m.def("cgroup_cpu_limit", [hooks](const std::string& proc_self_cgroup, const std::string& root) {
        return hooks->cgroup_cpu_limit(proc_self_cgroup, root);
    }, py::arg("proc_self_cgroup"), py::arg("root"),
       "The CPU quota of cgroups read from a mount at `root`.");
}
