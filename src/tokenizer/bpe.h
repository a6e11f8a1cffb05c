// The BPE core shared by every tokenizer kind: a vocabulary plus either explicit merge ranks
// (HF tokenizer.json / merges.txt) or piece scores (SentencePiece, llama.cpp, llama2.c,
// tiktoken where the score of a piece is minus its rank).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln::tok {

class BpeModel {
 public:
  enum class Mode {
    kMergeRanks,  // a pair merges only if listed in `merges`; lowest rank first
    kScores,      // a pair merges if its concatenation is a piece; highest score first
  };
  Mode mode = Mode::kMergeRanks;
  std::unordered_map<std::string, int32_t> vocab;  // piece -> id
  std::vector<std::string> pieces;                 // id -> piece ("" for holes)
  std::vector<float> scores;                       // kScores: id -> score
  int32_t unk_id = -1;
  bool byte_fallback = false;           // unknown characters become <0xXX> pieces
  bool fuse_unk = false;                // consecutive unknowns collapse into one unk
  bool ignore_merges = false;           // a word that is itself a piece is emitted whole
  std::array<int32_t, 256> byte_ids{};  // id of "<0xXX>" or -1

  // Builds byte_ids from the vocabulary; call after vocab/pieces are filled.
  void Finish();
  void AddMerge(int32_t a, int32_t b, int32_t rank, int32_t result) { merges_[Key(a, b)] = {rank, result}; }
  size_t num_merges() const { return merges_.size(); }
  int32_t Lookup(std::string_view piece) const {
    auto it = vocab.find(std::string(piece));
    return it == vocab.end() ? -1 : it->second;
  }
  // Appends the ids of one pre-tokenized word (already normalized / byte-level mapped).
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

 private:
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, result)
};

}  // namespace kiln::tok
