// Shared by the architecture and LoRA golden tests: locate ../shared, build an engine into a
// temp dir, and compare an engine against a fixture's reference.json / reference.safetensors
// (the criterion: f32 logits within 2e-4 * (1 + max|ref|) through both logits paths,
// greedy equal up to the first step whose reference top-2 margin is < 1e-3).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "builder/builder.h"
#include "test_util.h"
#include "format/safetensors.h"
#include "kiln/engine.h"

namespace kiln::archtest {

namespace fs = std::filesystem;
using json = nlohmann::json;

using kiln::test::SharedDir;

inline std::vector<std::string> SubDirs(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory() && fs::exists(e.path() / "reference.json"))
      out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// A fresh temp directory, removed when the object dies.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("kiln_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

inline constexpr double kTolerance = 2e-4;

struct Comparison {
  double max_rel_err = 0;  // max over cases and both paths of max|got - ref| / (1 + max|ref|)
  int greedy_mismatches = 0;
};

// Reference logits of one case: [len, vocab] f32.
inline std::vector<float> RefLogits(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.Find(name);
  if (!t) return {};
  std::vector<float> v(t->numel());
  EXPECT_TRUE(ConvertElements(t->data, t->dtype, v.data(), DType::kF32, t->numel()).ok());
  return v;
}

// Compares `engine_dir` with the reference in `ref_dir`; greedy is checked when the
// reference has it and check_greedy is set.
inline Comparison CompareWithReference(const std::string& engine_dir, const std::string& ref_dir,
                                       bool check_greedy = true) {
  Comparison cmp;
  EngineOptions eo;
  eo.device = "cpu";
  auto engine = Engine::Open(engine_dir, eo);
  EXPECT_TRUE(engine.ok()) << engine.status().message();
  if (!engine.ok()) return {1e9, 1};
  const json ref = ReadJson(ref_dir + "/reference.json");
  auto logits_file = SafetensorsFile::Open(ref_dir + "/reference.safetensors");
  EXPECT_TRUE(logits_file.ok()) << logits_file.status().message();
  if (!logits_file.ok()) return {1e9, 1};
  for (const auto& c : ref["cases"]) {
    const std::vector<int32_t> prompt = c["prompt"].get<std::vector<int32_t>>();
    const std::vector<float> want = RefLogits(*logits_file, c["logits_tensor"].get<std::string>());
    double ref_max = 0;
    for (float v : want) ref_max = std::max(ref_max, static_cast<double>(std::fabs(v)));
    for (bool one_at_a_time : {false, true}) {
      auto got = (*engine)->Logits(prompt, one_at_a_time);
      EXPECT_TRUE(got.ok()) << got.status().message();
      if (!got.ok() || got->size() != want.size()) {
        ADD_FAILURE() << "logits size " << (got.ok() ? got->size() : 0) << " vs reference " << want.size();
        cmp.max_rel_err = 1e9;
        continue;
      }
      double err = 0;
      for (size_t i = 0; i < want.size(); ++i)
        err = std::max(err, static_cast<double>(std::fabs((*got)[i] - want[i])));
      cmp.max_rel_err = std::max(cmp.max_rel_err, err / (1 + ref_max));
    }
    if (!check_greedy || !c.contains("greedy")) continue;
    const auto greedy = c["greedy"].get<std::vector<int32_t>>();
    const auto margins = c["greedy_top2_margin"].get<std::vector<double>>();
    GenerateOptions go;
    go.max_tokens = static_cast<int>(greedy.size());
    go.sampling.temperature = 0;
    go.ignore_eos = true;
    auto gen = (*engine)->Generate(prompt, go);
    EXPECT_TRUE(gen.ok()) << gen.status().message();
    if (!gen.ok()) {
      ++cmp.greedy_mismatches;
      continue;
    }
    for (size_t j = 0; j < greedy.size(); ++j) {
      if (margins[j] < 1e-3) break;  // a tie in the reference: either token is right
      if (j >= gen->tokens.size() || gen->tokens[j] != greedy[j]) {
        ++cmp.greedy_mismatches;
        ADD_FAILURE() << "greedy differs at step " << j << " of prompt of length " << prompt.size();
        break;
      }
    }
  }
  return cmp;
}

inline Status Build(const std::string& checkpoint, const std::string& out,
                    std::vector<std::string> lora = {}) {
  BuildOptions o;
  o.checkpoint = checkpoint;
  o.out = out;
  o.dtype = "f32";
  o.lora = std::move(lora);
  return BuildEngine(o);
}

}  // namespace kiln::archtest
