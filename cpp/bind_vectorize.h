// bind_vectorize.h: _core's TextVectorization functions (vectorize.h). Texts arrive as a list
// of str (the Python layer turns bytes and arrays into one); their UTF-8 is read in place and
// the GIL released around the work.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bind_util.h"
#include "vectorize.h"

namespace imdbfast {
namespace bind {

namespace py = pybind11;

// The UTF-8 of each str of a list, valid while the list lives.
struct TextArgs {
    std::vector<const char*> ptr;
    std::vector<int64_t> len;
    explicit TextArgs(const py::list& texts) {
        const size_t N = texts.size();
        ptr.resize(N);
        len.resize(N);
        for (size_t i = 0; i < N; ++i) {
            PyObject* o = texts[i].ptr();
            if (!PyUnicode_Check(o))
                throw py::type_error("texts: element " + std::to_string(i) + " is not a str");
            Py_ssize_t n = 0;
            const char* s = PyUnicode_AsUTF8AndSize(o, &n);  // cached by the str: stays valid
            if (!s) throw py::error_already_set();          // (a lone surrogate)
            ptr[i] = s;
            len[i] = n;
        }
    }
    Texts view() const { return Texts{ptr.data(), len.data(), static_cast<int64_t>(ptr.size())}; }
};

inline TextRules text_rules(bool lower, bool strip, int split, const std::vector<int>& ngrams) {
    if (split < SPLIT_NONE || split > SPLIT_CHARACTER) throw py::value_error("split: unknown code");
    for (int w : ngrams)
        if (w < 1) throw py::value_error("ngrams: widths must be >= 1");
    return TextRules{lower, strip, split, ngrams};
}

inline void def_vectorize(py::module_& m) {
    m.def("count_terms", [](py::list texts, bool lower, bool strip, int split, std::vector<int> ngrams,
                            std::vector<std::string> exclude, int64_t keep, int threads) {
        const TextRules r = text_rules(lower, strip, split, ngrams);
        const TextArgs t(texts);
        TermCounts c;
        {
            py::gil_scoped_release nogil;
            c = cpu::count_terms(t.view(), r, exclude, keep, threads);
        }
        const size_t n = c.counts.size();
        py::list terms(n);
        for (size_t i = 0; i < n; ++i) {
            PyObject* s = PyUnicode_DecodeUTF8(c.bytes.data() + c.offsets[i],
                                               c.offsets[i + 1] - c.offsets[i], "strict");
            if (!s) throw py::error_already_set();
            PyList_SET_ITEM(terms.ptr(), static_cast<Py_ssize_t>(i), s);
        }
        const auto N = static_cast<py::ssize_t>(n);
        return py::make_tuple(terms, vector_to_array(std::move(c.counts), {N}),
                              vector_to_array(std::move(c.docs), {N}));
    }, py::arg("texts"), py::arg("lower"), py::arg("strip_punctuation"), py::arg("split"),
       py::arg("ngrams"), py::arg("exclude"), py::arg("keep"), py::arg("threads") = 0,
       "(terms, counts, document counts) of every distinct term not in exclude, count "
       "descending then the bytes descending (Keras's vocabulary order); the first `keep` when "
       "keep >= 0.");

    py::class_<TermIndex, std::shared_ptr<TermIndex>>(m, "TermIndex", "A vocabulary's term -> index lookup.")
        .def(py::init([](const std::vector<std::string>& terms, int64_t first) {
                 if (first < 0 || first > INT32_MAX - static_cast<int64_t>(terms.size()))
                     throw py::value_error("first: the indices must lie in [0, 2**31)");
                 return std::make_shared<TermIndex>(terms, first);
             }),
             py::arg("terms"), py::arg("first"))
        .def_property_readonly("end", &TermIndex::end)
        .def("__len__", &TermIndex::size)
        .def("ids", [](const TermIndex& ix, py::list texts, bool lower, bool strip, int split,
                       std::vector<int> ngrams, int64_t oov, int64_t seq_len, int threads) {
            const TextRules r = text_rules(lower, strip, split, ngrams);
            const TextArgs t(texts);
            int64_t L = 0;
            std::vector<int64_t> out;
            {
                py::gil_scoped_release nogil;
                out = cpu::texts_to_ids(L, t.view(), r, ix, oov, seq_len, threads);
            }
            return vector_to_array(std::move(out), {static_cast<py::ssize_t>(t.ptr.size()),
                                                    static_cast<py::ssize_t>(L)});
        }, py::arg("texts"), py::arg("lower"), py::arg("strip_punctuation"), py::arg("split"),
           py::arg("ngrams"), py::arg("oov"), py::arg("seq_len"), py::arg("threads") = 0)
        .def("bag", [](const TermIndex& ix, py::list texts, bool lower, bool strip, int split,
                       std::vector<int> ngrams, int64_t oov, int64_t n_cols, int mode,
                       py::object idf, int threads) {
            const TextRules r = text_rules(lower, strip, split, ngrams);
            if (mode < BAG_MULTI_HOT || mode > BAG_TF_IDF) throw py::value_error("mode: unknown code");
            if (n_cols < ix.end() || n_cols > INT32_MAX)
                throw py::value_error("n_cols: must hold every index of the vocabulary, and fit int32");
            if (oov < 0 || oov >= n_cols) throw py::value_error("oov: outside [0, n_cols)");
            const float* w = nullptr;
            py::array idf_arr;
            if (mode == BAG_TF_IDF) {
                idf_arr = ndarray_arg(idf, "idf");
                w = check<float>(idf_arr, "idf", {n_cols});
            }
            const TextArgs t(texts);
            py::gil_scoped_release nogil;
            return std::make_shared<CSR>(cpu::texts_to_bag(t.view(), r, ix, oov, n_cols, mode, w, threads));
        }, py::arg("texts"), py::arg("lower"), py::arg("strip_punctuation"), py::arg("split"),
           py::arg("ngrams"), py::arg("oov"), py::arg("n_cols"), py::arg("mode"), py::arg("idf"),
           py::arg("threads") = 0);
}

}  // namespace bind
}  // namespace imdbfast
