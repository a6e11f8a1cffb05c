// tokenizer.json -> PipelineSpec (HF tokenizers semantics).
#include <algorithm>
#include <climits>

#include "tokenizer/hf_loaders.h"
#include "tokenizer/text_util.h"

namespace kiln::tok {
namespace {

using nlohmann::json;
constexpr int kMaxNesting = 32;  // Sequence-in-Sequence depth; real files use 1 or 2

std::string Str(const json& j, const char* key, const std::string& dflt = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}
bool Bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : dflt;
}
int Int(const json& j, const char* key, int dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int>() : dflt;
}
// A token id: a non-negative JSON integer below 2^31 (anything else is -1).
int32_t Id(const json& v) {
  if (!v.is_number_integer()) return -1;
  const int64_t id = v.get<int64_t>();
  return id >= 0 && id < INT32_MAX ? static_cast<int32_t>(id) : -1;
}

// {"String": "x"} or {"Regex": "..."}: literal or compiled regex.
Status ParsePattern(const json& p, const std::string& where, std::string* literal, std::shared_ptr<Regex>* regex) {
  if (p.is_object() && p.contains("String") && p["String"].is_string()) {
    *literal = p["String"].get<std::string>();
    return {};
  }
  if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) {
    auto r = Regex::Compile(p["Regex"].get<std::string>());
    if (!r.ok()) return r.status().With(where);
    *regex = *r;
    return {};
  }
  return Corrupt(where + ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

Status ParseNormalizer(const json& j, const std::string& src, std::vector<NormalizerOp>* out, int depth = 0) {
  if (depth > kMaxNesting) return Corrupt(src + ": normalizer Sequence nested too deeply");
  if (j.is_null()) return {};
  if (!j.is_object()) return Corrupt(src + ": normalizer must be an object");
  const std::string type = Str(j, "type");
  const std::string where = src + ": normalizer " + type;
  if (type == "Sequence") {
    for (const json& n : j.value("normalizers", json::array()))
      KILN_RETURN_IF_ERROR(ParseNormalizer(n, src, out, depth + 1));
    return {};
  }
  NormalizerOp op{};
  if (type == "NFC")
    op.kind = NormalizerOp::kNfc;
  else if (type == "NFD")
    op.kind = NormalizerOp::kNfd;
  else if (type == "NFKC")
    op.kind = NormalizerOp::kNfkc;
  else if (type == "NFKD")
    op.kind = NormalizerOp::kNfkd;
  else if (type == "Lowercase")
    op.kind = NormalizerOp::kLowercase;
  else if (type == "Prepend")
    op.kind = NormalizerOp::kPrepend, op.a = Str(j, "prepend");
  else if (type == "Strip")
    op.kind = NormalizerOp::kStrip, op.left = Bool(j, "strip_left", true), op.right = Bool(j, "strip_right", true);
  else if (type == "Replace") {
    op.kind = NormalizerOp::kReplace;
    op.b = Str(j, "content");
    KILN_RETURN_IF_ERROR(ParsePattern(j.value("pattern", json()), where, &op.a, &op.regex));
  } else {
    return Unsupported(where + " is not supported");
  }
  out->push_back(std::move(op));
  return {};
}

Expected<PreTokOp::Prepend> ParsePrependScheme(const json& j) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PreTokOp::kAlways;
    if (s == "first") return PreTokOp::kFirst;
    if (s == "never") return PreTokOp::kNever;
    return Corrupt("Metaspace prepend_scheme '" + s + "' is not always/first/never");
  }
  return Bool(j, "add_prefix_space", true) ? PreTokOp::kAlways : PreTokOp::kNever;
}

Status ParsePreTokenizer(const json& j, const std::string& src, std::vector<PreTokOp>* out, int depth = 0) {
  if (depth > kMaxNesting) return Corrupt(src + ": pre_tokenizer Sequence nested too deeply");
  if (j.is_null()) return {};
  if (!j.is_object()) return Corrupt(src + ": pre_tokenizer must be an object");
  const std::string type = Str(j, "type");
  const std::string where = src + ": pre_tokenizer " + type;
  if (type == "Sequence") {
    for (const json& n : j.value("pretokenizers", json::array()))
      KILN_RETURN_IF_ERROR(ParsePreTokenizer(n, src, out, depth + 1));
    return {};
  }
  PreTokOp op{};
  if (type == "Split") {
    op.kind = PreTokOp::kSplit;
    KILN_RETURN_IF_ERROR(ParsePattern(j.value("pattern", json()), where, &op.literal, &op.regex));
    const std::string b = Str(j, "behavior", "Isolated");
    if (b == "Removed")
      op.behavior = SplitBehavior::kRemoved;
    else if (b == "Isolated")
      op.behavior = SplitBehavior::kIsolated;
    else if (b == "MergedWithPrevious")
      op.behavior = SplitBehavior::kMergedWithPrevious;
    else if (b == "MergedWithNext")
      op.behavior = SplitBehavior::kMergedWithNext;
    else if (b == "Contiguous")
      op.behavior = SplitBehavior::kContiguous;
    else
      return Corrupt(where + ": unknown behavior '" + b + "'");
    op.invert = Bool(j, "invert", false);
  } else if (type == "ByteLevel") {
    op.kind = PreTokOp::kByteLevel;
    op.add_prefix_space = Bool(j, "add_prefix_space", true);
    if (Bool(j, "use_regex", true)) {
      KILN_ASSIGN_OR_RETURN(op.regex, Regex::Compile(kGpt2Pattern));
    }
  } else if (type == "Metaspace") {
    op.kind = PreTokOp::kMetaspace;
    op.replacement = Str(j, "replacement", "\xE2\x96\x81");
    auto scheme = ParsePrependScheme(j);
    if (!scheme.ok()) return scheme.status().With(where);
    op.prepend = *scheme;
    op.split = Bool(j, "split", true);
  } else if (type == "Digits") {
    op.kind = PreTokOp::kDigits;
    op.individual_digits = Bool(j, "individual_digits", false);
    KILN_ASSIGN_OR_RETURN(op.regex, Regex::Compile(op.individual_digits ? "\\p{N}" : "\\p{N}+"));
  } else if (type == "WhitespaceSplit") {
    op.kind = PreTokOp::kWhitespaceSplit;
    KILN_ASSIGN_OR_RETURN(op.regex, Regex::Compile("\\s+"));
  } else if (type == "Whitespace") {
    op.kind = PreTokOp::kSplit;
    op.behavior = SplitBehavior::kRemoved;
    op.invert = true;
    KILN_ASSIGN_OR_RETURN(op.regex, Regex::Compile("\\w+|[^\\w\\s]+"));
  } else {
    return Unsupported(where + " is not supported");
  }
  out->push_back(std::move(op));
  return {};
}

Status ParseDecoder(const json& j, const std::string& src, std::vector<DecoderOp>* out, int depth = 0) {
  if (depth > kMaxNesting) return Corrupt(src + ": decoder Sequence nested too deeply");
  if (j.is_null()) return {};
  if (!j.is_object()) return Corrupt(src + ": decoder must be an object");
  const std::string type = Str(j, "type");
  const std::string where = src + ": decoder " + type;
  if (type == "Sequence") {
    for (const json& n : j.value("decoders", json::array())) KILN_RETURN_IF_ERROR(ParseDecoder(n, src, out, depth + 1));
    return {};
  }
  DecoderOp op{};
  if (type == "ByteLevel") {
    op.kind = DecoderOp::kByteLevel;
  } else if (type == "ByteFallback") {
    op.kind = DecoderOp::kByteFallback;
  } else if (type == "Fuse") {
    op.kind = DecoderOp::kFuse;
  } else if (type == "Strip") {
    op.kind = DecoderOp::kStrip;
    op.a = Str(j, "content", " ");
    op.start = Int(j, "start", 0);
    op.stop = Int(j, "stop", 0);
  } else if (type == "Replace") {
    op.kind = DecoderOp::kReplace;
    op.b = Str(j, "content");
    std::shared_ptr<Regex> re;
    KILN_RETURN_IF_ERROR(ParsePattern(j.value("pattern", json()), where, &op.a, &re));
    if (re) return Unsupported(where + ": regex patterns in decoders are not supported");
  } else if (type == "Metaspace") {
    op.kind = DecoderOp::kMetaspace;
    op.replacement = Str(j, "replacement", "\xE2\x96\x81");
    auto scheme = ParsePrependScheme(j);
    if (!scheme.ok()) return scheme.status().With(where);
    op.strip_first_space = *scheme != PreTokOp::kNever;
  } else {
    return Unsupported(where + " is not supported");
  }
  out->push_back(std::move(op));
  return {};
}

// Resolves a post-processor into the ids added before/after the text.
Status ParsePostProcessor(const json& j, const std::string& src, PipelineSpec* spec, int depth = 0) {
  if (depth > kMaxNesting) return Corrupt(src + ": post_processor Sequence nested too deeply");
  if (j.is_null()) return {};
  const std::string type = Str(j, "type");
  const std::string where = src + ": post_processor " + type;
  if (type == "Sequence") {
    for (const json& n : j.value("processors", json::array()))
      KILN_RETURN_IF_ERROR(ParsePostProcessor(n, src, spec, depth + 1));
    return {};
  }
  if (type == "ByteLevel") return {};
  if (type == "TemplateProcessing") {
    const json& specials = j.value("special_tokens", json::object());
    bool after = false;
    for (const json& item : j.value("single", json::array())) {
      if (item.contains("Sequence")) {
        after = true;
        continue;
      }
      if (!item.contains("SpecialToken")) return Corrupt(where + ": unknown template item " + item.dump());
      std::string name = Str(item["SpecialToken"], "id");
      auto it = specials.find(name);
      if (it == specials.end() || !it->contains("ids") || !(*it)["ids"].is_array())
        return Corrupt(where + ": special token '" + name + "' has no ids");
      for (const json& id : (*it)["ids"]) {
        if (Id(id) < 0) return Corrupt(where + ": special token '" + name + "' has the id " + id.dump());
        (after ? spec->suffix_ids : spec->prefix_ids).push_back(Id(id));
      }
    }
    return {};
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json& cls = j.value("cls", json());
    const json& sep = j.value("sep", json());
    if (!cls.is_array() || cls.size() != 2 || !sep.is_array() || sep.size() != 2 || Id(cls[1]) < 0 || Id(sep[1]) < 0)
      return Corrupt(where + ": cls/sep must be [token, id]");
    spec->prefix_ids.push_back(Id(cls[1]));
    spec->suffix_ids.push_back(Id(sep[1]));
    return {};
  }
  return Unsupported(where + " is not supported");
}

Status ParseBpeModel(const json& m, const std::string& src, BpeModel* model) {
  const std::string type = Str(m, "type", "BPE");
  if (type != "BPE") return Unsupported(src + ": model type " + type + " is not supported (only BPE)");
  if (!Str(m, "continuing_subword_prefix").empty() || !Str(m, "end_of_word_suffix").empty())
    return Unsupported(src + ": BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  const json& vocab = m.value("vocab", json());
  if (!vocab.is_object()) return Corrupt(src + ": model.vocab must be an object");
  model->mode = BpeModel::Mode::kMergeRanks;
  model->vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) return Corrupt(src + ": model.vocab['" + it.key() + "'] is not an id");
    int64_t id = it.value().get<int64_t>();
    // Ids may leave holes, but not so many that a hostile file makes us allocate gigabytes.
    if (id < 0 || id > static_cast<int64_t>(2 * vocab.size() + 1024))
      return Corrupt(src + ": model.vocab['" + it.key() + "'] id " + std::to_string(id) + " out of range");
    if (static_cast<size_t>(id) >= model->pieces.size()) model->pieces.resize(id + 1);
    model->pieces[id] = it.key();
    model->vocab.emplace(it.key(), static_cast<int32_t>(id));
  }
  const json& merges = m.value("merges", json::array());
  if (!merges.is_array()) return Corrupt(src + ": model.merges must be an array");
  int32_t rank = 0;
  std::string a, b;
  for (const json& mg : merges) {
    if (mg.is_string()) {  // "a b"
      const std::string& s = mg.get_ref<const std::string&>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return Corrupt(src + ": merge '" + s + "' has no space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      return Corrupt(src + ": merge #" + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
    }
    int32_t ia = model->Lookup(a), ib = model->Lookup(b), ic = model->Lookup(a + b);
    if (ia >= 0 && ib >= 0 && ic >= 0) model->AddMerge(ia, ib, rank, ic);
    ++rank;
  }
  std::string unk = Str(m, "unk_token");
  if (!unk.empty()) model->unk_id = model->Lookup(unk);
  model->byte_fallback = Bool(m, "byte_fallback", false);
  model->fuse_unk = Bool(m, "fuse_unk", false);
  model->ignore_merges = Bool(m, "ignore_merges", false);
  model->Finish();
  return {};
}

}  // namespace

Expected<PipelineSpec> SpecFromTokenizerJson(const json& j, const std::string& src) {
  if (!j.is_object() || !j.contains("model")) return Corrupt(src + ": not a tokenizer.json (no \"model\")");
  PipelineSpec spec;
  spec.source = src;
  KILN_RETURN_IF_ERROR(ParseBpeModel(j["model"], src, &spec.model));
  KILN_RETURN_IF_ERROR(ParseNormalizer(j.value("normalizer", json()), src, &spec.normalizers));
  KILN_RETURN_IF_ERROR(ParsePreTokenizer(j.value("pre_tokenizer", json()), src, &spec.pretokenizers));
  KILN_RETURN_IF_ERROR(ParseDecoder(j.value("decoder", json()), src, &spec.decoders));
  KILN_RETURN_IF_ERROR(ParsePostProcessor(j.value("post_processor", json()), src, &spec));
  // Like the model's ids, added ids may leave holes but not gigabytes of them.
  const json& added = j.value("added_tokens", json::array());
  const int64_t max_id =
      2 * static_cast<int64_t>(spec.model.pieces.size() + (added.is_array() ? added.size() : 0)) + 1024;
  int64_t n_ids = static_cast<int64_t>(spec.model.pieces.size());
  for (const json& t : added) {
    AddedToken a;
    a.content = Str(t, "content");
    a.id = t.is_object() && t.contains("id") ? Id(t["id"]) : -1;
    if (a.id < 0 || a.content.empty()) return Corrupt(src + ": added token " + t.dump() + " lacks id/content");
    if (a.id > max_id)
      return Corrupt(src + ": added token '" + a.content + "' id " + std::to_string(a.id) + " out of range");
    n_ids = std::max<int64_t>(n_ids, a.id + 1);
    a.special = Bool(t, "special", false);
    a.lstrip = Bool(t, "lstrip", false);
    a.rstrip = Bool(t, "rstrip", false);
    a.single_word = Bool(t, "single_word", false);
    a.normalized = Bool(t, "normalized", false);
    spec.added.push_back(std::move(a));
  }
  // The post-processor's ids must name tokens that exist: a model would index its embedding with them.
  for (const auto* ids : {&spec.prefix_ids, &spec.suffix_ids})
    for (int32_t id : *ids)
      if (id >= n_ids)
        return Corrupt(src + ": post_processor adds the token id " + std::to_string(id) +
                       ", outside the vocabulary of " + std::to_string(n_ids));
  if (!spec.prefix_ids.empty()) spec.bos_id = spec.prefix_ids.front();
  return spec;
}

}  // namespace kiln::tok
