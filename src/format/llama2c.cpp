#include "format/llama2c.h"

#include <cstring>
#include <vector>

#include "core/mmap_file.h"

namespace kiln {

using json = nlohmann::json;

namespace {

constexpr uint32_t kV1Magic = 0x616b3432;  // "ak42"
constexpr size_t kLegacyHeaderBytes = 7 * 4;
constexpr size_t kV1HeaderBytes = 256;
constexpr uint64_t kLimit = 1ull << 60;  // sizes beyond this are absurd (and would overflow)

struct Header {
  int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;
  int version = 0;  // 0 = legacy
};

// Checked a*b for non-negative sizes; false once the product passes kLimit.
bool Mul(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > kLimit / a) return false;
  *out = a * b;
  return true;
}

struct Span {
  const char* name;  // llama2.c name, for error messages
  uint64_t offset;   // bytes from the start of the file
  uint64_t nbytes;   // all layers together
};

}  // namespace

void UnpermuteRotaryRows(const uint8_t* src, uint8_t* dst, int64_t n_heads, int64_t head_dim,
                         size_t row_bytes) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    const uint8_t* s = src + static_cast<size_t>(h * head_dim) * row_bytes;  // [head_dim, row]
    uint8_t* d = dst + static_cast<size_t>(h * head_dim) * row_bytes;
    for (int64_t j = 0; j < half; ++j) {
      std::memcpy(d + j * row_bytes, s + (2 * j) * row_bytes, row_bytes);
      std::memcpy(d + (half + j) * row_bytes, s + (2 * j + 1) * row_bytes, row_bytes);
    }
  }
}

Expected<Checkpoint> ParseLlama2c(const uint8_t* data, size_t size, const std::string& path) {
  const std::string where = "llama2.c checkpoint '" + path + "'";
  Header h;
  size_t header_bytes = kLegacyHeaderBytes;
  if (size < kLegacyHeaderBytes)
    return Corrupt(where + ": file is " + std::to_string(size) + " bytes, too short for the 28-byte header");
  uint32_t magic = 0;
  std::memcpy(&magic, data, 4);
  int32_t fields[7];
  if (magic == kV1Magic) {
    if (size < kV1HeaderBytes)
      return Corrupt(where + ": v1 file is " + std::to_string(size) +
                     " bytes, too short for the 256-byte header");
    int32_t version = 0;
    std::memcpy(&version, data + 4, 4);
    if (version != 1)
      return Unsupported(where + ": llama2.c export version " + std::to_string(version) +
                         " (kiln reads the fp32 legacy and version 1 exports)");
    std::memcpy(fields, data + 8, sizeof(fields));
    const uint8_t shared = data[8 + sizeof(fields)];
    if (shared > 1)
      return Corrupt(where + ": header shared_classifier is " + std::to_string(shared) + ", not 0 or 1");
    h.shared_classifier = shared == 1;
    h.version = 1;
    header_bytes = kV1HeaderBytes;
  } else {
    std::memcpy(fields, data, sizeof(fields));
  }
  h.dim = fields[0], h.hidden_dim = fields[1], h.n_layers = fields[2], h.n_heads = fields[3];
  h.n_kv_heads = fields[4], h.vocab_size = fields[5], h.seq_len = fields[6];
  if (h.version == 0) {
    // Legacy: a negative vocab_size flags an unshared classifier.
    h.shared_classifier = h.vocab_size > 0;
    if (h.vocab_size < 0) h.vocab_size = h.vocab_size == INT32_MIN ? 0 : -h.vocab_size;
  }

  auto bad = [&](const std::string& field, int64_t v, const std::string& why) {
    return Corrupt(where + ": header " + field + " = " + std::to_string(v) + " " + why);
  };
  if (h.dim <= 0) return bad("dim", h.dim, "must be positive");
  if (h.hidden_dim <= 0) return bad("hidden_dim", h.hidden_dim, "must be positive");
  if (h.n_layers <= 0) return bad("n_layers", h.n_layers, "must be positive");
  if (h.n_heads <= 0) return bad("n_heads", h.n_heads, "must be positive");
  if (h.n_kv_heads <= 0) return bad("n_kv_heads", h.n_kv_heads, "must be positive");
  if (h.vocab_size <= 0) return bad("vocab_size", h.vocab_size, "must be non-zero");
  if (h.seq_len <= 0) return bad("seq_len", h.seq_len, "must be positive");
  if (h.dim % h.n_heads != 0)
    return bad("n_heads", h.n_heads, "does not divide dim " + std::to_string(h.dim));
  if (h.n_heads % h.n_kv_heads != 0)
    return bad("n_kv_heads", h.n_kv_heads, "does not divide n_heads " + std::to_string(h.n_heads));
  const int64_t head_dim = h.dim / h.n_heads;
  if (head_dim % 2 != 0)
    return bad("dim / n_heads", head_dim, "(head_dim) must be even for rotary embeddings");

  // Per-layer element counts; all products are checked against overflow.
  const uint64_t dim = h.dim, hidden = h.hidden_dim, L = h.n_layers, vocab = h.vocab_size;
  const uint64_t q_rows = dim, kv_rows = static_cast<uint64_t>(h.n_kv_heads) * head_dim;
  uint64_t embed = 0, wq = 0, wkv = 0, wo = 0, w13 = 0, freq = 0;
  bool ok = Mul(vocab, dim, &embed) && Mul(q_rows, dim, &wq) && Mul(kv_rows, dim, &wkv) &&
            Mul(dim, q_rows, &wo) && Mul(hidden, dim, &w13) &&
            Mul(static_cast<uint64_t>(h.seq_len), head_dim, &freq);
  uint64_t Lwq = 0, Lwkv = 0, Lwo = 0, Lw13 = 0, Lnorm = 0;
  ok = ok && Mul(L, wq, &Lwq) && Mul(L, wkv, &Lwkv) && Mul(L, wo, &Lwo) && Mul(L, w13, &Lw13) &&
       Mul(L, dim, &Lnorm);
  if (!ok)
    return Corrupt(where + ": header sizes overflow (dim " + std::to_string(h.dim) + ", hidden_dim " +
                   std::to_string(h.hidden_dim) + ", n_layers " + std::to_string(h.n_layers) + ")");

  // The weight arrays in file order, in elements (all layers of one kind are contiguous).
  std::vector<std::pair<const char*, uint64_t>> order;
  if (h.version == 0) {
    order = {{"token_embedding_table", embed},
             {"rms_att_weight", Lnorm},
             {"wq", Lwq},
             {"wk", Lwkv},
             {"wv", Lwkv},
             {"wo", Lwo},
             {"rms_ffn_weight", Lnorm},
             {"w1", Lw13},
             {"w2", Lw13},
             {"w3", Lw13},
             {"rms_final_weight", dim},
             {"freq_cis", freq}};  // freq_cis: real + imag, skipped
  } else {
    order = {{"rms_att_weight", Lnorm},
             {"rms_ffn_weight", Lnorm},
             {"rms_final_weight", dim},
             {"token_embedding_table", embed},
             {"wq", Lwq},
             {"wk", Lwkv},
             {"wv", Lwkv},
             {"wo", Lwo},
             {"w1", Lw13},
             {"w2", Lw13},
             {"w3", Lw13}};
  }
  if (!h.shared_classifier) order.push_back({"wcls", embed});
  std::vector<Span> spans;
  uint64_t off = header_bytes;
  for (const auto& [name, elems] : order) {
    if (elems > kLimit / 4 || off > kLimit)
      return Corrupt(where + ": header sizes overflow at '" + std::string(name) + "'");
    spans.push_back({name, off, elems * 4});
    off += elems * 4;
  }
  if (off != size) {
    // Name the first array that the file cuts short, if any.
    std::string at;
    for (const auto& s : spans)
      if (s.offset + s.nbytes > size) {
        at = ", ending inside '" + std::string(s.name) + "'";
        break;
      }
    return Corrupt(
        where + ": expected exactly " + std::to_string(off) + " bytes for a " +
        (h.version ? "v1" : "legacy") + " export with dim " + std::to_string(h.dim) + ", hidden_dim " +
        std::to_string(h.hidden_dim) + ", n_layers " + std::to_string(h.n_layers) + ", n_heads " +
        std::to_string(h.n_heads) + ", n_kv_heads " + std::to_string(h.n_kv_heads) + ", vocab_size " +
        std::to_string(h.vocab_size) + ", seq_len " + std::to_string(h.seq_len) +
        (h.shared_classifier ? ", shared classifier" : ", unshared classifier") + " but the file has " +
        std::to_string(size) + (off > size ? " (truncated" + at + ")" : " (trailing bytes)"));
  }
  auto span = [&](const char* name) -> const Span& {
    for (const auto& s : spans)
      if (std::strcmp(s.name, name) == 0) return s;
    return spans.front();  // unreachable: every name queried is in `order`
  };

  Checkpoint ck;
  ck.format = "llama2c";
  ck.source_path = path;
  ck.tensors.reserve(2 + 9 * L + 1);
  auto add_view = [&](const std::string& name, std::vector<int64_t> shape, const uint8_t* p, size_t nbytes) {
    SourceTensor t;
    t.name = name;
    t.dtype = DType::kF32;
    t.shape = std::move(shape);
    t.data = p;
    t.nbytes = nbytes;
    ck.tensors.push_back(std::move(t));
  };
  // One layer's slice of a per-layer array.
  auto layer = [&](const char* name, uint64_t per_layer_elems, int64_t l) {
    return data + span(name).offset + static_cast<uint64_t>(l) * per_layer_elems * 4;
  };
  auto add_permuted = [&](const std::string& name, const uint8_t* src, int64_t n_heads, int64_t rows) {
    auto buf =
        std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(rows) * dim * 4);  // [rows, dim] f32
    UnpermuteRotaryRows(src, buf->data(), n_heads, head_dim, dim * 4);
    add_view(name, {rows, static_cast<int64_t>(dim)}, buf->data(), buf->size());
    ck.owners.push_back(buf);
  };

  const int64_t D = h.dim, H = h.hidden_dim, V = h.vocab_size;
  add_view("model.embed_tokens.weight", {V, D}, data + span("token_embedding_table").offset, embed * 4);
  for (int64_t l = 0; l < h.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_view(p + "input_layernorm.weight", {D}, layer("rms_att_weight", dim, l), dim * 4);
    add_permuted(p + "self_attn.q_proj.weight", layer("wq", wq, l), h.n_heads, static_cast<int64_t>(q_rows));
    add_permuted(p + "self_attn.k_proj.weight", layer("wk", wkv, l), h.n_kv_heads,
                 static_cast<int64_t>(kv_rows));
    add_view(p + "self_attn.v_proj.weight", {static_cast<int64_t>(kv_rows), D}, layer("wv", wkv, l), wkv * 4);
    add_view(p + "self_attn.o_proj.weight", {D, D}, layer("wo", wo, l), wo * 4);
    add_view(p + "post_attention_layernorm.weight", {D}, layer("rms_ffn_weight", dim, l), dim * 4);
    add_view(p + "mlp.gate_proj.weight", {H, D}, layer("w1", w13, l), w13 * 4);  // w1: [hidden, dim]
    add_view(p + "mlp.down_proj.weight", {D, H}, layer("w2", w13, l), w13 * 4);  // w2: [dim, hidden]
    add_view(p + "mlp.up_proj.weight", {H, D}, layer("w3", w13, l), w13 * 4);    // w3: [hidden, dim]
  }
  add_view("model.norm.weight", {D}, data + span("rms_final_weight").offset, dim * 4);
  if (!h.shared_classifier) add_view("lm_head.weight", {V, D}, data + span("wcls").offset, embed * 4);

  // run.c hard-codes eps 1e-5, theta 10000, and the Llama-2 SentencePiece bos/eos ids.
  ck.config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", h.dim},
      {"intermediate_size", h.hidden_dim},
      {"num_hidden_layers", h.n_layers},
      {"num_attention_heads", h.n_heads},
      {"num_key_value_heads", h.n_kv_heads},
      {"head_dim", head_dim},
      {"vocab_size", h.vocab_size},
      {"max_position_embeddings", h.seq_len},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"rope_parameters", {{"rope_theta", 10000.0}, {"rope_type", "default"}}},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"tie_word_embeddings", h.shared_classifier},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "float32"},
  };
  return ck;
}

Expected<Checkpoint> OpenLlama2cCheckpoint(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  KILN_ASSIGN_OR_RETURN(Checkpoint ck, ParseLlama2c(file->data(), file->size(), path));
  ck.owners.push_back(file);
  return ck;
}

}  // namespace kiln
