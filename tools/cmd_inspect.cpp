// kiln inspect: the config and tensor table of an engine or a checkpoint.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "command.h"
#include "core/mmap_file.h"
#include "format/checkpoint.h"
#include "format/engine_config.h"
#include "format/safetensors.h"

namespace kiln::cli {
namespace {

using json = nlohmann::json;

struct Row {
  std::string name, dtype, shape;
  size_t bytes;
};

void Print(const json& config, const std::vector<Row>& rows, bool as_json) {
  if (as_json) {
    json t = json::array();
    for (const auto& r : rows) t.push_back({{"name", r.name}, {"dtype", r.dtype}, {"shape", r.shape}, {"bytes", r.bytes}});
    std::printf("%s\n", json{{"config", config}, {"tensors", t}}.dump(2).c_str());
    return;
  }
  std::printf("%s\n\n", config.dump(2).c_str());
  size_t w = 4, total = 0;
  for (const auto& r : rows) w = std::max(w, r.name.size());
  std::printf("%-*s  %-5s  %-20s  %12s\n", static_cast<int>(w), "name", "dtype", "shape", "bytes");
  for (const auto& r : rows) {
    std::printf("%-*s  %-5s  %-20s  %12zu\n", static_cast<int>(w), r.name.c_str(), r.dtype.c_str(), r.shape.c_str(),
                r.bytes);
    total += r.bytes;
  }
  std::printf("%zu tensors, %.3f MB\n", rows.size(), total / 1e6);
}

void Inspect(const std::string& path, bool as_json) {
  std::vector<Row> rows;
  if (IsEngineDir(path)) {
    auto cfg = ValueOrFail(ReadEngineConfig(path));
    const auto file = std::filesystem::path(path) / "rank0.safetensors";
    if (std::filesystem::exists(file)) {
      auto st = ValueOrFail(SafetensorsFile::Open(file.string()));
      for (const auto& t : st.tensors())
        rows.push_back({t.name, std::string(DTypeName(t.dtype)), ShapeString(t.shape), t.nbytes});
    }
    Print(cfg.ToJson(), rows, as_json);
    return;
  }
  auto ck = ValueOrFail(OpenCheckpoint(path));
  for (const auto& t : ck.tensors) rows.push_back({t.name, std::string(DTypeName(t.dtype)), ShapeString(t.shape), t.nbytes});
  Print(json{{"format", ck.format}, {"config", ck.config}}, rows, as_json);
}

void SetupInspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Print the config and tensor table of an engine or checkpoint");
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("path", *path, "engine directory or checkpoint (HF dir, .bin, .gguf)")->required();
  cmd->add_flag("--json", *as_json, "machine-readable output");
  cmd->callback([path, as_json]() { Inspect(*path, *as_json); });
}

KILN_REGISTER_COMMAND(SetupInspect);

}  // namespace
}  // namespace kiln::cli
