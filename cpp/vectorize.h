// vectorize.h: the compiled core of layers.TextVectorization (Keras 3's layer, byte for byte):
// standardise, split and n-gram each text (the same term stream for adapt and for lookup),
// count the terms of a corpus (adapt), and look the terms up in a vocabulary (int sequences or
// a bag-of-terms CSR). Texts are UTF-8 (the Python layer refuses anything else).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
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

// A term to look up or count: bytes (ViewKey), or n consecutive tokens of a text joined by
// single spaces (TokenKey: n-grams are never copied out), with the term's hash.
struct ViewKey {
    std::string_view s;
    uint64_t hash;
    size_t size() const { return s.size(); }
    bool equals(std::string_view t) const { return t == s; }
    void append_to(std::string& out) const { out.append(s); }
};

struct TokenKey {
    const char* text;                             // the standardised text
    const std::pair<int64_t, int64_t>* tokens;    // [begin, end) of each token in it
    int n;
    uint64_t hash;
    size_t size() const {
        int64_t b = n - 1;
        for (int j = 0; j < n; ++j) b += tokens[j].second - tokens[j].first;
        return static_cast<size_t>(b);
    }
    bool equals(std::string_view t) const {
        if (t.size() != size()) return false;
        size_t at = 0;
        for (int j = 0; j < n; ++j) {
            const size_t len = static_cast<size_t>(tokens[j].second - tokens[j].first);
            if (j > 0 && t[at++] != ' ') return false;
            if (std::memcmp(t.data() + at, text + tokens[j].first, len) != 0) return false;
            at += len;
        }
        return true;
    }
    void append_to(std::string& out) const {
        for (int j = 0; j < n; ++j) {
            if (j > 0) out.push_back(' ');
            out.append(text + tokens[j].first, static_cast<size_t>(tokens[j].second - tokens[j].first));
        }
    }
};

// Distinct terms, each once: ids 0, 1, ... in insertion order. Open addressing on a 64-bit hash;
// the terms' bytes are stored back to back.
class TermTable {
   public:
    TermTable();
    // The term's id, adding it when absent (then added is set).
    template <class Key>
    int64_t insert(const Key& k, bool& added) {
        const uint64_t mask = slots_.size() - 1;
        uint64_t p = k.hash & mask;
        for (;; p = (p + 1) & mask) {
            const Slot& q = slots_[p];
            if (q.id < 0) break;
            if (q.hash == k.hash && k.equals(term(q.id))) {
                added = false;
                return q.id;
            }
        }
        const int64_t id = size();
        k.append_to(bytes_);
        off_.push_back(static_cast<int64_t>(bytes_.size()));
        hash_.push_back(k.hash);
        slots_[p] = Slot{k.hash, id};
        if (static_cast<uint64_t>(size()) * 2 > slots_.size()) grow();  // at most half full
        added = true;
        return id;
    }
    template <class Key>
    int64_t find(const Key& k) const {  // -1 when absent
        const uint64_t mask = slots_.size() - 1;
        for (uint64_t p = k.hash & mask;; p = (p + 1) & mask) {
            const Slot& q = slots_[p];
            if (q.id < 0) return -1;
            if (q.hash == k.hash && k.equals(term(q.id))) return q.id;
        }
    }
    int64_t size() const { return static_cast<int64_t>(hash_.size()); }
    std::string_view term(int64_t i) const {
        return std::string_view(bytes_.data() + off_[i], static_cast<size_t>(off_[i + 1] - off_[i]));
    }
    uint64_t hash(int64_t i) const { return hash_[i]; }

    // A term's hash, from its bytes. Defined piece by piece (the pieces between spaces) so that
    // an n-gram's hash follows from its tokens' (TermHash): a polynomial in the pieces' hashes,
    // then a final mix.
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

// The hash of a term, built as TermTable::hash_of defines it: start(); add(token) for each
// token joined by a space; done().
struct TermHash {
    static constexpr uint64_t kBase = 0x100000001B3ull;  // odd: the polynomial's base
    uint64_t h = 0;
    // A token's own polynomial value and piece count (a token may hold spaces: split=None).
    static std::pair<uint64_t, int> token(const char* p, size_t n);
    static uint64_t piece(const char* p, size_t n);
    void add(const std::pair<uint64_t, int>& t) {
        for (int j = 0; j < t.second; ++j) h *= kBase;
        h += t.first;
    }
    static uint64_t done(uint64_t h) {
        h ^= h >> 32;
        h *= 0xD6E8FEB86659FD93ull;
        return h ^ (h >> 32);
    }
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
    template <class Key>
    int64_t find(const Key& k) const {  // -1 when absent
        const int64_t i = table_.find(k);
        return i < 0 ? -1 : first_ + i;
    }
    int64_t size() const { return table_.size(); }
    int64_t end() const { return first_ + table_.size(); }  // one past the largest index

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
