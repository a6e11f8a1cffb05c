// Shared helpers for the tokenizer tests: fixture paths, reading, id formatting.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace kiln::testing_tok {

inline std::string SharedPath(const std::string& rel) {
  return std::string(KILN_SOURCE_DIR) + "/../shared/" + rel;
}
inline bool Exists(const std::string& p) { return std::filesystem::exists(p); }
inline std::string ReadAll(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
inline nlohmann::json ReadJson(const std::string& p) { return nlohmann::json::parse(ReadAll(p)); }
inline std::string Ids(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s + "]";
}
// llama.cpp vectors: inputs split by "\n__ggml_vocab_test__\n", one line of ids per input.
struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};
inline std::vector<Vector> ReadVectors(const std::string& inp, const std::string& out) {
  std::string in = ReadAll(inp), ou = ReadAll(out);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos = 0;
  while (true) {
    size_t hit = in.find(sep, pos);
    if (hit == std::string::npos) {
      texts.push_back(in.substr(pos));
      break;
    }
    texts.push_back(in.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
  if (!texts.empty() && texts.back().empty()) texts.pop_back();  // trailing separator
  std::vector<std::string> lines;
  std::istringstream ls(ou);
  for (std::string line; std::getline(ls, line);) lines.push_back(line);
  std::vector<Vector> v;
  for (size_t i = 0; i < texts.size() && i < lines.size(); ++i) {
    Vector x{texts[i], {}};
    std::istringstream is(lines[i]);
    for (int32_t id; is >> id;) x.ids.push_back(id);
    v.push_back(std::move(x));
  }
  return v;
}

}  // namespace kiln::testing_tok
