#include "tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <fstream>

#include "tokenizer/text_util.h"

namespace kiln {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp, bool add_bos,
                         bool add_eos, bool special_text)
      : sp_(std::move(sp)), add_bos_(add_bos), add_eos_(add_eos) {
    // The model's add_dummy_prefix decides whether decode drops the first piece's "▁"; probe
    // it by encoding a letter instead of reading the normalizer proto.
    std::vector<std::string> pieces;
    if (sp_->Encode("a", &pieces).ok() && !pieces.empty())
      dummy_prefix_ = pieces[0].compare(0, 3, "\xE2\x96\x81") == 0;
    // Control/unknown pieces written in the text ("<s>", "[INST]") are matched as tokens, as
    // HF's slow tokenizers do; libsentencepiece alone would spell them out.
    specials_by_byte_.resize(256);
    for (int32_t id = 0; id < sp_->GetPieceSize(); ++id) {
      if (!special_text || (!sp_->IsControl(id) && !sp_->IsUnknown(id))) continue;
      std::string p = sp_->IdToPiece(id);
      if (!p.empty()) specials_by_byte_[static_cast<unsigned char>(p[0])].emplace_back(std::move(p), id);
    }
    for (auto& v : specials_by_byte_)
      std::stable_sort(v.begin(), v.end(),
                       [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }

  std::vector<int32_t> Encode(std::string_view text, bool add_special) const override {
    // SentencePiece wants valid UTF-8; repair instead of failing.
    const std::string clean = tok::IsValidUtf8(text) ? std::string(text) : tok::Utf8Lossy(text);
    std::vector<int32_t> out;
    if (add_special && add_bos_ && sp_->bos_id() >= 0) out.push_back(sp_->bos_id());
    auto encode_plain = [&](std::string_view seg) {
      if (seg.empty()) return;
      std::vector<int> ids;
      if (sp_->Encode(seg, &ids).ok()) out.insert(out.end(), ids.begin(), ids.end());
    };
    size_t plain = 0;
    for (size_t i = 0; i < clean.size();) {
      int32_t hit = -1;
      size_t len = 0;
      for (const auto& [p, id] : specials_by_byte_[static_cast<unsigned char>(clean[i])])
        if (clean.compare(i, p.size(), p) == 0) {
          hit = id;
          len = p.size();
          break;
        }
      if (hit < 0) {
        ++i;
        continue;
      }
      encode_plain(std::string_view(clean).substr(plain, i - plain));
      out.push_back(hit);
      i += len;
      plain = i;
    }
    encode_plain(std::string_view(clean).substr(plain));
    if (add_special && add_eos_ && sp_->eos_id() >= 0) out.push_back(sp_->eos_id());
    return out;
  }

  std::string Decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string raw;
    int32_t prev = -1;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) continue;
      if (!(skip_special && is_special(id))) raw += TokenBytes(prev, id);
      prev = id;
    }
    return tok::Utf8Lossy(raw);
  }

  int32_t vocab_size() const override { return sp_->GetPieceSize(); }
  int32_t bos_id() const override { return sp_->bos_id(); }
  std::vector<int32_t> eos_ids() const override {
    if (sp_->eos_id() >= 0) return {sp_->eos_id()};
    return {};
  }
  bool is_special(int32_t id) const override {
    return id >= 0 && id < vocab_size() && (sp_->IsControl(id) || sp_->IsUnknown(id));
  }
  std::string piece(int32_t id) const override {
    return id >= 0 && id < vocab_size() ? sp_->IdToPiece(id) : std::string();
  }
  // SentencePiece decode of runs between special pieces (which print as themselves, as in HF's
  // slow tokenizers, unless skipped): "▁" is a space except at the start of a run,
  // <0xXX> pieces are raw bytes.
  std::string TokenBytes(int32_t prev, int32_t id) const override {
    if (id < 0 || id >= vocab_size()) return {};
    if (sp_->IsControl(id) || sp_->IsUnknown(id)) return sp_->IdToPiece(id);
    std::string p = sp_->IdToPiece(id);
    if (sp_->IsByte(id)) {
      int b = tok::ParseBytePiece(p);
      return b >= 0 ? std::string(1, static_cast<char>(b)) : std::string();
    }
    std::string out;
    size_t i = 0;
    static const std::string kMeta = "\xE2\x96\x81";
    if (dummy_prefix_ && p.compare(0, 3, kMeta) == 0 && (prev < 0 || is_special(prev))) i = 3;
    for (; i < p.size();) {
      if (p.compare(i, 3, kMeta) == 0) {
        out += ' ';
        i += 3;
      } else {
        out += p[i++];
      }
    }
    return out;
  }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  bool add_bos_, add_eos_;
  bool dummy_prefix_ = true;
  std::vector<std::vector<std::pair<std::string, int32_t>>> specials_by_byte_;  // [first byte]
};

}  // namespace

Expected<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path, bool add_bos,
                                                                bool add_eos, bool special_text) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto st = sp->Load(path);
  if (!st.ok()) return Corrupt(path + ": not a SentencePiece model: " + st.ToString());
  return std::unique_ptr<Tokenizer>(
      new SentencePieceTokenizer(std::move(sp), add_bos, add_eos, special_text));
}

bool LooksLikeSentencePiece(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char c = 0;
  if (!f.get(c)) return false;
  // ModelProto starts with field 1 (pieces), wire type 2 -> tag byte 0x0A. tiktoken files
  // start with base64 text.
  return static_cast<unsigned char>(c) == 0x0A;
}

}  // namespace kiln
