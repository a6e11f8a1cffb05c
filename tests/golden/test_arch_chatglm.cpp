// ChatGLM2/3 checkpoints in THUDM's own naming map onto the GLM math: hf-tiny/glm (the
// transformers GLM layout) is renamed into THUDM's layout (fused query_key_value,
// dense_h_to_4h, output_layer, ChatGLMConfig fields) and must give the same logits.
#include "test_arch_util.h"

namespace kiln::archtest {
namespace {

std::vector<uint8_t> Bytes(const TensorInfo& t) { return std::vector<uint8_t>(t.data, t.data + t.nbytes); }

// Writes hf-tiny/glm renamed into THUDM ChatGLM2/3 form under `dir`.
void WriteChatGlmCheckpoint(const std::string& glm, const std::string& dir) {
  auto file = SafetensorsFile::Open(glm + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().message();
  const json hf = ReadJson(glm + "/config.json");
  const int64_t layers = hf["num_hidden_layers"];
  auto get = [&](const std::string& n) -> const TensorInfo& {
    const TensorInfo* t = file->Find(n);
    EXPECT_NE(t, nullptr) << n;
    return *t;
  };
  SafetensorsWriter w;
  auto copy = [&](const std::string& from, const std::string& to) {
    const TensorInfo& t = get(from);
    w.Add(to, t.dtype, t.shape, Bytes(t));
  };
  auto fuse = [&](std::vector<std::string> parts, const std::string& to) {
    std::vector<uint8_t> bytes;
    std::vector<int64_t> shape = get(parts[0]).shape;
    shape[0] = 0;
    for (const auto& p : parts) {
      const TensorInfo& t = get(p);
      bytes.insert(bytes.end(), t.data, t.data + t.nbytes);
      shape[0] += t.shape[0];
    }
    w.Add(to, get(parts[0]).dtype, shape, std::move(bytes));
  };
  copy("model.embed_tokens.weight", "transformer.embedding.word_embeddings.weight");
  for (int64_t i = 0; i < layers; ++i) {
    const std::string s = "model.layers." + std::to_string(i) + ".";
    const std::string d = "transformer.encoder.layers." + std::to_string(i) + ".";
    copy(s + "input_layernorm.weight", d + "input_layernorm.weight");
    for (const char* kind : {"weight", "bias"})
      fuse({s + "self_attn.q_proj." + kind, s + "self_attn.k_proj." + kind, s + "self_attn.v_proj." + kind},
           d + "self_attention.query_key_value." + kind);
    copy(s + "self_attn.o_proj.weight", d + "self_attention.dense.weight");
    copy(s + "post_attention_layernorm.weight", d + "post_attention_layernorm.weight");
    copy(s + "mlp.gate_up_proj.weight", d + "mlp.dense_h_to_4h.weight");
    copy(s + "mlp.down_proj.weight", d + "mlp.dense_4h_to_h.weight");
  }
  copy("model.norm.weight", "transformer.encoder.final_layernorm.weight");
  copy("lm_head.weight", "transformer.output_layer.weight");
  // THUDM checkpoints carry the rotary buffer; the builder must ignore it.
  const int64_t hd = hf["head_dim"];
  std::vector<float> inv(hd / 4, 1.0f);
  w.Add("transformer.rotary_pos_emb.inv_freq", DType::kF32, {hd / 4},
        std::vector<uint8_t>(reinterpret_cast<uint8_t*>(inv.data()),
                             reinterpret_cast<uint8_t*>(inv.data() + inv.size())));
  ASSERT_TRUE(w.Write(dir + "/model.safetensors").ok());

  const json cfg = {{"architectures", {"ChatGLMModel"}},
                    {"model_type", "chatglm"},
                    {"num_layers", layers},
                    {"hidden_size", hf["hidden_size"]},
                    {"ffn_hidden_size", hf["intermediate_size"]},
                    {"kv_channels", hd},
                    {"num_attention_heads", hf["num_attention_heads"]},
                    {"multi_query_attention", true},
                    {"multi_query_group_num", hf["num_key_value_heads"]},
                    {"padded_vocab_size", hf["vocab_size"]},
                    {"seq_length", hf["max_position_embeddings"]},
                    {"layernorm_epsilon", hf["rms_norm_eps"]},
                    {"rmsnorm", true},
                    {"add_qkv_bias", true},
                    {"add_bias_linear", false},
                    {"apply_residual_connection_post_layernorm", false},
                    {"post_layer_norm", true},
                    {"original_rope", true},
                    {"rope_ratio", 1},
                    {"eos_token_id", 2},
                    {"pad_token_id", 0}};
  std::ofstream(dir + "/config.json") << cfg.dump(2);
}

TEST(ArchChatGlm, ThudmNamingMatchesGlmReference) {
  if (SharedDir().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  const std::string glm = SharedDir() + "/fixtures/hf-tiny/glm";
  TempDir tmp("chatglm");
  const std::string ck = tmp / "ck";
  fs::create_directories(ck);
  WriteChatGlmCheckpoint(glm, ck);
  if (HasFatalFailure()) return;
  const Status st = Build(ck, tmp / "engine");
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(ReadJson(tmp / "engine/config.json")["model"]["architecture"], "chatglm");
  const Comparison c = CompareWithReference(tmp / "engine", glm);
  EXPECT_LE(c.max_rel_err, kTolerance);
  EXPECT_EQ(c.greedy_mismatches, 0);
  std::cout << "[ chatglm (THUDM naming of hf-tiny/glm) ] max_rel_err " << c.max_rel_err << "\n";
}

}  // namespace
}  // namespace kiln::archtest
