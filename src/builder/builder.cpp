#include "builder/builder.h"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "builder/arch_table.h"
#include "builder/lora.h"
#include "core/mmap_file.h"
#include "format/checkpoint.h"
#include "format/engine_config.h"
#include "format/safetensors.h"

namespace kiln {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Tokenizer files recognised in a folder, copied under the same names.
const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.bin",
                                 "vocab.json",     "merges.txt",            "special_tokens_map.json",
                                 "tokenizer.gguf.json"};

Status CopyFile(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return IoError("cannot copy '" + from.string() + "' to '" + to.string() + "': " + ec.message());
  return Status::Ok();
}

// Copies the tokenizer into the engine and returns the engine's "tokenizer" section.
Expected<json> InstallTokenizer(const BuildOptions& o, const Checkpoint* ck, const ModelConfig& mc) {
  json section = {{"files", json::array()}};
  auto add = [&](const fs::path& from, const std::string& as) -> Status {
    KILN_RETURN_IF_ERROR(CopyFile(from, fs::path(o.out) / as));
    section["files"].push_back(as);
    return Status::Ok();
  };
  auto copy_folder = [&](const fs::path& dir) -> Status {
    for (const char* name : kTokenizerFiles)
      if (fs::is_regular_file(dir / name)) KILN_RETURN_IF_ERROR(add(dir / name, name));
    return Status::Ok();
  };
  if (!o.tokenizer.empty()) {
    const fs::path p(o.tokenizer);
    if (fs::is_directory(p)) {
      KILN_RETURN_IF_ERROR(copy_folder(p));
      if (section["files"].empty()) return NotFound("tokenizer folder '" + o.tokenizer + "' holds no tokenizer files");
    } else if (fs::is_regular_file(p)) {
      const std::string ext = p.extension().string();
      std::string as = p.filename().string();
      if (ext == ".bin") as = "tokenizer.bin";
      else if (ext == ".model") as = "tokenizer.model";
      else if (ext == ".gguf") return Unsupported("--tokenizer: read GGUF vocabularies by building from the GGUF file");
      KILN_RETURN_IF_ERROR(add(p, as));
      // A tokenizer.json's config sits beside it.
      if (as == "tokenizer.json" && fs::is_regular_file(p.parent_path() / "tokenizer_config.json"))
        KILN_RETURN_IF_ERROR(add(p.parent_path() / "tokenizer_config.json", "tokenizer_config.json"));
    } else {
      return NotFound("--tokenizer '" + o.tokenizer + "' does not exist");
    }
  } else if (ck && ck->format == "hf") {
    KILN_RETURN_IF_ERROR(copy_folder(ck->source_path));
  } else if (ck && ck->format == "gguf") {
    json meta = json::object();
    for (auto& [k, v] : ck->gguf_metadata.items())
      if (k.rfind("tokenizer.", 0) == 0) meta[k] = v;
    if (!meta.empty()) {
      KILN_RETURN_IF_ERROR(WriteTextFile((fs::path(o.out) / "tokenizer.gguf.json").string(), meta.dump()));
      section["files"].push_back("tokenizer.gguf.json");
    }
  }
  section["bos_id"] = mc.bos_id;
  section["eos_ids"] = mc.eos_ids;
  return section;
}

std::string NowIso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

Expected<DType> ChooseDType(const std::string& requested, const Checkpoint* ck) {
  if (requested != "auto") {
    KILN_ASSIGN_OR_RETURN(DType d, ParseDType(requested));
    if (d != DType::kF32 && d != DType::kF16 && d != DType::kBF16)
      return InvalidArgument("--dtype must be f32, f16 or bf16 (got '" + requested + "')");
    return d;
  }
  if (ck)
    for (const auto& t : ck->tensors)
      if (t.shape.size() == 2 && (t.dtype == DType::kF16 || t.dtype == DType::kBF16 || t.dtype == DType::kF32))
        return t.dtype;
  return DType::kBF16;
}

// A field of the wrong type in config.json, caught as nlohmann's exception.
Status ConfigTypeError(const json::exception& e) {
  return InvalidArgument(std::string("config.json: a field has the wrong type (") + e.what() + ")");
}

// HF config.json -> architecture and ModelConfig. A field of the wrong type in a downloaded config
// (say "tie_word_embeddings": "yes") is an error naming the file, not an escaping exception.
Status ConfigureModel(const json& hf, const ArchEntry** arch, ModelConfig* mc) {
  try {
    KILN_ASSIGN_OR_RETURN(*arch, FindArch(hf));
    KILN_RETURN_IF_ERROR(ReadCommonHfConfig(hf, mc));
    KILN_RETURN_IF_ERROR((*arch)->configure(hf, mc));
  } catch (const json::exception& e) {
    return ConfigTypeError(e);
  }
  return mc->Validate("model config");
}

}  // namespace

Status BuildEngine(const BuildOptions& o, const BuildProgress& progress) {
  if (o.out.empty()) return InvalidArgument("--out: no engine directory given");
  Checkpoint ck;
  json hf;
  if (o.dummy_weights) {
    if (o.hf_config.empty()) return InvalidArgument("--dummy-weights needs --config CONFIG.json (an HF config)");
    KILN_ASSIGN_OR_RETURN(std::string text, ReadTextFile(o.hf_config));
    try {
      hf = json::parse(text);
    } catch (const std::exception& e) {
      return InvalidArgument("'" + o.hf_config + "' is not valid JSON: " + e.what());
    }
  } else {
    if (o.checkpoint.empty()) return InvalidArgument("--checkpoint: no checkpoint given");
    KILN_ASSIGN_OR_RETURN(ck, OpenCheckpoint(o.checkpoint));
    hf = ck.config;
  }
  if (!hf.is_object()) return InvalidArgument("the model config is not a JSON object");
  const ArchEntry* arch = nullptr;
  ModelConfig mc;
  KILN_RETURN_IF_ERROR(ConfigureModel(hf, &arch, &mc));
  json lora_record = json::array();
  if (!o.lora.empty()) {
    if (o.dummy_weights) return InvalidArgument("--lora cannot be merged into dummy weights");
    KILN_RETURN_IF_ERROR(MergeLoraAdapters(ck, o.lora, &lora_record));
  }
  KILN_ASSIGN_OR_RETURN(DType dtype, ChooseDType(o.dtype, o.dummy_weights ? nullptr : &ck));

  std::vector<PlannedTensor> plan;
  if (!o.dummy_weights) {
    try {  // some mappings read config.json too (Falcon's layout)
      KILN_RETURN_IF_ERROR(arch->map_tensors(mc, ck, &plan));
    } catch (const json::exception& e) {
      return ConfigTypeError(e);
    }
  }

  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) return IoError("cannot create engine directory '" + o.out + "': " + ec.message());

  EngineConfig ec_cfg;
  ec_cfg.model = mc;
  ec_cfg.dtype = dtype;
  ec_cfg.dummy_weights = o.dummy_weights;
  ec_cfg.dummy_seed = o.dummy_seed;
  ec_cfg.kernels = {{"weight_layout", "row_major_out_in"}, {"vectors", "f32"}};
  ec_cfg.build = {{"source", o.dummy_weights ? o.hf_config : o.checkpoint},
                  {"source_format", o.dummy_weights ? "dummy" : ck.format},
                  {"date", NowIso()},
                  {"options", {{"dtype", std::string(DTypeName(dtype))}, {"dummy_weights", o.dummy_weights}}}};
  if (!lora_record.empty()) ec_cfg.build["lora"] = lora_record;
  KILN_ASSIGN_OR_RETURN(ec_cfg.tokenizer, InstallTokenizer(o, o.dummy_weights ? nullptr : &ck, mc));

  if (!o.dummy_weights) {
    SafetensorsWriter writer;
    for (auto& t : plan) {
      const DType target = t.matrix ? dtype : DType::kF32;
      auto produce = t.produce;
      const int64_t n = t.numel();
      const std::string name = t.name;
      writer.Add(t.name, target, t.shape, [produce, n, target, name](uint8_t* dst) -> Status {
        std::vector<float> tmp(n);
        KILN_RETURN_IF_ERROR(produce(tmp.data()));
        return ConvertElements(tmp.data(), DType::kF32, dst, target, n);
      });
    }
    writer.SetMetadata("format", "kiln");
    const std::string final_path = (fs::path(o.out) / "rank0.safetensors").string();
    const std::string tmp_path = final_path + ".partial";
    KILN_RETURN_IF_ERROR(writer.Write(tmp_path, [&](size_t done, size_t total, const std::string&) {
      if (progress) progress("tensors", done, total);
    }));
    fs::rename(tmp_path, final_path, ec);
    if (ec) return IoError("cannot rename '" + tmp_path + "' to '" + final_path + "': " + ec.message());
  } else {
    fs::remove(fs::path(o.out) / "rank0.safetensors", ec);
  }
  return WriteEngineConfig(o.out, ec_cfg);
}

}  // namespace kiln
