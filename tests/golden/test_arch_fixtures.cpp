// Every architecture fixture in ../shared/fixtures/hf-tiny (HF transformers models with
// float64 references) built with kiln::BuildEngine and run on the CPU backend.
#include <map>

#include "test_arch_util.h"

namespace kiln::archtest {
namespace {

std::string HfTiny() { return SharedDir().empty() ? "" : SharedDir() + "/fixtures/hf-tiny"; }

// Fixtures whose reference does not follow the model's published math, and the engine
// config override under which the reference is reproduced exactly.
struct KnownDeviation {
  const char* why;
  const char* key;
  double value;
};
const std::map<std::string, KnownDeviation>& Deviations() {
  static const std::map<std::string, KnownDeviation> m = {
      {"gemma2",
       {"transformers' default SDPA attention ignores attn_logit_softcapping (only eager applies it); kiln "
        "applies it as Gemma-2 specifies",
        "attn_softcap", 0.0}},
  };
  return m;
}

class ArchFixtures : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchFixtures, MatchesReference) {
  const std::string name = GetParam();
  const std::string src = HfTiny() + "/" + name;
  TempDir tmp("arch_" + name);
  const std::string engine = tmp / "engine";
  const Status st = Build(src, engine);
  ASSERT_TRUE(st.ok()) << st.message();

  auto dev = Deviations().find(name);
  if (dev == Deviations().end()) {
    const Comparison c = CompareWithReference(engine, src);
    EXPECT_LE(c.max_rel_err, kTolerance) << name;
    EXPECT_EQ(c.greedy_mismatches, 0) << name;
    std::cout << "[ " << name << " ] max_rel_err " << c.max_rel_err << "\n";
    return;
  }
  // The faithful engine still agrees with the reference on every confident greedy step...
  const Comparison faithful = CompareWithReference(engine, src);
  EXPECT_EQ(faithful.greedy_mismatches, 0) << name;
  // ...and with the reference's own math the logits match to the criterion.
  json cfg = ReadJson(engine + "/config.json");
  cfg["model"][dev->second.key] = dev->second.value;
  std::ofstream(engine + "/config.json") << cfg.dump(2);
  const Comparison c = CompareWithReference(engine, src, false);
  EXPECT_LE(c.max_rel_err, kTolerance) << name << " with " << dev->second.key << "=" << dev->second.value;
  std::cout << "[ " << name << " ] max_rel_err " << c.max_rel_err << " with " << dev->second.key << "="
            << dev->second.value << " (" << dev->second.why << "); faithful engine " << faithful.max_rel_err
            << "\n";
}

INSTANTIATE_TEST_SUITE_P(HfTiny, ArchFixtures, ::testing::ValuesIn(SubDirs(HfTiny())),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ArchFixtures);

// Baichuan-13B's config form (no max_position_embeddings, model_max_length) selects ALiBi.
TEST(ArchConfig, Baichuan13BUsesAlibi) {
  if (HfTiny().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  TempDir tmp("baichuan13b");
  const std::string ck = tmp / "ck";
  fs::create_directories(ck);
  fs::copy_file(HfTiny() + "/baichuan/model.safetensors", ck + "/model.safetensors");
  json cfg = ReadJson(HfTiny() + "/baichuan/config.json");
  cfg.erase("max_position_embeddings");
  cfg["model_max_length"] = 512;
  std::ofstream(ck + "/config.json") << cfg.dump();
  const Status st = Build(ck, tmp / "engine");
  ASSERT_TRUE(st.ok()) << st.message();
  const json model = ReadJson(tmp / "engine/config.json")["model"];
  EXPECT_EQ(model["position"], "alibi");
  EXPECT_EQ(model["max_position_embeddings"], 512);
}

// Gemma-2 alternates sliding-window and full layers; the engine records the per-layer windows.
TEST(ArchConfig, Gemma2LayerWindows) {
  if (HfTiny().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  TempDir tmp("gemma2cfg");
  ASSERT_TRUE(Build(HfTiny() + "/gemma2", tmp / "engine").ok());
  const json model = ReadJson(tmp / "engine/config.json")["model"];
  EXPECT_EQ(model["layer_sliding_window"], json::array({8, 0}));
  EXPECT_DOUBLE_EQ(model["attn_scale"].get<double>(), 0.25);  // query_pre_attn_scalar 16
  EXPECT_DOUBLE_EQ(model["attn_softcap"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(model["final_softcap"].get<double>(), 30.0);
}

TEST(ArchConfig, UnknownModelTypeNamesSupportedOnes) {
  if (HfTiny().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  TempDir tmp("unknown_arch");
  const std::string ck = tmp / "ck";
  fs::create_directories(ck);
  fs::copy_file(HfTiny() + "/llama/model.safetensors", ck + "/model.safetensors");
  json cfg = ReadJson(HfTiny() + "/llama/config.json");
  cfg["model_type"] = "no_such_model";
  std::ofstream(ck + "/config.json") << cfg.dump();
  const Status st = Build(ck, tmp / "engine");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no_such_model"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("mixtral"), std::string::npos) << st.message();
}

// Fields of the wrong type in a downloaded config.json are errors naming the file, for every
// architecture's configure step, not exceptions that end the process.
TEST(ArchConfig, WrongFieldTypesAreErrors) {
  if (HfTiny().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  TempDir tmp("wrong_types");
  const std::pair<const char*, json> cases[] = {
      {"llama", {{"model_type", 5}}},
      {"llama", {{"attention_bias", "yes"}}},
      {"gpt2", {{"tie_word_embeddings", "no"}}},
      {"llama", {{"rope_parameters", {{"rope_type", "llama3"}, {"factor", "x"}}}}},
      {"llama", {{"num_hidden_layers", "2"}}},
      {"mistral_sliding", {{"sliding_window", "big"}}},
      {"falcon", {{"new_decoder_architecture", "x"}}},
      {"bloom_alibi", {{"apply_residual_connection_post_layernorm", 1}}},
  };
  int i = 0;
  for (const auto& [arch, patch] : cases) {
    if (!fs::exists(HfTiny() + "/" + arch + "/config.json")) continue;
    json cfg = ReadJson(HfTiny() + "/" + arch + "/config.json");
    cfg.update(patch);
    const std::string path = tmp / ("config" + std::to_string(i++) + ".json");
    std::ofstream(path) << cfg.dump();
    BuildOptions o;
    o.hf_config = path;
    o.dummy_weights = true;
    o.out = tmp / "engine";
    const Status st = BuildEngine(o);
    EXPECT_FALSE(st.ok()) << arch << " " << patch.dump();
    if (!st.ok()) EXPECT_FALSE(st.message().empty());
  }
}

// A checkpoint missing a tensor the config implies is rejected with the tensor's name.
TEST(ArchConfig, MissingTensorIsNamed) {
  if (HfTiny().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  TempDir tmp("missing_tensor");
  const std::string ck = tmp / "ck";
  fs::create_directories(ck);
  auto file = SafetensorsFile::Open(HfTiny() + "/gpt_neox/model.safetensors");
  ASSERT_TRUE(file.ok());
  SafetensorsWriter w;
  for (const auto& t : file->tensors())
    if (t.name != "gpt_neox.layers.1.attention.query_key_value.bias")
      w.Add(t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  ASSERT_TRUE(w.Write(ck + "/model.safetensors").ok());
  fs::copy_file(HfTiny() + "/gpt_neox/config.json", ck + "/config.json");
  const Status st = Build(ck, tmp / "engine");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("gpt_neox.layers.1.attention.query_key_value.bias"), std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace kiln::archtest
