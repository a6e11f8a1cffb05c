#include "tokenizer/bpe.h"

#include <queue>

#include "tokenizer/text_util.h"

namespace kiln::tok {

void BpeModel::Finish() {
  byte_ids.fill(-1);
  for (int b = 0; b < 256; ++b) byte_ids[b] = Lookup(BytePieceName(static_cast<uint8_t>(b)));
}

namespace {
struct Sym {
  uint32_t start, len;  // byte range of the word
  int32_t id;           // -1: unknown
  int32_t prev, next;   // linked list over live symbols
  bool is_byte;         // a byte-fallback piece: never merges
};
struct Cand {
  double priority;  // higher merges first
  int32_t left;     // symbol index; ties go to the leftmost
  uint32_t size;    // combined length when pushed (stale check)
  int32_t result;
  bool operator<(const Cand& o) const {
    if (priority != o.priority) return priority < o.priority;
    return left > o.left;
  }
};
}  // namespace

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    auto it = vocab.find(std::string(word));
    if (it != vocab.end()) {
      out->push_back(it->second);
      return;
    }
  }
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    int n = Utf8CharLen(word, i);
    if (n <= 0) n = 1;
    std::string_view ch = word.substr(i, n);
    int32_t id = Lookup(ch);
    if (id < 0 && byte_fallback && mode == Mode::kMergeRanks) {
      bool all = true;
      for (char c : ch) all = all && byte_ids[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (int k = 0; k < n; ++k)
          syms.push_back(
              {static_cast<uint32_t>(i + k), 1, byte_ids[static_cast<uint8_t>(ch[k])], 0, 0, true});
        i += n;
        continue;
      }
    }
    syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(n), id, 0, 0, false});
    i += n;
  }
  const int32_t ns = static_cast<int32_t>(syms.size());
  for (int32_t k = 0; k < ns; ++k) {
    syms[k].prev = k - 1;
    syms[k].next = k + 1 < ns ? k + 1 : -1;
  }

  std::priority_queue<Cand> heap;
  std::string buf;
  auto try_pair = [&](int32_t l) {
    if (l < 0) return;
    int32_t r = syms[l].next;
    if (r < 0) return;
    const Sym& a = syms[l];
    const Sym& b = syms[r];
    if (a.is_byte || b.is_byte) return;
    if (mode == Mode::kMergeRanks) {
      if (a.id < 0 || b.id < 0) return;
      auto it = merges_.find(Key(a.id, b.id));
      if (it == merges_.end()) return;
      heap.push({-static_cast<double>(it->second.first), l, a.len + b.len, it->second.second});
    } else {
      std::string_view cat = word.substr(a.start, a.len + b.len);
      buf.assign(cat);
      auto it = vocab.find(buf);
      if (it == vocab.end()) return;
      double score = it->second < static_cast<int32_t>(scores.size()) ? scores[it->second] : 0.0;
      heap.push({score, l, a.len + b.len, it->second});
    }
  };
  for (int32_t k = 0; k + 1 < ns; ++k) try_pair(k);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& a = syms[c.left];
    if (a.len == 0 || a.next < 0) continue;
    Sym& b = syms[a.next];
    if (a.len + b.len != c.size) continue;  // stale: one side changed since
    a.len += b.len;
    a.id = c.result;
    b.len = 0;
    a.next = b.next;
    if (b.next >= 0) syms[b.next].prev = c.left;
    try_pair(a.prev);
    try_pair(c.left);
  }

  bool last_unk = false;
  for (int32_t k = 0; k >= 0 && k < ns; k = syms[k].next) {
    const Sym& s = syms[k];
    if (s.id >= 0) {
      out->push_back(s.id);
      last_unk = false;
      continue;
    }
    std::string_view text = word.substr(s.start, s.len);
    if (byte_fallback) {
      bool all = true;
      for (char ch : text) all = all && byte_ids[static_cast<uint8_t>(ch)] >= 0;
      if (all) {
        for (char ch : text) out->push_back(byte_ids[static_cast<uint8_t>(ch)]);
        last_unk = false;
        continue;
      }
    }
    if (unk_id >= 0 && !(fuse_unk && last_unk)) out->push_back(unk_id);
    last_unk = true;
  }
}

}  // namespace kiln::tok
