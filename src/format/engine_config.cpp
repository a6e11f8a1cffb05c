#include "format/engine_config.h"

#include <filesystem>

#include "core/mmap_file.h"

namespace kiln {

using json = nlohmann::json;

json EngineConfig::ToJson() const {
  json j;
  j["kiln_version"] = kiln_version;
  j["format_version"] = format_version;
  j["architecture"] = model.architecture;
  j["model"] = model.ToJson();
  j["dtype"] = std::string(DTypeName(dtype));
  j["quantization"] = quantization;
  j["mapping"] = {{"tp", tp}, {"pp", pp}, {"world_size", world_size}};
  j["kernels"] = kernels;
  j["build"] = build;
  j["tokenizer"] = tokenizer;
  if (dummy_weights) j["dummy_weights"] = {{"seed", dummy_seed}};
  return j;
}

Expected<EngineConfig> EngineConfig::FromJson(const json& j, const std::string& where) {
  if (!j.is_object()) return InvalidArgument(where + ": not a JSON object");
  EngineConfig c;
  try {
    if (!j.contains("kiln_version")) return InvalidArgument(where + ": missing 'kiln_version' (not a kiln engine?)");
    c.kiln_version = j.at("kiln_version").get<std::string>();
    c.format_version = j.value("format_version", 1);
    if (c.format_version > kEngineFormatVersion)
      return Unsupported(where + ": engine format_version " + std::to_string(c.format_version) +
                         " is newer than this kiln supports (" + std::to_string(kEngineFormatVersion) + ")");
    if (!j.contains("model")) return InvalidArgument(where + ": missing 'model'");
    KILN_ASSIGN_OR_RETURN(c.model, ModelConfig::FromJson(j.at("model"), where + ": model"));
    if (!j.contains("dtype") || !j["dtype"].is_string()) return InvalidArgument(where + ": missing string 'dtype'");
    auto dt = ParseDType(j["dtype"].get<std::string>());
    if (!dt.ok()) return dt.status().With(where + ": field 'dtype'");
    c.dtype = *dt;
    if (j.contains("quantization")) c.quantization = j["quantization"];
    if (j.contains("mapping")) {
      const json& m = j["mapping"];
      c.tp = m.value("tp", 1);
      c.pp = m.value("pp", 1);
      c.world_size = m.value("world_size", c.tp * c.pp);
      if (c.tp < 1 || c.pp < 1 || c.world_size != c.tp * c.pp)
        return InvalidArgument(where + ": field 'mapping' is inconsistent: " + m.dump());
    }
    if (j.contains("kernels")) c.kernels = j["kernels"];
    if (j.contains("build")) c.build = j["build"];
    if (j.contains("tokenizer")) c.tokenizer = j["tokenizer"];
    if (j.contains("dummy_weights")) {
      c.dummy_weights = true;
      c.dummy_seed = j["dummy_weights"].value("seed", uint64_t{0});
    }
  } catch (const std::exception& e) {
    return InvalidArgument(where + ": " + e.what());
  }
  return c;
}

Expected<EngineConfig> ReadEngineConfig(const std::string& engine_dir) {
  const std::string path = (std::filesystem::path(engine_dir) / "config.json").string();
  if (!std::filesystem::is_directory(engine_dir))
    return NotFound("engine directory '" + engine_dir + "' does not exist");
  KILN_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    return InvalidArgument("'" + path + "' is not valid JSON: " + e.what());
  }
  return EngineConfig::FromJson(j, "'" + path + "'");
}

Status WriteEngineConfig(const std::string& engine_dir, const EngineConfig& config) {
  return WriteTextFile((std::filesystem::path(engine_dir) / "config.json").string(), config.ToJson().dump(2) + "\n");
}

bool IsEngineDir(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::path(path) / "config.json";
  if (!std::filesystem::is_regular_file(p, ec)) return false;
  auto text = ReadTextFile(p.string());
  if (!text.ok()) return false;
  try {
    return json::parse(*text).contains("kiln_version");
  } catch (...) {
    return false;
  }
}

}  // namespace kiln
