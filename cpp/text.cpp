// text.cpp: raw review text -> word ids, with the rules the Keras IMDB word index was built
// with (checked against all 50,000 reviews of the data set): ASCII letters lower-cased (other
// characters kept as they are), ASCII punctuation except the apostrophe and ASCII whitespace
// separate words, words not in the index are dropped. Then Keras's load_data encoding:
// [start_char] + (rank + index_from), ids outside [skip_top, num_words) -> oov_char (or dropped).
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "parallel.h"


namespace imdbfast {

Vocabulary::Vocabulary(const std::vector<std::string>& words, const std::vector<int64_t>& ranks) {
    if (words.size() != ranks.size()) throw std::invalid_argument("word_index: words and ranks differ in length");
    size_t total = 0;
    for (const auto& w : words) total += w.size();
    storage_.reserve(total);
    for (const auto& w : words) storage_ += w;
    map_.reserve(words.size() * 2);
    size_t pos = 0;
    for (size_t i = 0; i < words.size(); ++i) {
        if (ranks[i] < 0 || ranks[i] > INT32_MAX)
            throw std::invalid_argument("word_index: rank of '" + words[i] + "' is outside [0, 2**31)");
        map_.emplace(std::string_view(storage_.data() + pos, words[i].size()), static_cast<int32_t>(ranks[i]));
        pos += words[i].size();
    }
}

int64_t Vocabulary::rank(std::string_view w) const {
    auto it = map_.find(w);
    return it == map_.end() ? -1 : it->second;
}

namespace cpu {
namespace {

// 0: part of a word; 1: separator. Bytes >= 0x80 (UTF-8 sequences) are part of words.
struct ByteClass {
    uint8_t sep[256] = {};
    ByteClass() {
        for (unsigned char c : std::string("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~ \t\n\r\v\f")) sep[c] = 1;
    }
};
const ByteClass kBytes;

// Appends the encoded ids of one text to out.
void encode_one(std::vector<int32_t>& out, std::string& word, const char* s, int64_t n,
                const Vocabulary& vocab, const TextEncoding& e) {
    auto emit = [&](int64_t id) {  // Keras's filter, applied to every id, start token included
        if (id >= e.skip_top && (e.num_words <= 0 || id < e.num_words)) out.push_back(static_cast<int32_t>(id));
        else if (e.oov_char >= 0) out.push_back(static_cast<int32_t>(e.oov_char));
    };
    if (e.start_char >= 0) emit(e.start_char);
    word.clear();
    for (int64_t i = 0; i <= n; ++i) {
        const unsigned char c = i < n ? static_cast<unsigned char>(s[i]) : ' ';
        if (kBytes.sep[c]) {
            if (!word.empty()) {
                const int64_t r = vocab.rank(word);
                if (r >= 0) emit(r + e.index_from);
                word.clear();
            }
        } else {
            word.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : static_cast<char>(c));
        }
    }
}

}  // namespace

void texts_to_sequences(std::vector<int32_t>& tokens, std::vector<int64_t>& offsets,
                        const char* const* texts, const int64_t* lengths, int64_t N,
                        const Vocabulary& vocab, const TextEncoding& e, int threads) {
    // Each thread encodes a contiguous block of texts into its own buffer; the blocks are then
    // concatenated in order, so the result does not depend on the thread count.
    int64_t bytes = 0;
    for (int64_t i = 0; i < N; ++i) bytes += lengths[i];
    const int nt = threads_for(threads, bytes, 1 << 20);
    std::vector<std::vector<int32_t>> part(static_cast<size_t>(nt));
    offsets.assign(static_cast<size_t>(N) + 1, 0);
    RegionErrors errors;  // the blocks grow as they are encoded: allocation may fail
    run_region(nt, [&] {
#pragma omp parallel num_threads(nt) if (nt > 1)
        errors.guard([&] {
            const int first = thread_num(), team = team_size();
            std::string word;
            // (a smaller team than asked, OMP_DYNAMIC: its threads take the blocks in turn)
            for (int t = first; t < nt; t += team) {
                std::vector<int32_t>& out = part[t];
                for (int64_t i = N * t / nt; i < N * (t + 1) / nt; ++i) {
                    encode_one(out, word, texts[i], lengths[i], vocab, e);
                    offsets[i + 1] = static_cast<int64_t>(out.size());  // relative to the block
                }
            }
        });
    });
    errors.rethrow();
    int64_t base = 0;
    tokens.clear();
    for (int t = 0; t < nt; ++t) {
        for (int64_t i = N * t / nt; i < N * (t + 1) / nt; ++i) offsets[i + 1] += base;
        tokens.insert(tokens.end(), part[t].begin(), part[t].end());
        base += static_cast<int64_t>(part[t].size());
    }
}

}  // namespace cpu
}  // namespace imdbfast
