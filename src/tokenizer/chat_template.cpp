#include "tokenizer/chat_template.h"

#include <filesystem>

#include "format/gguf.h"
#include "tokenizer/hf_loaders.h"
#include "tokenizer/jinja.h"
#include "tokenizer/text_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// "chat_template": "..." or [{"name": "default", "template": "..."}, ...]
Expected<std::string> PickTemplate(const json& ct, const std::string& name, const std::string& where) {
  if (ct.is_string()) return ct.get<std::string>();
  if (ct.is_array()) {
    const std::string want = name.empty() ? "default" : name;
    std::string names;
    for (const json& t : ct) {
      if (!t.is_object() || !t.value("template", json()).is_string()) continue;
      std::string n = t.value("name", std::string());
      if (n == want) return t["template"].get<std::string>();
      names += (names.empty() ? "" : ", ") + n;
    }
    return NotFound(where + ": no chat template named '" + want + "' (have: " + names + ")");
  }
  return NotFound(where + ": no chat_template");
}

json SpecialsFrom(const json& cfg) {
  json s = json::object();
  if (!cfg.is_object()) return s;
  for (const char* k :
       {"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"}) {
    std::string v = tok::TokenContent(cfg.value(k, json()));
    if (!v.empty()) s[k] = v;
  }
  return s;
}

// GGUF metadata: tokenizer.chat_template (or tokenizer.chat_template.<name>), with the BOS/EOS
// strings taken from the token list.
Expected<std::pair<std::string, json>> FromGguf(const json& md, const std::string& name,
                                                const std::string& where) {
  const std::string key =
      name.empty() || name == "default" ? "tokenizer.chat_template" : "tokenizer.chat_template." + name;
  if (!md.is_object() || !md.contains(key) || !md[key].is_string()) return NotFound(where + ": no " + key);
  json specials = json::object();
  const json& toks = md.value("tokenizer.ggml.tokens", json());
  auto tok_at = [&](const char* k) -> std::string {
    const json& id = md.value(k, json());
    if (!toks.is_array() || !id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<size_t>() >= toks.size() || !toks[id.get<size_t>()].is_string())
      return {};
    return toks[id.get<size_t>()].get<std::string>();
  };
  for (auto [k, gk] : {std::pair{"bos_token", "tokenizer.ggml.bos_token_id"},
                       {"eos_token", "tokenizer.ggml.eos_token_id"},
                       {"unk_token", "tokenizer.ggml.unknown_token_id"},
                       {"pad_token", "tokenizer.ggml.padding_token_id"}}) {
    std::string v = tok_at(gk);
    if (!v.empty()) specials[k] = v;
  }
  return std::pair{md[key].get<std::string>(), specials};
}

}  // namespace

Expected<ChatTemplate> ChatTemplate::Create(const std::string& source, json special_tokens) {
  jinja::Limits lim;
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<jinja::Template> t, jinja::Parse(source, lim));
  ChatTemplate ct;
  ct.tmpl_ = std::move(t);
  ct.source_ = source;
  ct.specials_ = special_tokens.is_object() ? std::move(special_tokens) : json::object();
  return ct;
}

Expected<ChatTemplate> ChatTemplate::Load(const std::string& path, const std::string& name) {
  std::string dir = tok::IsDirectory(path) ? path : fs::path(path).parent_path().string();
  json cfg;
  const std::string cfg_path = dir + "/tokenizer_config.json";
  if (tok::FileExists(cfg_path)) {
    KILN_ASSIGN_OR_RETURN(cfg, tok::ReadJsonFile(cfg_path));
  }
  auto from_json_file = [&](const std::string& p) -> Expected<ChatTemplate> {
    KILN_ASSIGN_OR_RETURN(json j, tok::ReadJsonFile(p));
    KILN_ASSIGN_OR_RETURN(std::string src, PickTemplate(j.value("chat_template", json()), name, p));
    json specials = SpecialsFrom(cfg);
    const json own = SpecialsFrom(j);
    for (auto it = own.begin(); it != own.end(); ++it) specials[it.key()] = it.value();  // the file's own win
    auto ct = Create(src, specials);
    if (!ct.ok()) return ct.status().With(p);
    return ct;
  };
  auto from_jinja = [&](const std::string& p) -> Expected<ChatTemplate> {
    KILN_ASSIGN_OR_RETURN(std::string src, tok::ReadFileToString(p));
    auto ct = Create(src, SpecialsFrom(cfg));
    if (!ct.ok()) return ct.status().With(p);
    return ct;
  };
  auto from_gguf_md = [&](const json& md, const std::string& p) -> Expected<ChatTemplate> {
    KILN_ASSIGN_OR_RETURN(auto src, FromGguf(md, name, p));
    auto ct = Create(src.first, src.second);
    if (!ct.ok()) return ct.status().With(p);
    return ct;
  };
  if (tok::IsDirectory(path)) {
    if (tok::FileExists(dir + "/chat_template.jinja")) return from_jinja(dir + "/chat_template.jinja");
    if (tok::FileExists(dir + "/chat_template.json")) return from_json_file(dir + "/chat_template.json");
    if (cfg.is_object()) return from_json_file(cfg_path);
    if (tok::FileExists(dir + "/tokenizer.gguf.json")) {
      KILN_ASSIGN_OR_RETURN(json md, tok::ReadJsonFile(dir + "/tokenizer.gguf.json"));
      return from_gguf_md(md, dir + "/tokenizer.gguf.json");
    }
    // An engine directory may carry the template in config.json's "tokenizer" section.
    if (tok::FileExists(dir + "/config.json")) {
      KILN_ASSIGN_OR_RETURN(json ec, tok::ReadJsonFile(dir + "/config.json"));
      const json& t = ec.value("tokenizer", json());
      if (t.is_object() && t.contains("chat_template")) {
        KILN_ASSIGN_OR_RETURN(std::string src, PickTemplate(t["chat_template"], name, dir + "/config.json"));
        auto ct = Create(src, SpecialsFrom(t));
        if (!ct.ok()) return ct.status().With(dir + "/config.json");
        return ct;
      }
    }
    return NotFound(path +
                    ": no chat_template.jinja, chat_template.json, tokenizer_config.json, "
                    "tokenizer.gguf.json or config.json tokenizer.chat_template");
  }
  if (!tok::FileExists(path)) return NotFound(path + ": no such file");
  if (fs::path(path).extension() == ".jinja") return from_jinja(path);
  if (fs::path(path).extension() == ".gguf") {
    KILN_ASSIGN_OR_RETURN(json md, ReadGgufMetadata(path));
    return from_gguf_md(md, path);
  }
  if (fs::path(path).filename() == "tokenizer.gguf.json") {
    KILN_ASSIGN_OR_RETURN(json md, tok::ReadJsonFile(path));
    return from_gguf_md(md, path);
  }
  return from_json_file(path);
}

Expected<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                           const ChatTemplateOptions& opt) const {
  if (!tmpl_) return Internal("ChatTemplate used before Create/Load");
  if (!messages.is_array()) return InvalidArgument("chat messages must be a JSON array");
  jinja::Value ctx = jinja::Value::object();
  for (auto& [k, v] : specials_.items()) ctx[k] = jinja::Value::parse(v.dump());
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = opt.add_generation_prompt;
  if (opt.extra.is_object())
    for (auto it = opt.extra.begin(); it != opt.extra.end(); ++it) ctx[it.key()] = it.value();
  jinja::RenderOptions ro;
  ro.now = opt.now;
  ro.limits.max_depth = opt.max_depth;
  ro.limits.max_loop_iterations = opt.max_loop_iterations;
  ro.limits.max_output_bytes = opt.max_output_bytes;
  return jinja::Render(*tmpl_, ctx, ro);
}

}  // namespace kiln
