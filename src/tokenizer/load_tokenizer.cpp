// LoadTokenizer: picks the loader for a folder, engine directory or file.
#include <filesystem>
#include <fstream>

#include "format/gguf.h"
#include "tokenizer/hf_loaders.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/text_util.h"
#include "tokenizer/tokenizer.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using tok::FileExists;

// File-only loads have no tokenizer_config.json: name the usual end-of-text tokens.
void GuessEos(tok::PipelineSpec* spec) {
  if (!spec->eos_ids.empty()) return;
  for (const char* name : {"</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>", "<eos>"})
    for (const tok::AddedToken& t : spec->added)
      if (t.content == name) {
        spec->eos_ids.push_back(t.id);
        return;
      }
}

Expected<std::unique_ptr<Tokenizer>> Finish(tok::PipelineSpec spec) {
  GuessEos(&spec);
  return std::unique_ptr<Tokenizer>(new tok::PipelineTokenizer(std::move(spec)));
}

Expected<std::unique_ptr<Tokenizer>> LoadTokenizerJsonFile(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(json j, tok::ReadJsonFile(path));
  KILN_ASSIGN_OR_RETURN(tok::PipelineSpec spec, tok::SpecFromTokenizerJson(j, path));
  return Finish(std::move(spec));
}

Expected<std::unique_ptr<Tokenizer>> LoadGgufJsonFile(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(json j, tok::ReadJsonFile(path));
  auto t = LoadGgufTokenizer(j);
  if (!t.ok()) return t.status().With(path);
  return t;
}

json OptionalJson(const std::string& path, Status* err) {
  if (!FileExists(path)) return json();
  auto j = tok::ReadJsonFile(path);
  if (!j.ok()) {
    *err = j.status();
    return json();
  }
  return *j;
}

std::string FindTiktoken(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".tiktoken") return e.path().string();
  return {};
}

Expected<std::unique_ptr<Tokenizer>> LoadFolder(const std::string& dir) {
  Status err;
  const json cfg = OptionalJson(dir + "/tokenizer_config.json", &err);
  KILN_RETURN_IF_ERROR(err);
  const json gen = OptionalJson(dir + "/generation_config.json", &err);
  KILN_RETURN_IF_ERROR(err);
  const bool config_specials = cfg.is_object() && cfg.contains("added_tokens_decoder");
  auto finish = [&](Expected<tok::PipelineSpec> spec) -> Expected<std::unique_ptr<Tokenizer>> {
    if (!spec.ok()) return spec.status();
    KILN_RETURN_IF_ERROR(tok::ApplyTransformersConfig(cfg, gen, &spec.value()));
    return Finish(std::move(spec).value());
  };
  if (FileExists(dir + "/tokenizer.json")) {
    KILN_ASSIGN_OR_RETURN(json j, tok::ReadJsonFile(dir + "/tokenizer.json"));
    return finish(tok::SpecFromTokenizerJson(j, dir + "/tokenizer.json"));
  }
  if (FileExists(dir + "/tokenizer.model")) {
    const std::string p = dir + "/tokenizer.model";
    if (LooksLikeSentencePiece(p)) {
      bool add_bos = cfg.is_object() && cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()
                         ? cfg["add_bos_token"].get<bool>()
                         : true;
      bool add_eos = cfg.is_object() && cfg.value("add_eos_token", json()).is_boolean() &&
                     cfg["add_eos_token"].get<bool>();
      return LoadSentencePieceTokenizer(p, add_bos, add_eos, /*special_text=*/true);
    }
    return finish(tok::SpecFromTiktoken(p, config_specials));
  }
  if (FileExists(dir + "/tokenizer.bin")) return LoadLlama2cTokenizer(dir + "/tokenizer.bin");
  if (FileExists(dir + "/tokenizer.gguf.json")) return LoadGgufJsonFile(dir + "/tokenizer.gguf.json");
  if (std::string tk = FindTiktoken(dir); !tk.empty())
    return finish(tok::SpecFromTiktoken(tk, config_specials));
  if (FileExists(dir + "/vocab.json") && FileExists(dir + "/merges.txt")) {
    bool qwen = cfg.is_object() && cfg.value("tokenizer_class", std::string()).rfind("Qwen2", 0) == 0;
    return finish(tok::SpecFromVocabMerges(dir + "/vocab.json", dir + "/merges.txt", qwen));
  }
  return NotFound(dir +
                  ": no tokenizer.json, tokenizer.model, tokenizer.bin, tokenizer.gguf.json, *.tiktoken or "
                  "vocab.json+merges.txt");
}

}  // namespace

Expected<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const json& md) {
  KILN_ASSIGN_OR_RETURN(tok::PipelineSpec spec, tok::SpecFromGguf(md));
  return Finish(std::move(spec));
}

Expected<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  if (tok::IsDirectory(path)) return LoadFolder(path);
  if (!FileExists(path)) return NotFound(path + ": no such tokenizer file or folder");
  const std::string name = fs::path(path).filename().string();
  const std::string ext = fs::path(path).extension().string();
  if (name == "tokenizer.gguf.json" || (name.size() > 10 && name.substr(name.size() - 10) == ".gguf.json"))
    return LoadGgufJsonFile(path);
  if (ext == ".json") {
    if (name == "vocab.json") {
      std::string merges = (fs::path(path).parent_path() / "merges.txt").string();
      if (!FileExists(merges)) return NotFound(path + ": vocab.json needs merges.txt beside it");
      KILN_ASSIGN_OR_RETURN(tok::PipelineSpec spec, tok::SpecFromVocabMerges(path, merges, false));
      return Finish(std::move(spec));
    }
    return LoadTokenizerJsonFile(path);
  }
  if (ext == ".gguf") {
    KILN_ASSIGN_OR_RETURN(json md, ReadGgufMetadata(path));
    auto t = LoadGgufTokenizer(md);
    if (!t.ok()) return t.status().With(path);
    return t;
  }
  if (ext == ".bin") return LoadLlama2cTokenizer(path);
  if (ext == ".tiktoken") {
    KILN_ASSIGN_OR_RETURN(tok::PipelineSpec spec, tok::SpecFromTiktoken(path, false));
    return Finish(std::move(spec));
  }
  if (ext == ".model" || ext == ".v3") {
    if (LooksLikeSentencePiece(path)) return LoadSentencePieceTokenizer(path);
    KILN_ASSIGN_OR_RETURN(tok::PipelineSpec spec, tok::SpecFromTiktoken(path, false));
    return Finish(std::move(spec));
  }
  return Unsupported(path +
                     ": unknown tokenizer file type (expected a folder, tokenizer.json, *.model, *.bin, "
                     "*.tiktoken, *.gguf or tokenizer.gguf.json)");
}

Status SaveGgufTokenizerJson(const json& md, const std::string& engine_dir) {
  if (!md.is_object()) return InvalidArgument("GGUF metadata must be a JSON object");
  json out = json::object();
  for (auto it = md.begin(); it != md.end(); ++it)
    if (it.key().rfind("tokenizer.", 0) == 0) out[it.key()] = it.value();
  if (!out.contains("tokenizer.ggml.model")) return NotFound("GGUF metadata has no tokenizer.ggml.model");
  const std::string path = engine_dir + "/tokenizer.gguf.json";
  std::ofstream f(path, std::ios::binary);
  if (!f) return IoError("cannot write " + path);
  f << out.dump();
  if (!f) return IoError("error writing " + path);
  return {};
}

Expected<std::vector<std::string>> SaveTokenizerForEngine(const std::string& source,
                                                          const std::string& engine_dir) {
  std::vector<std::string> written;
  std::error_code ec;
  fs::create_directories(engine_dir, ec);
  auto copy = [&](const fs::path& from, const std::string& to_name) -> Status {
    fs::copy_file(from, fs::path(engine_dir) / to_name, fs::copy_options::overwrite_existing, ec);
    if (ec) return IoError("copying " + from.string() + " to " + engine_dir + ": " + ec.message());
    written.push_back(to_name);
    return {};
  };
  if (tok::IsDirectory(source)) {
    for (const auto& e : fs::directory_iterator(source, ec)) {
      const std::string n = e.path().filename().string();
      bool wanted = n == "tokenizer.json" || n == "tokenizer_config.json" || n == "tokenizer.model" ||
                    n == "tokenizer.bin" || n == "tokenizer.gguf.json" || n == "vocab.json" ||
                    n == "merges.txt" || n == "special_tokens_map.json" || n == "generation_config.json" ||
                    n == "chat_template.json" || n == "chat_template.jinja" ||
                    e.path().extension() == ".tiktoken";
      if (wanted && e.is_regular_file()) KILN_RETURN_IF_ERROR(copy(e.path(), n));
    }
    if (written.empty()) return NotFound(source + ": no tokenizer files to copy");
    return written;
  }
  if (!FileExists(source)) return NotFound(source + ": no such file");
  const fs::path p(source);
  const std::string ext = p.extension().string();
  if (ext == ".gguf") {
    KILN_ASSIGN_OR_RETURN(json md, ReadGgufMetadata(source));
    KILN_RETURN_IF_ERROR(SaveGgufTokenizerJson(md, engine_dir));
    return std::vector<std::string>{"tokenizer.gguf.json"};
  }
  std::string canonical = ext == ".bin"        ? "tokenizer.bin"
                          : ext == ".model"    ? "tokenizer.model"
                          : ext == ".tiktoken" ? p.filename().string()
                                               : "tokenizer.json";
  if (p.filename() == "tokenizer.gguf.json") canonical = "tokenizer.gguf.json";
  KILN_RETURN_IF_ERROR(copy(p, canonical));
  return written;
}

}  // namespace kiln
