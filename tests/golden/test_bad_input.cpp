// Acceptance 4 of the foundation issue: bad input never crashes. Every case exits non-zero
// with one clear message that names the file, tensor or field at fault.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

void ExpectCleanFailure(const CliResult& r, const std::string& must_mention) {
  EXPECT_FALSE(r.crashed) << "crashed; stderr: " << r.err;
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("kiln: error:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(must_mention), std::string::npos) << "expected '" << must_mention << "' in: " << r.err;
}

// A copy of an HF fixture whose files a test may break.
std::string CopyFixture(const TempDir& dir, const std::string& name) {
  const std::string dst = dir / name;
  fs::copy(SharedDir() + "/fixtures/hf-tiny/" + name, dst, fs::copy_options::recursive);
  for (auto& e : fs::recursive_directory_iterator(dst))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dst;
}

json ReadJson(const std::string& p) { return json::parse(ReadFile(p)); }

TEST(BadInput, MissingCheckpoint) {
  TempDir d;
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", d / "nope", "--out", d / "e"}), "does not exist");
}

TEST(BadInput, UnreadableCheckpointFile) {
  TempDir d;
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", d.path(), "--out", d / "e"}), "config.json");
}

TEST(BadInput, UnknownArchitecture) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  json c = ReadJson(ck + "/config.json");
  c["model_type"] = "frobnicator";
  WriteFile(ck + "/config.json", c.dump());
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "frobnicator");
}

TEST(BadInput, InvalidConfigJson) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  WriteFile(ck + "/config.json", "{\"model_type\": \"llama\", ");
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "config.json");
}

TEST(BadInput, ConfigFieldWrongType) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  json c = ReadJson(ck + "/config.json");
  c["hidden_size"] = "sixty-four";
  WriteFile(ck + "/config.json", c.dump());
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "hidden_size");
}

TEST(BadInput, ConfigHeadsDoNotDivide) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  json c = ReadJson(ck + "/config.json");
  c["num_key_value_heads"] = 3;
  WriteFile(ck + "/config.json", c.dump());
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "n_kv_heads");
}

TEST(BadInput, MisshapedTensor) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  json c = ReadJson(ck + "/config.json");
  c["intermediate_size"] = 161;  // the checkpoint's MLP has 160
  WriteFile(ck + "/config.json", c.dump());
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "mlp.gate_proj.weight");
}

TEST(BadInput, MissingTensor) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  json c = ReadJson(ck + "/config.json");
  c["num_hidden_layers"] = 3;  // the checkpoint has 2
  WriteFile(ck + "/config.json", c.dump());
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "model.layers.2.");
}

TEST(BadInput, TruncatedSafetensors) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  const std::string w = ck + "/model.safetensors";
  fs::resize_file(w, fs::file_size(w) / 2);
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "model.safetensors");
}

TEST(BadInput, SafetensorsHeaderPastEnd) {
  TempDir d;
  std::string ck = CopyFixture(d, "llama");
  std::string bytes = ReadFile(ck + "/model.safetensors");
  uint64_t huge = bytes.size() * 4;
  std::memcpy(bytes.data(), &huge, 8);
  WriteFile(ck + "/model.safetensors", bytes);
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", ck, "--out", d / "e"}), "header length");
}

TEST(BadInput, CorruptGguf) {
  TempDir d;
  std::string bytes = ReadFile(SharedDir() + "/models/stories260K/stories260K.gguf");
  WriteFile(d / "cut.gguf", bytes.substr(0, bytes.size() / 3));
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", d / "cut.gguf", "--out", d / "e"}), "cut.gguf");
}

TEST(BadInput, TruncatedLlama2c) {
  TempDir d;
  std::string bytes = ReadFile(SharedDir() + "/models/stories260K/stories260K.bin");
  WriteFile(d / "cut.bin", bytes.substr(0, bytes.size() - 1000));
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", d / "cut.bin", "--out", d / "e"}), "cut.bin");
}

TEST(BadInput, GarbageFileAsCheckpoint) {
  TempDir d;
  WriteFile(d / "junk.bin", std::string(7, 'x'));
  ExpectCleanFailure(RunKiln({"build", "--checkpoint", d / "junk.bin", "--out", d / "e"}), "junk.bin");
}

class BadEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RunKiln({"build", "--checkpoint", SharedDir() + "/fixtures/hf-tiny/llama", "--out", engine_, "--dtype", "f32"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  TempDir dir_;
  std::string engine_ = dir_ / "engine";
};

TEST_F(BadEngine, MissingEngineDir) {
  ExpectCleanFailure(RunKiln({"run", "--engine", dir_ / "nope", "--tokens", "1,2"}), "does not exist");
}

TEST_F(BadEngine, EngineConfigCorrupt) {
  WriteFile(engine_ + "/config.json", "[1, 2");
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1,2", "--output-tokens"}), "config.json");
}

TEST_F(BadEngine, EngineConfigMissingField) {
  json c = ReadJson(engine_ + "/config.json");
  c["model"].erase("n_heads");
  WriteFile(engine_ + "/config.json", c.dump());
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1,2", "--output-tokens"}), "n_heads");
}

TEST_F(BadEngine, EngineWeightsTruncated) {
  const std::string w = engine_ + "/rank0.safetensors";
  fs::resize_file(w, fs::file_size(w) - 100);
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1,2", "--output-tokens"}), "rank0.safetensors");
}

TEST_F(BadEngine, EngineTensorMisshaped) {
  json c = ReadJson(engine_ + "/config.json");
  c["model"]["vocab_size"] = 999;
  WriteFile(engine_ + "/config.json", c.dump());
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1,2", "--output-tokens"}), "embed.weight");
}

TEST_F(BadEngine, TokenOutsideVocabulary) {
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1,5000", "--output-tokens"}), "5000");
}

TEST_F(BadEngine, MalformedTokenList) {
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1,x,3", "--output-tokens"}), "'x'");
  ExpectCleanFailure(RunKiln({"logits", "--engine", engine_, "--tokens", "", "--out", dir_ / "l"}), "--tokens");
}

TEST_F(BadEngine, BadSamplingValues) {
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1", "--output-tokens", "--top-p", "1.5"}),
                     "top_p");
  ExpectCleanFailure(
      RunKiln({"run", "--engine", engine_, "--tokens", "1", "--output-tokens", "--temperature", "-1"}), "temperature");
}

TEST_F(BadEngine, BadCliValues) {
  auto r = RunKiln({"run", "--engine", engine_, "--max-tokens", "many"});
  EXPECT_FALSE(r.crashed);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("max-tokens"), std::string::npos) << r.err;
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1", "--output-tokens", "--device", "tpu"}),
                     "--device");
}

TEST_F(BadEngine, PromptLongerThanMaxSeqLen) {
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--tokens", "1,2,3,4,5", "--max-seq-len", "4",
                              "--output-tokens"}),
                     "max_seq_len");
}

TEST_F(BadEngine, NoTokenizerForTextPrompt) {
  ExpectCleanFailure(RunKiln({"run", "--engine", engine_, "--prompt", "hello"}), "tokenizer");
}

TEST_F(BadEngine, UnwritableLogitsOutput) {
  ExpectCleanFailure(RunKiln({"logits", "--engine", engine_, "--tokens", "1,2", "--out", dir_ / "no/such/dir/l"}),
                     "no/such/dir");
}

}  // namespace
}  // namespace kiln::test
