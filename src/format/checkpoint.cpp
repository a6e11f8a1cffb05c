#include "format/checkpoint.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/mmap_file.h"
#include "format/safetensors.h"

namespace kiln {

namespace fs = std::filesystem;
using json = nlohmann::json;

const SourceTensor* Checkpoint::Find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Expected<Checkpoint> OpenHfCheckpoint(const std::string& dir) {
  const fs::path root(dir);
  const fs::path cfg_path = root / "config.json";
  KILN_ASSIGN_OR_RETURN(std::string text, ReadTextFile(cfg_path.string()));
  Checkpoint ck;
  ck.format = "hf";
  ck.source_path = dir;
  try {
    ck.config = json::parse(text);
  } catch (const std::exception& e) {
    return InvalidArgument("'" + cfg_path.string() + "' is not valid JSON: " + e.what());
  }
  if (!ck.config.is_object()) return InvalidArgument("'" + cfg_path.string() + "' is not a JSON object");

  // Which files hold the weights: the index's weight_map, else model.safetensors, else every *.safetensors.
  std::vector<std::string> files;
  const fs::path index = root / "model.safetensors.index.json";
  if (fs::exists(index)) {
    KILN_ASSIGN_OR_RETURN(std::string itext, ReadTextFile(index.string()));
    json ij;
    try {
      ij = json::parse(itext);
    } catch (const std::exception& e) {
      return InvalidArgument("'" + index.string() + "' is not valid JSON: " + e.what());
    }
    if (!ij.contains("weight_map") || !ij["weight_map"].is_object())
      return InvalidArgument("'" + index.string() + "' has no 'weight_map' object");
    std::set<std::string> unique;
    for (auto& [name, file] : ij["weight_map"].items()) {
      if (!file.is_string()) return InvalidArgument("'" + index.string() + "': weight_map['" + name + "'] is not a string");
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        return InvalidArgument("'" + index.string() + "': weight file '" + f + "' is not a plain file name");
      unique.insert(f);
    }
    files.assign(unique.begin(), unique.end());
  } else if (fs::exists(root / "model.safetensors")) {
    files.push_back("model.safetensors");
  } else {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) return NotFound("checkpoint '" + dir + "' has no *.safetensors weight files");
  std::set<std::string> seen;
  for (const auto& f : files) {
    KILN_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open((root / f).string()));
    auto holder = std::make_shared<SafetensorsFile>(std::move(st));
    for (const auto& t : holder->tensors()) {
      if (!seen.insert(t.name).second)
        return Corrupt("checkpoint '" + dir + "': tensor '" + t.name + "' appears in more than one file");
      ck.tensors.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
    }
    ck.owners.push_back(holder);
  }
  return ck;
}

Expected<Checkpoint> OpenCheckpoint(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return NotFound("checkpoint '" + path + "' does not exist");
  if (fs::is_directory(path, ec)) {
    if (!fs::exists(fs::path(path) / "config.json"))
      return NotFound("checkpoint directory '" + path + "' has no config.json (expected a Hugging Face checkpoint)");
    return OpenHfCheckpoint(path);
  }
  char magic[4] = {0, 0, 0, 0};
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (n == 4 && std::memcmp(magic, "GGUF", 4) == 0) return OpenGgufCheckpoint(path);
  } else {
    return IoError("cannot open checkpoint '" + path + "': " + std::strerror(errno));
  }
  return OpenLlama2cCheckpoint(path);
}

}  // namespace kiln
