#include <algorithm>
#include <mutex>

#include "tokenizer/pipeline.h"
#include "tokenizer/text_util.h"

namespace kiln::tok {
namespace {

// Unicode White_Space (Rust's char::is_whitespace, which HF uses for lstrip/rstrip).
bool IsWhite(uint32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}
// Byte length of the whitespace character starting at s[i] (0 if none).
size_t WhiteAt(std::string_view s, size_t i) {
  size_t j = i;
  uint32_t cp = DecodeUtf8(s, j);
  return IsWhite(cp) && !(cp == 0xFFFD && j == i + 1) ? j - i : 0;
}
// Byte length of the whitespace character ending at s[e-1] (0 if none).
size_t WhiteBefore(std::string_view s, size_t e, size_t floor) {
  for (size_t len = 1; len <= 3 && e >= floor + len; ++len) {
    size_t i = e - len;
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    return WhiteAt(s, i) == len ? len : 0;
  }
  return 0;
}
bool IsWordByte(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (static_cast<unsigned char>(c) & 0x80);
}

}  // namespace

PipelineTokenizer::PipelineTokenizer(PipelineSpec spec)
    : s_(std::move(spec)), cache_(std::make_unique<WordCache>()) {
  vocab_size_ = static_cast<int32_t>(s_.model.pieces.size());
  added_by_first_byte_.resize(256);
  for (size_t i = 0; i < s_.added.size(); ++i) {
    const AddedToken& t = s_.added[i];
    if (t.id < 0 || t.content.empty()) continue;
    added_by_id_[t.id] = i;
    vocab_size_ = std::max(vocab_size_, t.id + 1);
    if (t.match_in_text) added_by_first_byte_[static_cast<unsigned char>(t.content[0])].push_back(i);
  }
  for (auto& v : added_by_first_byte_)
    std::stable_sort(v.begin(), v.end(), [&](size_t a, size_t b) {
      return s_.added[a].content.size() > s_.added[b].content.size();
    });
}

std::vector<PipelineTokenizer::Segment> PipelineTokenizer::SplitAdded(std::string_view text) const {
  std::vector<Segment> segs;
  size_t plain_begin = 0;
  for (size_t i = 0; i < text.size();) {
    const auto& cands = added_by_first_byte_[static_cast<unsigned char>(text[i])];
    const AddedToken* hit = nullptr;
    for (size_t ci : cands) {
      const AddedToken& t = s_.added[ci];
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        size_t e = i + t.content.size();
        if ((i > 0 && IsWordByte(text[i - 1])) || (e < text.size() && IsWordByte(text[e]))) continue;
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->content.size();
    if (hit->lstrip)
      for (size_t n; (n = WhiteBefore(text, b, plain_begin)) > 0;) b -= n;
    if (hit->rstrip)
      for (size_t n; e < text.size() && (n = WhiteAt(text, e)) > 0;) e += n;
    if (b > plain_begin) segs.push_back({plain_begin, b, -1});
    segs.push_back({b, e, hit->id});
    plain_begin = i = e;
  }
  if (plain_begin < text.size()) segs.push_back({plain_begin, text.size(), -1});
  return segs;
}

void PipelineTokenizer::EncodeText(std::string_view text, bool at_start, std::vector<int32_t>* out) const {
  std::string norm = ApplyNormalizers(s_.normalizers, std::string(text));
  std::vector<PreToken> pieces;
  pieces.push_back({std::move(norm), at_start});
  pieces = ApplyPreTokenizers(s_.pretokenizers, std::move(pieces));
  for (const PreToken& p : pieces) {
    if (p.text.size() > 48) {
      s_.model.Tokenize(p.text, out);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(cache_->mu);
      auto it = cache_->map.find(p.text);
      if (it != cache_->map.end()) {
        out->insert(out->end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    std::vector<int32_t> ids;
    s_.model.Tokenize(p.text, &ids);
    out->insert(out->end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->map.size() > 200000) cache_->map.clear();
    cache_->map.emplace(p.text, std::move(ids));
  }
}

std::vector<int32_t> PipelineTokenizer::Encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  if (add_special) ids = s_.prefix_ids;
  for (const Segment& seg : SplitAdded(text)) {
    if (seg.added_id >= 0)
      ids.push_back(seg.added_id);
    else
      EncodeText(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, &ids);
  }
  if (add_special) ids.insert(ids.end(), s_.suffix_ids.begin(), s_.suffix_ids.end());
  return ids;
}

bool PipelineTokenizer::is_special(int32_t id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && s_.added[it->second].special;
}

std::string PipelineTokenizer::piece(int32_t id) const {
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) return s_.added[it->second].content;
  if (id >= 0 && id < static_cast<int32_t>(s_.model.pieces.size())) return s_.model.pieces[id];
  return {};
}

std::string PipelineTokenizer::DecodeRaw(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) {
      if (!(skip_special && s_.added[it->second].special)) tokens.push_back(s_.added[it->second].content);
      continue;
    }
    if (id >= 0 && id < static_cast<int32_t>(s_.model.pieces.size()) && !s_.model.pieces[id].empty())
      tokens.push_back(s_.model.pieces[id]);
  }
  std::string out = ApplyDecoders(s_.decoders, std::move(tokens));
  return s_.cleanup_spaces ? CleanUpTokenizationSpaces(std::move(out)) : out;
}

std::string PipelineTokenizer::Decode(std::span<const int32_t> ids, bool skip_special) const {
  return Utf8Lossy(DecodeRaw(ids, skip_special));
}

std::string PipelineTokenizer::TokenBytes(int32_t prev, int32_t id) const {
  if (prev < 0) return DecodeRaw(std::span<const int32_t>(&id, 1), false);
  const int32_t pair[2] = {prev, id};
  std::string both = DecodeRaw(pair, false);
  std::string first = DecodeRaw(std::span<const int32_t>(pair, 1), false);
  if (both.compare(0, first.size(), first) == 0) return both.substr(first.size());
  return DecodeRaw(std::span<const int32_t>(&id, 1), false);
}

}  // namespace kiln::tok
