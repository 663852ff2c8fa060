// vectorize.cpp: TextVectorization's terms, counts and lookups (see vectorize.h). Lookups give
// each thread a contiguous block of texts and join the blocks in text order; counting gives each
// thread a share of the terms (by hash) over all texts; counts are integers: results do not
// depend on the thread count.
#include "vectorize.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "parallel.h"


namespace imdbfast {

// ---- the term table ------------------------------------------------------------------------

TermTable::TermTable() : off_{0}, slots_(64, Slot{0, -1}) {}

void TermTable::grow() {
    std::vector<Slot> slots(slots_.size() * 2, Slot{0, -1});
    const uint64_t mask = slots.size() - 1;
    for (int64_t i = 0; i < size(); ++i) {
        uint64_t p = hash_[i] & mask;
        while (slots[p].id >= 0) p = (p + 1) & mask;
        slots[p] = Slot{hash_[i], i};
    }
    slots_.swap(slots);
}

uint64_t TermHash::piece(const char* p, size_t n) {
    // Eight bytes at a time through a multiply-xorshift mix, the last (partial) word read as
    // the final eight bytes or, for short pieces, two overlapping four-byte words: fixed-size
    // loads, no call. The hash only places terms in the table (it never decides an order).
    auto load64 = [](const char* q) { uint64_t w; std::memcpy(&w, q, 8); return w; };
    auto load32 = [](const char* q) { uint32_t w; std::memcpy(&w, q, 4); return uint64_t{w}; };
    auto mix = [](uint64_t h, uint64_t w) {
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        return h ^ (h >> 29);
    };
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) h = mix(h, load64(p + i));
        if (i < n) h = mix(h, load64(p + n - 8));
    } else if (n >= 4) {
        h = mix(h, load32(p) | load32(p + n - 4) << 32);
    } else if (n > 0) {
        const auto b = [&](size_t i) { return uint64_t{static_cast<unsigned char>(p[i])}; };
        h = mix(h, b(0) | b(n / 2) << 8 | b(n - 1) << 16);
    }
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

std::pair<uint64_t, int> TermHash::token(const char* p, size_t n) {
    const void* sp = std::memchr(p, ' ', n);
    if (!sp) return {piece(p, n), 1};  // (whitespace-split tokens hold no space)
    TermHash t;
    size_t b = 0;
    for (size_t i = 0; i <= n; ++i)
        if (i == n || p[i] == ' ') {
            t.add({piece(p + b, i - b), 1});
            b = i + 1;
        }
    int pieces = 1;
    for (size_t i = 0; i < n; ++i) pieces += p[i] == ' ';
    return {t.h, pieces};
}

uint64_t TermTable::hash_of(std::string_view s) {
    TermHash t;
    t.add(TermHash::token(s.data(), s.size()));
    return TermHash::done(t.h);
}

TermIndex::TermIndex(const std::vector<std::string>& terms, int64_t first) : first_(first) {
    for (const std::string& t : terms) {
        bool added = false;
        table_.insert(ViewKey{t, TermTable::hash_of(t)}, added);
        if (!added) throw std::invalid_argument("vocabulary: the term '" + t + "' appears twice");
    }
}

namespace cpu {
namespace {

// Keras's punctuation class [!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\'] (Python's
// string.punctuation) and the bytes tf.strings.split takes for whitespace.
struct TextBytes {
    uint8_t punct[256] = {}, space[256] = {};
    TextBytes() {
        for (unsigned char c : std::string("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")) punct[c] = 1;
        for (unsigned char c : std::string(" \t\n\v\f\r")) space[c] = 1;
    }
};
const TextBytes kText;

// One thread's buffers for turning texts into terms: the standardised texts back to back, and
// each token's [begin, end) in them with its TermHash::token.
struct TermMaker {
    std::string text;
    std::vector<std::pair<int64_t, int64_t>> tokens;
    std::vector<std::pair<uint64_t, int>> token_hash;

    void clear() {
        text.clear();
        tokens.clear();
        token_hash.clear();
    }
    // One text's terms alone: f(TokenKey) for each (see append).
    template <class F>
    void terms(const char* s, int64_t n, const TextRules& r, F&& f) {
        clear();
        append(s, n, r, f);
    }
    // Adds text s to the buffers and calls f(TokenKey) for each of its terms, in Keras's order:
    // the widths in turn, each n-gram from the first token on. The keys point into the buffers
    // (valid until the next append; a token's index, key.tokens - tokens.data(), stays valid).
    template <class F>
    void append(const char* s, int64_t n, const TextRules& r, F&& f) {
        if (rules_ != &r) prepare(r);
        const int64_t base = static_cast<int64_t>(text.size());
        const size_t t0 = tokens.size();
        text.resize(static_cast<size_t>(base + n));
        const auto* in = reinterpret_cast<const unsigned char*>(s);
        char* out = text.data();
        int64_t kept = base;
        if (r.split == SPLIT_WHITESPACE) {
            // Standardise and split in one pass, with no branch per token boundary (one per
            // word mispredicts): a kept byte may open a token (a non-space after a space) or
            // close one (a space after a non-space); opening and closing have their own counts.
            tokens.resize(t0 + static_cast<size_t>(n / 2 + 2));  // (at most (n + 1) / 2 tokens)
            auto* tk = tokens.data() + t0;
            int64_t opened = 0, closed = 0, in_space = 1;
            for (int64_t i = 0; i < n; ++i) {
                const unsigned char c = in[i];
                const int64_t keep = kind_[c] != kDropped, space = kind_[c] == kSpace;
                out[kept] = static_cast<char>(map_[c]);
                tk[opened].first = kept;
                opened += keep & (space ^ 1) & in_space;
                tk[closed].second = kept;
                closed += keep & space & (in_space ^ 1);
                in_space ^= keep & (space ^ in_space);
                kept += keep;
            }
            if (!in_space) tk[closed++].second = kept;
            tokens.resize(t0 + static_cast<size_t>(opened));
            text.resize(static_cast<size_t>(kept));
        } else {
            for (int64_t i = 0; i < n; ++i) {
                const unsigned char c = in[i];
                out[kept] = static_cast<char>(map_[c]);
                kept += kind_[c] != kDropped;
            }
            text.resize(static_cast<size_t>(kept));
            const auto* t = reinterpret_cast<const unsigned char*>(text.data());
            if (r.split == SPLIT_NONE) {
                tokens.emplace_back(base, kept);
            } else {  // one token per code point (valid UTF-8: a lead byte gives the length)
                for (int64_t i = base; i < kept;) {
                    const unsigned char c = t[i];
                    const int64_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
                    const int64_t e = std::min(kept, i + len);
                    tokens.emplace_back(i, e);
                    i = e;
                }
            }
        }
        const size_t nk = tokens.size() - t0;
        token_hash.resize(tokens.size());
        for (size_t k = t0; k < tokens.size(); ++k)
            token_hash[k] = TermHash::token(text.data() + tokens[k].first,
                                            static_cast<size_t>(tokens[k].second - tokens[k].first));
        auto key = [&](size_t k, int w) {
            TermHash h;
            for (int j = 0; j < w; ++j) h.add(token_hash[t0 + k + j]);
            return TokenKey{text.data(), tokens.data() + t0 + k, w, TermHash::done(h.h)};
        };
        if (r.ngrams.empty()) {
            for (size_t k = 0; k < nk; ++k) f(key(k, 1));
            return;
        }
        for (int w : r.ngrams)
            for (size_t k = 0; k + static_cast<size_t>(w) <= nk; ++k) f(key(k, w));
    }

   private:
    // Each byte's standardised form and kind under the rules last prepared for.
    enum : unsigned char { kWord = 0, kSpace = 1, kDropped = 2 };
    void prepare(const TextRules& r) {
        for (int c = 0; c < 256; ++c) {
            map_[c] = static_cast<unsigned char>(r.lower && c >= 'A' && c <= 'Z' ? c + 32 : c);
            kind_[c] = r.strip_punctuation && kText.punct[c] ? kDropped
                       : kText.space[c]                      ? kSpace
                                                             : kWord;
        }
        rules_ = &r;
    }
    const TextRules* rules_ = nullptr;
    unsigned char map_[256], kind_[256];
};


int text_threads(const Texts& x, int threads) {
    int64_t bytes = 0;
    for (int64_t i = 0; i < x.n; ++i) bytes += x.lengths[i];
    return threads_for(threads, bytes, 1 << 20);
}


// Runs f(block, first, last) on nt contiguous blocks of the texts. OpenMP may give a smaller
// team than asked (OMP_DYNAMIC, OMP_THREAD_LIMIT): its threads then take the blocks in turn.
template <class F>
void over_blocks(const Texts& x, int nt, F&& f) {
    RegionErrors errors;  // the buffers grow as texts are read: allocation may fail
    run_region(nt, [&] {
#pragma omp parallel num_threads(nt) if (nt > 1)
        errors.guard([&] {
            for (int t = thread_num(); t < nt; t += team_size()) f(t, x.n * t / nt, x.n * (t + 1) / nt);
        });
    });
    errors.rethrow();
}

// One table's terms with their counts, document counts and the last document that counted.
struct Counted {
    struct Count {
        int64_t count = 0, docs = 0, last = -1;
    };
    TermTable table;
    std::vector<Count> c;

    // Adds terms 0..n-1 (term(j), hash(j); add(j) does the adding) with the slot, offset and
    // bytes of the terms a few ahead prefetched: each lookup is otherwise three dependent
    // cache misses (~2x faster on the IMDB bigrams' ~2 M-term table).
    template <class Hash, class Add>
    void add_stream(int64_t n, Hash&& hash, Add&& add) {
        constexpr int64_t kSlot = 16, kOffset = 8, kBytes = 4;
        for (int64_t j = 0; j < n; ++j) {
            if (j + kSlot < n) table.prefetch_slot(hash(j + kSlot));
            if (j + kOffset < n) {
                const int64_t id = table.guess(hash(j + kOffset));
                if (id >= 0) {
                    table.prefetch_offset(id);
                    __builtin_prefetch(&c[id]);
                }
            }
            if (j + kBytes < n) {
                const int64_t id = table.guess(hash(j + kBytes));
                if (id >= 0) table.prefetch_bytes(id);
            }
            add(j);
        }
    }

    // One occurrence of the term in text `doc` (texts come in order).
    template <class Key>
    void add(const Key& key, int64_t doc) {
        bool added = false;
        const int64_t i = table.insert(key, added);
        if (added) c.emplace_back();
        Count& e = c[i];
        ++e.count;
        if (e.last != doc) {
            e.last = doc;
            ++e.docs;
        }
    }
};

}  // namespace

TermCounts count_terms(const Texts& x, const TextRules& rules,
                       const std::vector<std::string>& exclude, int64_t keep, int threads) {
    // The texts go in chunks of about kChunkBytes per thread, each in two phases: each thread
    // turns its block of the chunk into terms and sorts them by owner (a share of the hashes:
    // each distinct term lives in one table only, so there is no merge); then each thread counts
    // the terms it owns, block by block (texts in order, for the document counts). Tokenising is
    // done once whatever the thread count; counts are integers: the result does not depend on
    // the thread count or the chunks.
    constexpr int64_t kChunkBytes = 1 << 20, kChunkTexts = 1 << 16;
    const int nt = text_threads(x, threads);
    std::vector<int64_t> chunk{0};  // chunk c is texts [chunk[c], chunk[c + 1])
    for (int64_t i = 0, bytes = 0; i < x.n; ++i) {
        bytes += x.lengths[i];
        if (bytes >= kChunkBytes * nt || i + 1 - chunk.back() >= kChunkTexts * nt || i + 1 == x.n) {
            chunk.push_back(i + 1);
            bytes = 0;
        }
    }
    const int64_t n_chunks = static_cast<int64_t>(chunk.size()) - 1;
    struct Pending {  // a term waiting for its owner: its tokens in the maker's buffers
        uint64_t hash;
        int64_t token;
        int64_t doc;
        int n;
    };
    struct Block {
        TermMaker mk;
        std::vector<std::vector<Pending>> to;  // [owner]
    };
    std::vector<Block> block(static_cast<size_t>(nt));
    for (Block& b : block) b.to.resize(static_cast<size_t>(nt));
    std::vector<Counted> merged(static_cast<size_t>(nt));
    cpu::Barrier barrier(nt);
    RegionErrors errors;  // the buffers and tables grow: allocation may fail
    // Phases for RegionErrors: 2c + 1 splits chunk c, 2c + 2 counts it.
    run_region(nt, [&] {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = thread_num();
        if (team_size() != nt) {  // a short team: leave before any work or barrier
            errors.request_leave(-1);
        } else {
            Block& mine = block[t];
            for (int64_t c = 0; c < n_chunks; ++c) {
                errors.guard([&] {
                    mine.mk.clear();
                    for (auto& v : mine.to) v.clear();
                    const int64_t n = chunk[c + 1] - chunk[c];
                    for (int64_t i = chunk[c] + n * t / nt; i < chunk[c] + n * (t + 1) / nt; ++i)
                        mine.mk.append(x.data[i], x.lengths[i], rules, [&](const TokenKey& k) {
                            const auto owner = (k.hash >> 40) % static_cast<uint64_t>(nt);
                            mine.to[owner].push_back(
                                Pending{k.hash, k.tokens - mine.mk.tokens.data(), i, k.n});
                        });
                }, 2 * c + 1);
                barrier.wait();
                if (errors.leaves_after(2 * c + 1)) break;
                errors.guard([&] {
                    Counted& table = merged[t];
                    for (const Block& from : block) {
                        const std::vector<Pending>& p = from.to[t];
                        auto key = [&](int64_t j) {
                            return TokenKey{from.mk.text.data(), from.mk.tokens.data() + p[j].token,
                                            p[j].n, p[j].hash};
                        };
                        table.add_stream(static_cast<int64_t>(p.size()),
                                         [&](int64_t j) { return p[j].hash; },
                                         [&](int64_t j) { table.add(key(j), p[j].doc); });
                    }
                }, 2 * c + 2);
                barrier.wait();
                if (errors.leaves_after(2 * c + 2)) break;
            }
        }
    }
    });
    errors.rethrow();
    if (errors.left_after() < 0) return count_terms(x, rules, exclude, keep, 1);  // a short team
    block = {};
    struct Ref {
        int64_t count;
        std::string_view term;
        int64_t docs;
    };
    std::vector<Ref> all;
    for (const Counted& m : merged)
        for (int64_t i = 0; i < m.table.size(); ++i)
            if (std::find(exclude.begin(), exclude.end(), m.table.term(i)) == exclude.end())
                all.push_back({m.c[i].count, m.table.term(i), m.c[i].docs});
    // Keras: np.lexsort((tokens, counts))[::-1], i.e. count descending, then bytes descending
    // (char_traits compares as unsigned bytes, as NumPy compares bytes).
    auto before = [](const Ref& a, const Ref& b) {
        return a.count != b.count ? a.count > b.count : a.term > b.term;
    };
    const int64_t n = static_cast<int64_t>(all.size());
    if (keep >= 0 && keep < n) {
        // The k-th count by the counts alone (most terms tie at small counts, where comparing
        // bytes would dominate), then only the terms at or above it are ordered in full.
        std::vector<int64_t> counts(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) counts[i] = all[i].count;
        int64_t cut = INT64_MAX;
        if (keep > 0) {
            std::nth_element(counts.begin(), counts.begin() + (keep - 1), counts.end(),
                             std::greater<int64_t>());
            cut = counts[keep - 1];
        }
        counts = {};
        all.erase(std::remove_if(all.begin(), all.end(), [&](const Ref& r) { return r.count < cut; }),
                  all.end());
    }
    std::sort(all.begin(), all.end(), before);
    if (keep >= 0 && keep < static_cast<int64_t>(all.size())) all.resize(static_cast<size_t>(keep));
    TermCounts out;
    out.offsets.reserve(all.size() + 1);
    out.offsets.push_back(0);
    for (const Ref& r : all) {
        out.bytes.append(r.term.data(), r.term.size());
        out.offsets.push_back(static_cast<int64_t>(out.bytes.size()));
        out.counts.push_back(r.count);
        out.docs.push_back(r.docs);
    }
    return out;
}

std::vector<int64_t> texts_to_ids(int64_t& L, const Texts& x, const TextRules& rules,
                                  const TermIndex& index, int64_t oov, int64_t seq_len,
                                  int threads) {
    const int nt = text_threads(x, threads);
    std::vector<std::vector<int64_t>> ids(static_cast<size_t>(nt));
    std::vector<int64_t> offsets(static_cast<size_t>(x.n) + 1, 0);  // block-relative ends
    over_blocks(x, nt, [&](int t, int64_t i0, int64_t i1) {
        TermMaker mk;
        std::vector<int64_t>& out = ids[t];
        for (int64_t i = i0; i < i1; ++i) {
            mk.terms(x.data[i], x.lengths[i], rules, [&](const TokenKey& k) {
                const int64_t id = k.size() == 0 ? 0 : index.find(k);
                out.push_back(id < 0 ? oov : id);
            });
            offsets[i + 1] = static_cast<int64_t>(out.size());
        }
    });
    std::vector<int64_t> begin(static_cast<size_t>(x.n), 0), block(static_cast<size_t>(x.n), 0);
    int64_t longest = 0;
    for (int t = 0; t < nt; ++t)
        for (int64_t i = x.n * t / nt; i < x.n * (t + 1) / nt; ++i) {
            begin[i] = i == x.n * t / nt ? 0 : offsets[i];
            block[i] = t;
            longest = std::max(longest, offsets[i + 1] - begin[i]);
        }
    L = seq_len >= 0 ? seq_len : longest;
    std::vector<int64_t> out(static_cast<size_t>(x.n * L), 0);
    for (int64_t i = 0; i < x.n; ++i) {
        const int64_t n = std::min(L, offsets[i + 1] - begin[i]);
        std::copy_n(ids[block[i]].data() + begin[i], n, out.data() + i * L);
    }
    return out;
}

CSR texts_to_bag(const Texts& x, const TextRules& rules, const TermIndex& index, int64_t oov,
                 int64_t n_cols, int mode, const float* idf, int threads) {
    const int nt = text_threads(x, threads);
    struct Part {
        std::vector<int32_t> cols;
        std::vector<float> vals;
    };
    std::vector<Part> part(static_cast<size_t>(nt));
    std::vector<int64_t> ends(static_cast<size_t>(x.n) + 1, 0);  // block-relative
    over_blocks(x, nt, [&](int t, int64_t i0, int64_t i1) {
        TermMaker mk;
        // Each text's distinct columns (sorted afterwards: a third of its terms, on IMDB) and
        // a count per column, reset after the text.
        std::vector<int32_t> row;
        std::vector<int64_t> count(static_cast<size_t>(n_cols), 0);
        const int64_t words = (n_cols + 63) / 64;
        std::vector<uint64_t> seen;  // a bitmap of the row's columns, all zero between texts
        Part& p = part[t];
        for (int64_t i = i0; i < i1; ++i) {
            row.clear();
            mk.terms(x.data[i], x.lengths[i], rules, [&](const TokenKey& k) {
                if (k.size() == 0) return;
                const int64_t id = index.find(k);
                const int32_t col = static_cast<int32_t>(id < 0 ? oov : id);
                if (count[col]++ == 0) row.push_back(col);
            });
            // In order: read off a bitmap when that is cheaper than sorting (IMDB: ~300 columns
            // of 20,000, i.e. 313 words against a sort's ~2,500 comparisons).
            if (words <= 4 * static_cast<int64_t>(row.size())) {
                seen.resize(static_cast<size_t>(words));
                for (int32_t col : row) seen[col >> 6] |= uint64_t{1} << (col & 63);
                row.clear();
                for (int64_t w = 0; w < words; ++w)
                    for (uint64_t b = std::exchange(seen[w], 0); b; b &= b - 1)
                        row.push_back(static_cast<int32_t>(w * 64 + __builtin_ctzll(b)));
            } else {
                std::sort(row.begin(), row.end());
            }
            for (int32_t col : row) {
                p.cols.push_back(col);
                const float n = static_cast<float>(count[col]);
                if (mode == BAG_COUNT) p.vals.push_back(n);
                else if (mode == BAG_TF_IDF) p.vals.push_back(n * idf[col]);
                count[col] = 0;
            }
            ends[i + 1] = static_cast<int64_t>(p.cols.size());
        }
    });
    CSR out;
    out.n_rows = x.n;
    out.n_cols = n_cols;
    out.binary = mode == BAG_MULTI_HOT;
    out.indptr.assign(static_cast<size_t>(x.n) + 1, 0);
    int64_t base = 0;
    for (int t = 0; t < nt; ++t) {
        for (int64_t i = x.n * t / nt; i < x.n * (t + 1) / nt; ++i) out.indptr[i + 1] = base + ends[i + 1];
        base += static_cast<int64_t>(part[t].cols.size());
    }
    out.indices.reserve(static_cast<size_t>(base));
    if (!out.binary) out.values.reserve(static_cast<size_t>(base));
    for (Part& p : part) {
        out.indices.insert(out.indices.end(), p.cols.begin(), p.cols.end());
        out.values.insert(out.values.end(), p.vals.begin(), p.vals.end());
    }
    return out;
}

}  // namespace cpu
}  // namespace imdbfast
