// Acceptance 1 of the foundation issue: stories260K engines built from the llama2.c .bin,
// the GGUF and the HF conversion print exactly llama2.c's reference text, and their logits
// match run.c's within 2e-4 * (1 + max|ref|).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "format/safetensors.h"
#include "test_util.h"

namespace kiln::test {
namespace {

struct Source {
  const char* name;
  std::string checkpoint;
  std::string tokenizer;  // empty: the checkpoint's own vocabulary
};

std::vector<Source> Sources() {
  const std::string m = SharedDir() + "/models/stories260K/";
  return {{"bin", m + "stories260K.bin", m + "tok512.bin"},
          {"gguf", m + "stories260K.gguf", ""},
          {"hf", SharedDir() + "/fixtures/stories260K-hf", m + "tok512.model"}};
}

class Stories260K : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    for (const auto& s : Sources()) {
      std::vector<std::string> args = {"build", "--checkpoint", s.checkpoint, "--out", (*dir_) / s.name, "--dtype", "f32"};
      if (!s.tokenizer.empty()) args.insert(args.end(), {"--tokenizer", s.tokenizer});
      auto r = RunKiln(args);
      ASSERT_EQ(r.exit_code, 0) << s.name << ": " << r.err;
    }
  }
  static void TearDownTestSuite() { delete dir_; }
  std::string Engine() const { return (*dir_) / Sources()[GetParam()].name; }
  static TempDir* dir_;
};
TempDir* Stories260K::dir_ = nullptr;

TEST_P(Stories260K, GreedyFromBosMatchesLlama2c) {
  auto r = RunKiln({"run", "--engine", Engine(), "--temperature", "0", "--max-tokens", "256", "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ReadFile(SharedDir() + "/models/stories260K/reference_greedy_n256.txt"));
}

TEST_P(Stories260K, GreedyOnceUponATimeMatchesLlama2c) {
  auto r = RunKiln({"run", "--engine", Engine(), "--temperature", "0", "--prompt", "Once upon a time", "--echo",
                    "--max-tokens", "252", "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ReadFile(SharedDir() + "/models/stories260K/reference_greedy_once_upon_a_time_n256.txt"));
}

TEST_P(Stories260K, StreamingPrintsTheSameText) {
  auto r = RunKiln({"run", "--engine", Engine(), "--temperature", "0", "--max-tokens", "256", "--stream", "--device",
                    "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ReadFile(SharedDir() + "/models/stories260K/reference_greedy_n256.txt"));
}

// run.c's logits of the greedy run: raw f32 [256][512]; row t = forward(sequence[t], pos t).
TEST_P(Stories260K, LogitsMatchRunC) {
  const std::string m = SharedDir() + "/models/stories260K/";
  std::string seq_text = ReadFile(m + "reference_tokens_greedy_n256.txt");
  auto pos = seq_text.find("sequence:");
  ASSERT_NE(pos, std::string::npos);
  std::vector<int> seq = ParseInts(seq_text.substr(pos + 9));
  ASSERT_EQ(seq.size(), 257u);
  seq.resize(256);
  std::string ids;
  for (size_t i = 0; i < seq.size(); ++i) ids += (i ? "," : "") + std::to_string(seq[i]);
  const std::string ref_bytes = ReadFile(m + "reference_logits_greedy_n256.f32");
  ASSERT_EQ(ref_bytes.size(), 256u * 512u * 4u);
  const float* ref = reinterpret_cast<const float*>(ref_bytes.data());
  float max_ref = 0;
  for (size_t i = 0; i < 256 * 512; ++i) max_ref = std::max(max_ref, std::fabs(ref[i]));
  TempDir out;
  for (bool decode : {false, true}) {
    std::vector<std::string> args = {"logits", "--engine", Engine(), "--tokens", ids, "--out", out / "l.safetensors",
                                     "--device", "cpu"};
    if (decode) args.push_back("--decode");
    auto r = RunKiln(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto file = SafetensorsFile::Open(out / "l.safetensors");
    ASSERT_TRUE(file.ok()) << file.status().message();
    const TensorInfo* t = file->Find("logits");
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->shape, (std::vector<int64_t>{256, 512}));
    const float* got = reinterpret_cast<const float*>(t->data);
    float worst = 0;
    for (size_t i = 0; i < 256 * 512; ++i) worst = std::max(worst, std::fabs(got[i] - ref[i]));
    EXPECT_LE(worst, 2e-4f * (1 + max_ref)) << (decode ? "decode" : "prefill") << " path";
  }
}

INSTANTIATE_TEST_SUITE_P(Sources, Stories260K, ::testing::Values(0, 1, 2),
                         [](const auto& info) { return std::string(Sources()[info.param].name); });

// The aidreams260K model: a second llama2.c shape (MHA, 4 layers, seq_len 128), no GQA.
TEST(Aidreams260K, GreedyMatchesRunC) {
  const std::string m = SharedDir() + "/models/aidreams260K/";
  TempDir dir;
  auto b = RunKiln({"build", "--checkpoint", m + "aidreams260K.bin", "--tokenizer", m + "tok512.bin", "--out", dir / "e"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  auto r = RunKiln({"run", "--engine", dir / "e", "--temperature", "0", "--max-tokens", "256", "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // run.c stops at seq_len (128 positions: 128 tokens after BOS) and then prints "\n".
  EXPECT_EQ(r.out, ReadFile(m + "reference_greedy_n128.txt"));
}

}  // namespace
}  // namespace kiln::test
