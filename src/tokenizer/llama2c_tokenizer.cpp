#include "tokenizer/llama2c_tokenizer.h"

#include <cstring>

#include "tokenizer/bpe.h"
#include "tokenizer/text_util.h"

namespace kiln {
namespace {

class Llama2cTokenizer final : public Tokenizer {
 public:
  explicit Llama2cTokenizer(tok::BpeModel model) : m_(std::move(model)) {}

  std::vector<int32_t> Encode(std::string_view text, bool add_special) const override {
    std::vector<int32_t> ids;
    if (add_special) ids.push_back(kBos);
    if (!text.empty()) {
      // run.c prepends the " " piece as its own token before merging; merging from the
      // text " " + text is the same.
      std::string s = " ";
      s.append(text);
      m_.Tokenize(s, &ids);
    }
    return ids;
  }

  std::string Decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string out;
    int32_t prev = -1;
    for (int32_t id : ids) {
      if (!(skip_special && is_special(id))) out += TokenBytes(prev, id);
      prev = id;
    }
    return tok::Utf8Lossy(out);
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(m_.pieces.size()); }
  int32_t bos_id() const override { return kBos; }
  std::vector<int32_t> eos_ids() const override { return {kEos}; }
  bool is_special(int32_t id) const override { return id >= 0 && id <= 2; }
  std::string piece(int32_t id) const override {
    return id >= 0 && id < vocab_size() ? m_.pieces[id] : std::string();
  }
  std::string TokenBytes(int32_t prev, int32_t id) const override {
    if (id < 0 || id >= vocab_size()) return {};
    if (id == 0) return "<unk>";
    if (id == kBos) return "<s>";
    if (id == kEos) return "</s>";
    std::string_view p = m_.pieces[id];
    if (prev == kBos && !p.empty() && p[0] == ' ') p.remove_prefix(1);  // run.c: no space after BOS
    int b = tok::ParseBytePiece(p);
    if (b >= 0) return std::string(1, static_cast<char>(b));
    return std::string(p);
  }

 private:
  static constexpr int32_t kBos = 1, kEos = 2;
  tok::BpeModel m_;
};

}  // namespace

Expected<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path, int vocab_size) {
  KILN_ASSIGN_OR_RETURN(std::string data, tok::ReadFileToString(path));
  if (data.size() < 4) return Corrupt(path + ": too short for a llama2.c tokenizer.bin");
  tok::BpeModel m;
  m.mode = tok::BpeModel::Mode::kScores;
  m.byte_fallback = true;
  m.unk_id = 0;
  size_t off = 4;  // int32 max_token_length, unused
  while (off < data.size() && (vocab_size < 0 || static_cast<int>(m.pieces.size()) < vocab_size)) {
    float score;
    int32_t len;
    if (off + 8 > data.size())
      return Corrupt(path + ": truncated piece header at byte " + std::to_string(off));
    std::memcpy(&score, data.data() + off, 4);
    std::memcpy(&len, data.data() + off + 4, 4);
    off += 8;
    if (len < 0 || off + static_cast<size_t>(len) > data.size())
      return Corrupt(path + ": bad piece length " + std::to_string(len) + " for piece " +
                     std::to_string(m.pieces.size()));
    std::string piece = data.substr(off, len);
    off += len;
    int32_t id = static_cast<int32_t>(m.pieces.size());
    // Specials (0..2) never come out of merging; first occurrence wins like run.c's sorted lookup.
    if (id > 2) m.vocab.emplace(piece, id);
    m.pieces.push_back(std::move(piece));
    m.scores.push_back(score);
  }
  if (vocab_size >= 0 && static_cast<int>(m.pieces.size()) != vocab_size)
    return Corrupt(path + ": holds " + std::to_string(m.pieces.size()) + " pieces, expected " +
                   std::to_string(vocab_size));
  if (m.pieces.size() < 259) return Corrupt(path + ": fewer than 259 pieces; not a llama2.c tokenizer");
  m.Finish();
  return std::unique_ptr<Tokenizer>(new Llama2cTokenizer(std::move(m)));
}

}  // namespace kiln
