// PEFT LoRA merge: for every adapted module X (tensors base_model.model.X.lora_A.weight [r, in] and
// X.lora_B.weight [out, r]), the base X.weight [out, in] (fan_in_fan_out: [in, out], GPT-2 Conv1D)
// becomes W + scale * B @ A with scale = alpha / r (use_rslora: alpha / sqrt(r)); rank_pattern and
// alpha_pattern override r and alpha per module. Adapters are merged in the order given.
#include "builder/lora.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "builder/arch_table.h"
#include "core/mmap_file.h"
#include "format/safetensors.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kPrefix = "base_model.model.";

struct AdapterConfig {
  int64_t r = 8;
  double alpha = 8;
  bool fan_in_fan_out = false;
  bool use_rslora = false;
  json target_modules;  // list of names, or a regex string over the full module path
  json rank_pattern = json::object(), alpha_pattern = json::object();
};

// PEFT's key matching: a name matches a module path when the path is the name or ends in ".name".
bool NameMatches(const std::string& path, const std::string& name) {
  return path == name ||
         (path.size() > name.size() && path.compare(path.size() - name.size(), name.size(), name) == 0 &&
          path[path.size() - name.size() - 1] == '.');
}

// rank_pattern / alpha_pattern keys are regexes matched as "(.*\.)?key$"; plain names are the common case.
bool PatternMatches(const std::string& path, const std::string& key) {
  if (NameMatches(path, key)) return true;
  try {
    return std::regex_match(path, std::regex("(.*\\.)?" + key));
  } catch (const std::regex_error&) {
    return false;
  }
}

bool Targeted(const AdapterConfig& a, const std::string& path) {
  if (a.target_modules.is_string()) {
    try {
      return std::regex_match(path, std::regex(a.target_modules.get<std::string>()));
    } catch (const std::regex_error&) {
      return false;
    }
  }
  if (a.target_modules.is_array())
    for (const auto& t : a.target_modules)
      if (t.is_string() && (t == "all-linear" || NameMatches(path, t.get<std::string>()))) return true;
  return false;
}

Expected<AdapterConfig> ReadAdapterConfig(const std::string& dir) {
  const std::string path = (fs::path(dir) / "adapter_config.json").string();
  KILN_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    return InvalidArgument("'" + path + "' is not valid JSON: " + e.what());
  }
  const std::string where = "'" + path + "'";
  if (j.value("peft_type", std::string("LORA")) != "LORA")
    return Unsupported(where + ": peft_type '" + j.value("peft_type", std::string()) + "' is not LORA");
  AdapterConfig a;
  try {
    a.r = j.at("r").get<int64_t>();
    a.alpha = j.contains("lora_alpha") && !j["lora_alpha"].is_null() ? j["lora_alpha"].get<double>()
                                                                     : static_cast<double>(a.r);
    a.fan_in_fan_out = j.value("fan_in_fan_out", false);
    a.use_rslora = j.value("use_rslora", false);
    if (j.value("use_dora", false)) return Unsupported(where + ": DoRA adapters (use_dora) cannot be merged");
    if (j.contains("bias") && j["bias"].is_string() && j["bias"] != "none")
      return Unsupported(where + ": adapters that train biases (bias='" + j["bias"].get<std::string>() +
                         "') are not supported");
    if (j.contains("modules_to_save") && j["modules_to_save"].is_array() && !j["modules_to_save"].empty())
      return Unsupported(where + ": modules_to_save (fully retrained modules) is not supported");
    a.target_modules = j.value("target_modules", json());
    if (j.contains("rank_pattern") && j["rank_pattern"].is_object()) a.rank_pattern = j["rank_pattern"];
    if (j.contains("alpha_pattern") && j["alpha_pattern"].is_object()) a.alpha_pattern = j["alpha_pattern"];
  } catch (const std::exception& e) {
    return InvalidArgument(where + ": bad field: " + e.what());
  }
  if (a.r <= 0) return InvalidArgument(where + ": r must be positive");
  if (!a.target_modules.is_array() && !a.target_modules.is_string())
    return InvalidArgument(where + ": target_modules must be a list of module names or a regex string");
  return a;
}

std::string Shape(const std::vector<int64_t>& s) { return ShapeString(s); }

// Merges one module: base [out, in] (or [in, out] when fan_in_fan_out) += scale * B @ A.
Status MergeModule(Checkpoint& ck, SourceTensor* base, const TensorInfo& a, const TensorInfo& b, double scale,
                   bool fan_in_fan_out, const std::string& adapter) {
  const int64_t r = a.shape[0], in = a.shape[1], out = b.shape[0];
  const std::vector<int64_t> want =
      fan_in_fan_out ? std::vector<int64_t>{in, out} : std::vector<int64_t>{out, in};
  if (base->shape != want)
    return InvalidArgument("LoRA adapter '" + adapter + "': '" + a.name + "' " + Shape(a.shape) + " and '" +
                           b.name + "' " + Shape(b.shape) + " need base '" + base->name + "' of shape " +
                           Shape(want) + (fan_in_fan_out ? " (fan_in_fan_out)" : "") +
                           ", the checkpoint has " + Shape(base->shape));
  std::vector<float> fa(a.numel()), fb(b.numel());
  KILN_RETURN_IF_ERROR(
      ConvertElements(a.data, a.dtype, fa.data(), DType::kF32, a.numel()).With("tensor '" + a.name + "'"));
  KILN_RETURN_IF_ERROR(
      ConvertElements(b.data, b.dtype, fb.data(), DType::kF32, b.numel()).With("tensor '" + b.name + "'"));
  auto merged = std::make_shared<std::vector<float>>(base->numel());
  KILN_RETURN_IF_ERROR(SourceToF32(*base, merged->data()));
  float* w = merged->data();
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      double delta = 0;
      for (int64_t k = 0; k < r; ++k) delta += static_cast<double>(fb[o * r + k]) * fa[k * in + i];
      float& dst = fan_in_fan_out ? w[i * out + o] : w[o * in + i];
      dst = static_cast<float>(dst + scale * delta);
    }
  base->dtype = DType::kF32;
  base->data = reinterpret_cast<const uint8_t*>(merged->data());
  base->nbytes = merged->size() * sizeof(float);
  ck.owners.push_back(merged);
  return Status::Ok();
}

Status MergeOne(Checkpoint& ck, const std::string& dir, json* record) {
  KILN_ASSIGN_OR_RETURN(AdapterConfig cfg, ReadAdapterConfig(dir));
  const fs::path st_path = fs::path(dir) / "adapter_model.safetensors";
  if (!fs::exists(st_path)) {
    if (fs::exists(fs::path(dir) / "adapter_model.bin"))
      return Unsupported("LoRA adapter '" + dir +
                         "': adapter_model.bin (pickle) is not supported; save it as safetensors");
    return NotFound("LoRA adapter '" + dir + "' has no adapter_model.safetensors");
  }
  KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(st_path.string()));

  // Module path -> (A, B), validating every tensor's name.
  std::map<std::string, std::pair<const TensorInfo*, const TensorInfo*>> modules;
  for (const auto& t : file.tensors()) {
    std::string name = t.name;
    if (name.rfind(kPrefix, 0) == 0) name = name.substr(std::string(kPrefix).size());
    if (name.find("lora_embedding_") != std::string::npos ||
        name.find("lora_magnitude_vector") != std::string::npos)
      return Unsupported("LoRA adapter '" + dir + "': tensor '" + t.name +
                         "' (embedding LoRA / DoRA) cannot be merged");
    auto ends = [&](const std::string& s) {
      return name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends(".lora_A.weight"))
      modules[name.substr(0, name.size() - 14)].first = &t;
    else if (ends(".lora_B.weight"))
      modules[name.substr(0, name.size() - 14)].second = &t;
    else
      return InvalidArgument("LoRA adapter '" + dir + "': unexpected tensor '" + t.name + "'");
  }
  if (modules.empty()) return InvalidArgument("LoRA adapter '" + dir + "' holds no lora_A/lora_B tensors");

  // Every listed target module must name a layer of the base (PEFT refuses the same).
  if (cfg.target_modules.is_array()) {
    for (const auto& t : cfg.target_modules) {
      if (!t.is_string() || t == "all-linear") continue;
      bool found = false;
      for (const auto& bt : ck.tensors) {
        const std::string& n = bt.name;
        if (n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 &&
            NameMatches(n.substr(0, n.size() - 7), t))
          found = true;
      }
      if (!found)
        return InvalidArgument("LoRA adapter '" + dir + "': target module '" + t.get<std::string>() +
                               "' matches no layer of the base checkpoint '" + ck.source_path + "'");
    }
  }

  int merged = 0;
  for (const auto& [path, ab] : modules) {
    const auto [a, b] = ab;
    if (!a || !b)
      return InvalidArgument("LoRA adapter '" + dir + "': module '" + path + "' lacks its lora_" +
                             (a ? "B" : "A") + " tensor");
    if (!Targeted(cfg, path))
      return InvalidArgument("LoRA adapter '" + dir + "': module '" + path +
                             "' is not in the adapter's target_modules " + cfg.target_modules.dump());
    SourceTensor* base = nullptr;
    for (auto& t : ck.tensors)
      if (t.name == path + ".weight") base = &t;
    if (!base)
      return InvalidArgument("LoRA adapter '" + dir + "': unknown target module '" + path +
                             "': the base checkpoint '" + ck.source_path + "' has no tensor '" + path +
                             ".weight'");
    if (a->shape.size() != 2 || b->shape.size() != 2 || b->shape[1] != a->shape[0] || base->shape.size() != 2)
      return InvalidArgument("LoRA adapter '" + dir + "': '" + a->name + "' " + Shape(a->shape) + " and '" +
                             b->name + "' " + Shape(b->shape) + " are not a rank-r pair for 2-D '" +
                             base->name + "'");
    int64_t r = cfg.r;
    double alpha = cfg.alpha;
    for (const auto& [k, v] : cfg.rank_pattern.items())
      if (v.is_number_integer() && PatternMatches(path, k)) r = v.get<int64_t>();
    for (const auto& [k, v] : cfg.alpha_pattern.items())
      if (v.is_number() && PatternMatches(path, k)) alpha = v.get<double>();
    if (a->shape[0] != r)
      return InvalidArgument("LoRA adapter '" + dir + "': '" + a->name + "' has rank " +
                             std::to_string(a->shape[0]) +
                             ", adapter_config.json says r=" + std::to_string(r));
    const double scale =
        cfg.use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
    KILN_RETURN_IF_ERROR(MergeModule(ck, base, *a, *b, scale, cfg.fan_in_fan_out, dir));
    ++merged;
  }
  record->push_back({{"path", dir},
                     {"r", cfg.r},
                     {"lora_alpha", cfg.alpha},
                     {"use_rslora", cfg.use_rslora},
                     {"fan_in_fan_out", cfg.fan_in_fan_out},
                     {"target_modules", cfg.target_modules},
                     {"merged_modules", merged}});
  return Status::Ok();
}

}  // namespace

Status MergeLoraAdapters(Checkpoint& ck, const std::vector<std::string>& adapters, nlohmann::json* record) {
  for (const auto& dir : adapters) KILN_RETURN_IF_ERROR(MergeOne(ck, dir, record));
  return Status::Ok();
}

}  // namespace kiln
