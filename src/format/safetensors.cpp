#include "format/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

namespace kiln {

using json = nlohmann::json;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Expected<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  auto parsed = Parse(file->data(), file->size(), path);
  if (!parsed.ok()) return parsed.status();
  parsed->file_ = file;
  return parsed;
}

Expected<SafetensorsFile> SafetensorsFile::Parse(const uint8_t* data, size_t size,
                                                 const std::string& path) {
  const std::string where = "safetensors '" + path + "'";
  if (size < 8) return Corrupt(where + ": file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);
  if (header_len > size - 8)
    return Corrupt(where + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  if (header_len > (100ull << 20)) return Corrupt(where + ": header length " + std::to_string(header_len) + " is implausibly large");
  json header;
  try {
    header = json::parse(data + 8, data + 8 + header_len);
  } catch (const std::exception& e) {
    return Corrupt(where + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) return Corrupt(where + ": header is not a JSON object");
  SafetensorsFile out;
  out.path_ = path;
  const uint8_t* body = data + 8 + header_len;
  const size_t body_size = size - 8 - header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) return Corrupt(where + ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) return Corrupt(where + ": __metadata__ value '" + m.key() + "' is not a string");
        out.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const json& t = *it;
    const std::string tw = where + ": tensor '" + name + "'";
    if (!t.is_object()) return Corrupt(tw + " entry is not an object");
    if (!t.contains("dtype") || !t["dtype"].is_string()) return Corrupt(tw + " has no string 'dtype'");
    if (!t.contains("shape") || !t["shape"].is_array()) return Corrupt(tw + " has no 'shape' array");
    if (!t.contains("data_offsets") || !t["data_offsets"].is_array() || t["data_offsets"].size() != 2)
      return Corrupt(tw + " has no 'data_offsets' pair");
    auto dt = ParseSafetensorsDType(t["dtype"].get<std::string>());
    if (!dt.ok()) return dt.status().With(tw);
    TensorInfo info;
    info.name = name;
    info.dtype = *dt;
    uint64_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        return Corrupt(tw + " has a negative or non-integer dimension");
      uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > (1ull << 62) / v) return Corrupt(tw + " shape overflows");
      numel *= v;
      info.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& offs = t["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      return Corrupt(tw + " data_offsets are not non-negative integers");
    uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (begin > end) return Corrupt(tw + " data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
    if (end > body_size)
      return Corrupt(tw + " data_offsets end " + std::to_string(end) + " is past the end of the data (" +
                     std::to_string(body_size) + " bytes): file truncated?");
    if (numel > (1ull << 62) / std::max<uint64_t>(1, DTypeSize(info.dtype))) return Corrupt(tw + " byte size overflows");
    uint64_t expect = DTypeSize(info.dtype) * numel;
    if (end - begin != expect)
      return Corrupt(tw + " holds " + std::to_string(end - begin) + " bytes but dtype " +
                     std::string(SafetensorsDTypeName(info.dtype)) + " shape " + ShapeString(info.shape) +
                     " needs " + std::to_string(expect));
    info.data = body + begin;
    info.nbytes = end - begin;
    out.index_[name] = out.tensors_.size();
    out.tensors_.push_back(std::move(info));
  }
  // Tensors must not overlap.
  std::vector<const TensorInfo*> sorted;
  for (auto& t : out.tensors_)
    if (t.nbytes) sorted.push_back(&t);  // empty tensors may share an offset with a neighbour
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->data < b->data; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i - 1]->nbytes && sorted[i]->data < sorted[i - 1]->data + sorted[i - 1]->nbytes)
      return Corrupt(where + ": tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap");
  return out;
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsWriter::Add(const std::string& name, DType dtype, std::vector<int64_t> shape, Producer producer) {
  entries_.push_back({name, dtype, std::move(shape), std::move(producer)});
}

void SafetensorsWriter::Add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::vector<uint8_t> bytes) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  Add(name, dtype, std::move(shape), [shared](uint8_t* dst) {
    std::memcpy(dst, shared->data(), shared->size());
    return Status::Ok();
  });
}

Status SafetensorsWriter::Write(const std::string& path,
                                const std::function<void(size_t, size_t, const std::string&)>& progress) const {
  // Order: larger element sizes first (stable), so every tensor starts at a multiple of its
  // element size once the data section itself starts 64-byte aligned.
  std::vector<size_t> order(entries_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    size_t sa = std::max<size_t>(1, DTypeSize(entries_[a].dtype)), sb = std::max<size_t>(1, DTypeSize(entries_[b].dtype));
    return sa > sb;
  });
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::vector<size_t> sizes(entries_.size());
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& e = entries_[i];
    int64_t numel = 1;
    for (auto d : e.shape) numel *= d;
    sizes[i] = DTypeBytes(e.dtype, numel);
    std::string st_dtype(SafetensorsDTypeName(e.dtype));
    std::vector<int64_t> shape = e.shape;
    if (e.dtype == DType::kI4) shape = {static_cast<int64_t>(sizes[i])};  // stored as raw bytes
    header[e.name] = {{"dtype", st_dtype}, {"shape", shape}, {"data_offsets", {offset, offset + sizes[i]}}};
    offset += sizes[i];
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 64 != 0) h.push_back(' ');
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return IoError("cannot create '" + path + "': " + std::strerror(errno));
  uint64_t len = h.size();
  bool ok = std::fwrite(&len, 8, 1, f) == 1 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  std::vector<uint8_t> buf;
  size_t done = 0;
  for (size_t i : order) {
    if (!ok) break;
    const auto& e = entries_[i];
    if (progress) progress(done, entries_.size(), e.name);
    buf.assign(sizes[i], 0);
    Status st = e.producer(buf.data());
    if (!st.ok()) {
      std::fclose(f);
      std::remove(path.c_str());
      return st.With("producing tensor '" + e.name + "'");
    }
    ok = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
    ++done;
  }
  if (progress) progress(done, entries_.size(), "");
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(path.c_str());
    return IoError("cannot write '" + path + "' (disk full?)");
  }
  return Status::Ok();
}

}  // namespace kiln
