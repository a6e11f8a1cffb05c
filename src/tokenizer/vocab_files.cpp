// PipelineSpecs from vocab.json + merges.txt, tiktoken rank files and GGUF tokenizer metadata.
#include <algorithm>
#include <sstream>

#include "tokenizer/hf_loaders.h"
#include "tokenizer/text_util.h"

namespace kiln::tok {
namespace {

using nlohmann::json;

DecoderOp Dec(DecoderOp::Kind k) {
  DecoderOp d{};
  d.kind = k;
  return d;
}

Status AddByteLevelStages(const char* pattern, bool nfc, PipelineSpec* spec) {
  if (nfc) {
    NormalizerOp op{};
    op.kind = NormalizerOp::kNfc;
    spec->normalizers.push_back(op);
  }
  PreTokOp split{};
  split.kind = PreTokOp::kSplit;
  KILN_ASSIGN_OR_RETURN(split.regex, Regex::Compile(pattern));
  spec->pretokenizers.push_back(split);
  PreTokOp bl{};
  bl.kind = PreTokOp::kByteLevel;
  spec->pretokenizers.push_back(bl);
  spec->decoders.push_back(Dec(DecoderOp::kByteLevel));
  return {};
}

bool Base64Decode(std::string_view in, std::string* out) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = val(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

void AddSpecial(PipelineSpec* spec, const std::string& content, int32_t id, bool match = true) {
  AddedToken a;
  a.match_in_text = match;
  a.content = content;
  a.id = id;
  a.special = true;
  spec->added.push_back(std::move(a));
}

}  // namespace

Expected<PipelineSpec> SpecFromVocabMerges(const std::string& vocab_path, const std::string& merges_path,
                                           bool qwen_style) {
  KILN_ASSIGN_OR_RETURN(json vocab, ReadJsonFile(vocab_path));
  KILN_ASSIGN_OR_RETURN(std::string merges, ReadFileToString(merges_path));
  json model = {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", json::array()}};
  std::istringstream ss(merges);
  std::string line;
  while (std::getline(ss, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    model["merges"].push_back(line);
  }
  json tj = {{"model", std::move(model)}};
  KILN_ASSIGN_OR_RETURN(PipelineSpec spec, SpecFromTokenizerJson(tj, vocab_path));
  if (qwen_style) {
    KILN_RETURN_IF_ERROR(AddByteLevelStages(kQwen2Pattern, true, &spec));
  } else {
    PreTokOp bl{};
    bl.kind = PreTokOp::kByteLevel;
    KILN_ASSIGN_OR_RETURN(bl.regex, Regex::Compile(kGpt2Pattern));
    spec.pretokenizers.push_back(bl);
    spec.decoders.push_back(Dec(DecoderOp::kByteLevel));
  }
  return spec;
}

Expected<PipelineSpec> SpecFromTiktoken(const std::string& path, bool have_config_specials) {
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  PipelineSpec spec;
  spec.source = path;
  BpeModel& m = spec.model;
  m.mode = BpeModel::Mode::kScores;
  m.ignore_merges = true;  // tiktoken emits a piece that is itself a token without merging
  std::istringstream ss(text);
  std::string line;
  int lineno = 0;
  const long max_rank = 2 * static_cast<long>(std::count(text.begin(), text.end(), '\n')) + 1024;
  while (std::getline(ss, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    std::string bytes;
    long rank = -1;
    if (sp != std::string::npos) {
      try {
        rank = std::stol(line.substr(sp + 1));
      } catch (...) {
        rank = -1;
      }
    }
    if (sp == std::string::npos || rank < 0 || rank > max_rank || !Base64Decode(line.substr(0, sp), &bytes))
      return Corrupt(path + ":" + std::to_string(lineno) + ": expected '<base64> <rank>'");
    std::string piece = BytesToByteLevel(bytes);
    if (static_cast<size_t>(rank) >= m.pieces.size()) {
      m.pieces.resize(rank + 1);
      m.scores.resize(rank + 1, 0.0f);
    }
    m.pieces[rank] = piece;
    m.scores[rank] = -static_cast<float>(rank);
    m.vocab.emplace(std::move(piece), static_cast<int32_t>(rank));
  }
  if (m.pieces.size() < 256) return Corrupt(path + ": only " + std::to_string(m.pieces.size()) + " ranks");
  m.Finish();
  const bool llama3 = m.pieces.size() == 128000;
  KILN_RETURN_IF_ERROR(AddByteLevelStages(llama3 ? kLlama3Pattern : kCl100kPattern, false, &spec));
  if (!have_config_specials) {
    if (llama3) {
      // Meta's Llama-3.1 special tokens (tokenizer.py), ids 128000..128255.
      const char* named[] = {"<|begin_of_text|>",
                             "<|end_of_text|>",
                             "<|reserved_special_token_0|>",
                             "<|reserved_special_token_1|>",
                             "<|finetune_right_pad_id|>",
                             "<|step_id|>",
                             "<|start_header_id|>",
                             "<|end_header_id|>",
                             "<|eom_id|>",
                             "<|eot_id|>",
                             "<|python_tag|>"};
      int32_t id = 128000;
      for (const char* n : named) AddSpecial(&spec, n, id++);
      for (int r = 2; id < 128256; ++r)
        AddSpecial(&spec, "<|reserved_special_token_" + std::to_string(r) + "|>", id++);
      spec.bos_id = 128000;
      spec.eos_ids = {128001, 128008, 128009};
    } else {
      AddSpecial(&spec, "<|endoftext|>", 100257, false);
      AddSpecial(&spec, "<|fim_prefix|>", 100258, false);
      AddSpecial(&spec, "<|fim_middle|>", 100259, false);
      AddSpecial(&spec, "<|fim_suffix|>", 100260, false);
      AddSpecial(&spec, "<|endofprompt|>", 100276, false);
      spec.eos_ids = {100257};
    }
  }
  return spec;
}

Expected<PipelineSpec> SpecFromGguf(const json& md) {
  const std::string src = "GGUF tokenizer metadata";
  if (!md.is_object()) return Corrupt(src + ": not an object");
  auto get = [&](const char* k) -> const json& {
    static const json kNull;
    auto it = md.find(k);
    return it == md.end() ? kNull : *it;
  };
  const json& jm = get("tokenizer.ggml.model");
  if (!jm.is_string()) return NotFound(src + ": tokenizer.ggml.model is missing");
  const std::string model = jm.get<std::string>();
  const json& tokens = get("tokenizer.ggml.tokens");
  if (!tokens.is_array() || tokens.empty())
    return Corrupt(src + ": tokenizer.ggml.tokens must be a non-empty array");
  const json& scores = get("tokenizer.ggml.scores");
  const json& types = get("tokenizer.ggml.token_type");
  if (scores.is_array() && scores.size() != tokens.size())
    return Corrupt(src + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) + " entries for " +
                   std::to_string(tokens.size()) + " tokens");
  if (types.is_array() && types.size() != tokens.size())
    return Corrupt(src + ": tokenizer.ggml.token_type size differs from tokenizer.ggml.tokens");

  PipelineSpec spec;
  spec.source = src;
  BpeModel& m = spec.model;
  const size_t n = tokens.size();
  m.pieces.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (!tokens[i].is_string())
      return Corrupt(src + ": tokenizer.ggml.tokens[" + std::to_string(i) + "] not a string");
    m.pieces[i] = tokens[i].get<std::string>();
    int type = types.is_array() && types[i].is_number_integer() ? types[i].get<int>() : 1;
    if (type == 3 || type == 4) {  // control / user-defined: matched as added tokens
      AddedToken a;
      a.content = m.pieces[i];
      a.id = static_cast<int32_t>(i);
      a.special = type == 3;
      spec.added.push_back(std::move(a));
      if (type == 3) continue;
    }
    m.vocab.emplace(m.pieces[i], static_cast<int32_t>(i));
  }
  auto id_key = [&](const char* k) -> int32_t {
    const json& v = get(k);
    return v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < static_cast<int64_t>(n)
               ? v.get<int32_t>()
               : -1;
  };
  auto bool_key = [&](const char* k, bool dflt) {
    const json& v = get(k);
    return v.is_boolean() ? v.get<bool>() : dflt;
  };
  spec.bos_id = id_key("tokenizer.ggml.bos_token_id");
  for (const char* k :
       {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t id = id_key(k);
    if (id >= 0 && std::find(spec.eos_ids.begin(), spec.eos_ids.end(), id) == spec.eos_ids.end())
      spec.eos_ids.push_back(id);
  }
  if (model == "llama") {
    m.mode = BpeModel::Mode::kScores;
    m.scores.resize(n, 0.0f);
    if (scores.is_array())
      for (size_t i = 0; i < n; ++i) m.scores[i] = scores[i].is_number() ? scores[i].get<float>() : 0.0f;
    m.byte_fallback = true;
    m.unk_id = id_key("tokenizer.ggml.unknown_token_id");
    if (m.unk_id < 0) m.unk_id = 0;
    m.Finish();
    const bool space_prefix = bool_key("tokenizer.ggml.add_space_prefix", true);
    NormalizerOp pre{};
    pre.kind = NormalizerOp::kPrepend, pre.a = " ";
    if (space_prefix) spec.normalizers.push_back(pre);
    NormalizerOp rep{};
    rep.kind = NormalizerOp::kReplace, rep.a = " ", rep.b = "\xE2\x96\x81";
    spec.normalizers.push_back(rep);
    DecoderOp d = Dec(DecoderOp::kReplace);
    d.a = "\xE2\x96\x81", d.b = " ";
    spec.decoders = {d, Dec(DecoderOp::kByteFallback), Dec(DecoderOp::kFuse)};
    if (space_prefix) {
      d = Dec(DecoderOp::kStrip);
      d.a = " ", d.start = 1;
      spec.decoders.push_back(d);
    }
    if (bool_key("tokenizer.ggml.add_bos_token", true) && spec.bos_id >= 0)
      spec.prefix_ids.push_back(spec.bos_id);
  } else if (model == "gpt2") {
    const json& merges = get("tokenizer.ggml.merges");
    if (!merges.is_array()) return Corrupt(src + ": gpt2 model needs tokenizer.ggml.merges");
    json tj = {{"model", {{"type", "BPE"}, {"vocab", json::object()}, {"merges", merges}}}};
    // Reuse the tokenizer.json merge parser on a vocab built from the token list.
    for (size_t i = 0; i < n; ++i) tj["model"]["vocab"][m.pieces[i]] = static_cast<int64_t>(i);
    KILN_ASSIGN_OR_RETURN(PipelineSpec bpe, SpecFromTokenizerJson(tj, src));
    m = std::move(bpe.model);
    const json& pre = get("tokenizer.ggml.pre");
    const std::string p = pre.is_string() ? pre.get<std::string>() : "default";
    const char* pattern = nullptr;
    if (p == "default" || p == "gpt-2" || p == "gpt2" || p == "starcoder" || p == "refact")
      pattern = kGpt2Pattern;
    else if (p == "llama-bpe" || p == "llama3" || p == "smaug-bpe" || p == "falcon3")
      pattern = kLlama3Pattern;
    else if (p == "qwen2" || p == "deepseek-r1-qwen")
      pattern = kQwen2Pattern;
    else
      return Unsupported(src + ": tokenizer.ggml.pre '" + p + "' is not supported");
    KILN_RETURN_IF_ERROR(AddByteLevelStages(pattern, false, &spec));
    if (bool_key("tokenizer.ggml.add_bos_token", false) && spec.bos_id >= 0)
      spec.prefix_ids.push_back(spec.bos_id);
  } else {
    return Unsupported(src + ": tokenizer.ggml.model '" + model + "' is not supported (llama, gpt2)");
  }
  if (bool_key("tokenizer.ggml.add_eos_token", false) && !spec.eos_ids.empty())
    spec.suffix_ids.push_back(spec.eos_ids.front());
  return spec;
}

}  // namespace kiln::tok
