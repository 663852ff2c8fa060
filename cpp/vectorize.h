// vectorize.h: the compiled core of layers.TextVectorization (Keras 3's layer, byte for byte):
// standardise, split and n-gram each text (the same term stream for adapt and for lookup),
// count the terms of a corpus (adapt), and look the terms up in a vocabulary (int sequences or
// a bag-of-terms CSR). Texts are UTF-8 (the Python layer refuses anything else).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels.h"

namespace imdbfast {

enum TextSplit : int { SPLIT_NONE = 0, SPLIT_WHITESPACE = 1, SPLIT_CHARACTER = 2 };
enum BagMode : int { BAG_MULTI_HOT = 0, BAG_COUNT = 1, BAG_TF_IDF = 2 };

// How a text becomes terms: ASCII lower-casing and removal of ASCII punctuation (what Keras's
// tf.strings.lower and its regex do), a split, then n-grams of the widths in order (Keras's
// ngrams=2 is {1, 2}: every unigram, then every bigram, joined by one space). No widths: the
// tokens themselves.
struct TextRules {
    bool lower = true, strip_punctuation = true;
    int split = SPLIT_WHITESPACE;
    std::vector<int> ngrams;
};

// N texts: texts[i] is lengths[i] bytes.
struct Texts {
    const char* const* data = nullptr;
    const int64_t* lengths = nullptr;
    int64_t n = 0;
};

// Distinct terms, each once: ids 0, 1, ... in insertion order. Open addressing on a 64-bit hash;
// the terms' bytes are stored back to back.
class TermTable {
   public:
    TermTable();
    // The term's id, adding it when absent (then added is set).
    int64_t insert(std::string_view s, uint64_t h, bool& added);
    int64_t find(std::string_view s, uint64_t h) const;  // -1 when absent
    int64_t size() const { return static_cast<int64_t>(hash_.size()); }
    std::string_view term(int64_t i) const {
        return std::string_view(bytes_.data() + off_[i], static_cast<size_t>(off_[i + 1] - off_[i]));
    }
    uint64_t hash(int64_t i) const { return hash_[i]; }
    static uint64_t hash_of(std::string_view s);

    // Prefetching for a stream of terms (the table is far larger than the caches): the slot
    // a hash starts at; the id found there (a guess: -1 when another hash sits there); that
    // term's offset, and its bytes.
    void prefetch_slot(uint64_t h) const { __builtin_prefetch(&slots_[h & (slots_.size() - 1)]); }
    int64_t guess(uint64_t h) const {
        const Slot& q = slots_[h & (slots_.size() - 1)];
        return q.hash == h ? q.id : -1;
    }
    void prefetch_offset(int64_t id) const { __builtin_prefetch(&off_[id]); }
    void prefetch_bytes(int64_t id) const { __builtin_prefetch(bytes_.data() + off_[id]); }

   private:
    void grow();
    struct Slot {
        uint64_t hash;
        int64_t id;  // -1: empty
    };
    std::string bytes_;
    std::vector<int64_t> off_;    // (size + 1)
    std::vector<uint64_t> hash_;  // (size)
    std::vector<Slot> slots_;     // a power of two of them, at most half full; the hash beside
                                  // the id, so a probe rarely touches a term's bytes
};

// adapt's result: terms in Keras's vocabulary order (count descending, then the bytes
// descending), their counts (occurrences) and document counts, and the number of documents.
struct TermCounts {
    std::string bytes;             // the terms back to back
    std::vector<int64_t> offsets;  // (n_terms + 1)
    std::vector<int64_t> counts, docs;
};

// A vocabulary's lookup: terms[i] -> first + i (duplicates refused).
class TermIndex {
   public:
    TermIndex(const std::vector<std::string>& terms, int64_t first);
    int64_t find(std::string_view s) const;  // -1 when absent
    int64_t size() const { return table_.size(); }

   private:
    TermTable table_;
    int64_t first_;
};

namespace cpu {

// Every distinct term of the texts but those in `exclude` (Keras's mask and OOV tokens), in
// vocabulary order; only the first `keep` when keep >= 0.
TermCounts count_terms(const Texts& texts, const TextRules& rules,
                       const std::vector<std::string>& exclude, int64_t keep, int threads);

// "int" output: (N, L) int64 row-major, each row the texts' term ids (absent: oov; the empty
// term, Keras's mask token: 0), cut or padded with 0 to L = seq_len, or to the longest row when
// seq_len < 0 (L is set).
std::vector<int64_t> texts_to_ids(int64_t& L, const Texts& texts, const TextRules& rules,
                                  const TermIndex& index, int64_t oov, int64_t seq_len,
                                  int threads);

// Bag outputs: row i holds the sorted distinct ids of text i's terms (absent: oov; the empty
// term, Keras's mask token, is dropped) with 1
// (multi-hot: a binary CSR), the count, or the count times idf[id] (float32, as Keras).
CSR texts_to_bag(const Texts& texts, const TextRules& rules, const TermIndex& index, int64_t oov,
                 int64_t n_cols, int mode, const float* idf, int threads);

}  // namespace cpu
}  // namespace imdbfast
