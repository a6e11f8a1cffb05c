// PEFT LoRA adapters merged at build (../shared/fixtures/lora: adapters on hf-tiny bases with
// the logits of the PEFT-merged model), and the rejection of adapters that do not fit.
#include "test_arch_util.h"

namespace kiln::archtest {
namespace {

std::string LoraDir() { return SharedDir().empty() ? "" : SharedDir() + "/fixtures/lora"; }

std::string BaseOf(const std::string& adapter) {
  // reference.json "base" is relative to the lora folder, e.g. "../hf-tiny/gpt2".
  return (fs::path(LoraDir()) / ReadJson(adapter + "/reference.json")["base"].get<std::string>())
      .lexically_normal()
      .string();
}

class LoraFixtures : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraFixtures, MergedMatchesPeftReference) {
  const std::string adapter = LoraDir() + "/" + GetParam();
  TempDir tmp("lora_" + GetParam());
  const Status st = Build(BaseOf(adapter), tmp / "engine", {adapter});
  ASSERT_TRUE(st.ok()) << st.message();
  const json build = ReadJson(tmp / "engine/config.json")["build"];
  ASSERT_TRUE(build.contains("lora"));
  ASSERT_EQ(build["lora"].size(), 1u);
  const json cfg = ReadJson(adapter + "/adapter_config.json");
  EXPECT_EQ(build["lora"][0]["path"], adapter);
  EXPECT_EQ(build["lora"][0]["r"], cfg["r"]);
  EXPECT_GT(build["lora"][0]["merged_modules"].get<int>(), 0);
  const Comparison c = CompareWithReference(tmp / "engine", adapter, false);
  EXPECT_LE(c.max_rel_err, kTolerance);
  std::cout << "[ " << GetParam() << " ] max_rel_err " << c.max_rel_err << "\n";
}

INSTANTIATE_TEST_SUITE_P(Peft, LoraFixtures, ::testing::ValuesIn(SubDirs(LoraDir())),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(LoraFixtures);

#define REQUIRE_LORA_FIXTURES()                                       \
  if (LoraDir().empty() || !fs::exists(LoraDir() + "/llama_lora_r8")) \
  GTEST_SKIP() << "lora fixtures not found"

// A copy of an adapter with its adapter_config.json edited.
std::string EditedAdapter(const TempDir& tmp, const std::string& from,
                          const std::function<void(json&)>& edit) {
  const std::string dir = tmp / "adapter";
  fs::create_directories(dir);
  fs::copy_file(from + "/adapter_model.safetensors", dir + "/adapter_model.safetensors",
                fs::copy_options::overwrite_existing);
  json cfg = ReadJson(from + "/adapter_config.json");
  edit(cfg);
  std::ofstream(dir + "/adapter_config.json") << cfg.dump(2);
  return dir;
}

// use_rslora scales by alpha / sqrt(r): with alpha' = alpha / sqrt(r) it is the same model.
TEST(Lora, RsloraScale) {
  REQUIRE_LORA_FIXTURES();
  const std::string adapter = LoraDir() + "/llama_lora_r8";
  TempDir tmp("lora_rslora");
  const std::string edited = EditedAdapter(tmp, adapter, [](json& c) {
    c["use_rslora"] = true;
    c["lora_alpha"] = c["lora_alpha"].get<double>() / std::sqrt(c["r"].get<double>());
  });
  ASSERT_TRUE(Build(BaseOf(adapter), tmp / "engine", {edited}).ok());
  const Comparison c = CompareWithReference(tmp / "engine", adapter, false);
  EXPECT_LE(c.max_rel_err, kTolerance);
}

// Two adapters merge in order: half the alpha twice is the whole adapter once.
TEST(Lora, TwoAdaptersAccumulate) {
  REQUIRE_LORA_FIXTURES();
  const std::string adapter = LoraDir() + "/qwen2_lora_r4_attn";
  TempDir tmp("lora_two");
  const std::string half =
      EditedAdapter(tmp, adapter, [](json& c) { c["lora_alpha"] = c["lora_alpha"].get<double>() / 2; });
  ASSERT_TRUE(Build(BaseOf(adapter), tmp / "engine", {half, half}).ok());
  EXPECT_EQ(ReadJson(tmp / "engine/config.json")["build"]["lora"].size(), 2u);
  const Comparison c = CompareWithReference(tmp / "engine", adapter, false);
  EXPECT_LE(c.max_rel_err, kTolerance);
}

TEST(Lora, RejectsWrongBaseShape) {
  REQUIRE_LORA_FIXTURES();
  TempDir tmp("lora_shape");
  // The llama adapter's k_proj is [32, 64]; llama_mqa's is [16, 64].
  const Status st =
      Build(SharedDir() + "/fixtures/hf-tiny/llama_mqa", tmp / "engine", {LoraDir() + "/llama_lora_r8"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("k_proj"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("shape"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(tmp / "engine/rank0.safetensors"));
}

TEST(Lora, RejectsUnknownTargetModule) {
  REQUIRE_LORA_FIXTURES();
  TempDir tmp("lora_target");
  const Status st =
      Build(SharedDir() + "/fixtures/hf-tiny/gpt2", tmp / "engine", {LoraDir() + "/llama_lora_r8"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("target module"), std::string::npos) << st.message();
}

// Adapter tensors for a module the config does not target are refused, not silently merged.
TEST(Lora, RejectsModuleOutsideTargetModules) {
  REQUIRE_LORA_FIXTURES();
  const std::string adapter = LoraDir() + "/llama_lora_r8";
  TempDir tmp("lora_untargeted");
  const std::string edited = EditedAdapter(tmp, adapter, [](json& c) {
    c["target_modules"] = json::array({"q_proj", "k_proj", "v_proj", "o_proj"});
  });
  const Status st = Build(BaseOf(adapter), tmp / "engine", {edited});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not in the adapter's target_modules"), std::string::npos) << st.message();
}

TEST(Lora, RejectsRankMismatchAndMissingFiles) {
  REQUIRE_LORA_FIXTURES();
  const std::string adapter = LoraDir() + "/llama_lora_r8";
  TempDir tmp("lora_rank");
  const std::string edited = EditedAdapter(tmp, adapter, [](json& c) { c["r"] = 4; });
  Status st = Build(BaseOf(adapter), tmp / "engine", {edited});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("r=4"), std::string::npos) << st.message();

  st = Build(BaseOf(adapter), tmp / "engine2", {tmp / "no_such_adapter"});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no_such_adapter"), std::string::npos) << st.message();

  const std::string dora = EditedAdapter(tmp, adapter, [](json& c) { c["use_dora"] = true; });
  st = Build(BaseOf(adapter), tmp / "engine3", {dora});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("DoRA"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace kiln::archtest
