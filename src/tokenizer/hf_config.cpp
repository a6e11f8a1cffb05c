// What transformers 5 layers over the tokenizer files: tokenizer_config.json and
// generation_config.json.
#include <algorithm>

#include "tokenizer/hf_loaders.h"
#include "tokenizer/text_util.h"

namespace kiln::tok {

using nlohmann::json;

Expected<json> ReadJsonFile(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Corrupt(path + ": not valid JSON");
  return j;
}

std::string TokenContent(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

namespace {

int32_t IdOf(const PipelineSpec& spec, const std::string& content) {
  if (content.empty()) return -1;
  for (const AddedToken& t : spec.added)
    if (t.content == content) return t.id;
  return spec.model.Lookup(content);
}

bool IsLlamaClass(const std::string& cls) {
  return cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast" || cls == "CodeLlamaTokenizer" ||
         cls == "CodeLlamaTokenizerFast";
}

void AddUnique(std::vector<int32_t>* v, int32_t id) {
  if (id >= 0 && std::find(v->begin(), v->end(), id) == v->end()) v->push_back(id);
}

}  // namespace

Status ApplyTransformersConfig(const json& cfg, const json& gen, PipelineSpec* spec) {
  if (cfg.is_object()) {
    // Added tokens the tokenizer files may not carry (vocab.json / tiktoken layouts).
    if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
      for (auto it = cfg["added_tokens_decoder"].begin(); it != cfg["added_tokens_decoder"].end(); ++it) {
        int32_t id = -1;
        try {
          id = std::stoi(it.key());
        } catch (...) {
          return Corrupt("tokenizer_config.json: added_tokens_decoder key '" + it.key() + "' is not an id");
        }
        const json& t = it.value();
        bool known = std::any_of(spec->added.begin(), spec->added.end(),
                                 [&](const AddedToken& a) { return a.id == id; });
        if (known) continue;
        AddedToken a;
        a.id = id;
        a.content = TokenContent(t);
        if (a.content.empty()) continue;
        a.special = t.value("special", false);
        a.lstrip = t.value("lstrip", false);
        a.rstrip = t.value("rstrip", false);
        a.single_word = t.value("single_word", false);
        a.normalized = t.value("normalized", false);
        spec->added.push_back(std::move(a));
      }
    }
    const std::string cls = cfg.value("tokenizer_class", std::string());
    const int32_t bos = IdOf(*spec, TokenContent(cfg.value("bos_token", json())));
    const int32_t eos = IdOf(*spec, TokenContent(cfg.value("eos_token", json())));
    if (IsLlamaClass(cls)) {
      // transformers 5 rebuilds Llama tokenizers from vocab+merges: Metaspace pre-tokenizer
      // (legacy -> prepend always, else first), no normalizer, BOS by add_bos_token.
      bool add_prefix_space = cfg.contains("add_prefix_space") && cfg["add_prefix_space"].is_boolean()
                                  ? cfg["add_prefix_space"].get<bool>()
                                  : true;
      bool legacy = cfg.contains("legacy") && cfg["legacy"].is_boolean() ? cfg["legacy"].get<bool>() : true;
      spec->normalizers.clear();
      PreTokOp meta{};
      meta.kind = PreTokOp::kMetaspace;
      meta.prepend = !add_prefix_space ? PreTokOp::kNever : legacy ? PreTokOp::kAlways : PreTokOp::kFirst;
      meta.split = false;
      spec->pretokenizers = {meta};
      spec->decoders.clear();
      DecoderOp d{};
      d.kind = DecoderOp::kReplace, d.a = "\xE2\x96\x81", d.b = " ";
      spec->decoders.push_back(d);
      d = DecoderOp{}, d.kind = DecoderOp::kByteFallback;
      spec->decoders.push_back(d);
      d = DecoderOp{}, d.kind = DecoderOp::kFuse;
      spec->decoders.push_back(d);
      if (add_prefix_space) {
        d = DecoderOp{}, d.kind = DecoderOp::kStrip, d.a = " ", d.start = 1;
        spec->decoders.push_back(d);
      }
      spec->prefix_ids.clear();
      spec->suffix_ids.clear();
      if (cfg.value("add_bos_token", true) && bos >= 0) spec->prefix_ids.push_back(bos);
      if (cfg.value("add_eos_token", false) && eos >= 0) spec->suffix_ids.push_back(eos);
    } else {
      // add_prefix_space in the config overrides the ByteLevel pre-tokenizer's (GPT-2 family).
      if (cfg.contains("add_prefix_space") && cfg["add_prefix_space"].is_boolean())
        for (PreTokOp& op : spec->pretokenizers)
          if (op.kind == PreTokOp::kByteLevel) op.add_prefix_space = cfg["add_prefix_space"].get<bool>();
      auto flag = [&](const char* k) { return cfg.contains(k) && cfg[k].is_boolean() && cfg[k].get<bool>(); };
      if (flag("add_bos_token") && bos >= 0 && spec->prefix_ids.empty()) spec->prefix_ids.push_back(bos);
      if (flag("add_eos_token") && eos >= 0 && spec->suffix_ids.empty()) spec->suffix_ids.push_back(eos);
    }
    if (bos >= 0) spec->bos_id = bos;
    if (eos >= 0) {
      spec->eos_ids.clear();
      spec->eos_ids.push_back(eos);
    }
    if (cfg.contains("clean_up_tokenization_spaces") && cfg["clean_up_tokenization_spaces"].is_boolean())
      spec->cleanup_spaces = cfg["clean_up_tokenization_spaces"].get<bool>();
  }
  if (gen.is_object()) {
    const json& e = gen.value("eos_token_id", json());
    if (e.is_number_integer()) AddUnique(&spec->eos_ids, e.get<int32_t>());
    if (e.is_array())
      for (const json& x : e)
        if (x.is_number_integer()) AddUnique(&spec->eos_ids, x.get<int32_t>());
    if (spec->bos_id < 0 && gen.value("bos_token_id", json()).is_number_integer())
      spec->bos_id = gen["bos_token_id"].get<int32_t>();
  }
  return {};
}

}  // namespace kiln::tok
