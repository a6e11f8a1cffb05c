#include "format/gguf.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace kiln {

using json = nlohmann::json;

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;             // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;

struct BlockInfo {
  uint32_t type;
  const char* name;
  uint64_t elems;
  uint64_t bytes;
};

// ggml's type traits (block size in elements, bytes per block), for size validation only.
constexpr BlockInfo kBlockInfo[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const BlockInfo* FindBlockInfo(uint32_t type) {
  for (const auto& b : kBlockInfo)
    if (b.type == type) return &b;
  return nullptr;
}

// Replaces invalid UTF-8 sequences by U+FFFD so nlohmann::json can dump the string; valid
// input (the normal case) is returned byte for byte.
std::string SanitizeUtf8(const char* s, size_t n) {
  size_t ascii = 0;
  while (ascii < n && static_cast<unsigned char>(s[ascii]) < 0x80) ++ascii;
  if (ascii == n) return std::string(s, n);
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
      ok = false;
    if (ok) {
      out.append(s + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

// f32 metadata values become the double nearest their shortest decimal form (1e-5f -> 1e-05).
double F32ToJsonDouble(float f) {
  if (!std::isfinite(f)) return static_cast<double>(f);
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf) - 1, f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

std::string TypeName(uint32_t t) {
  static const char* kNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                 "bool", "string", "array", "u64", "i64", "f64"};
  return t < 13 ? kNames[t] : "type " + std::to_string(t);
}

// Bounds-checked little-endian cursor over the file image. Errors name the byte offset.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, std::string where)
      : d_(data), n_(size), where_(std::move(where)) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }
  Status Fail(const std::string& what) const {
    return Corrupt(where_ + ": at byte " + std::to_string(pos_) + ": " + what);
  }
  // `field` (+ `suffix`) names what is read; the message is only built on failure.
  template <typename T>
  Status Read(T* v, const std::string& field, const char* suffix = "") {
    if (remaining() < sizeof(T))
      return Fail(field + suffix + ": needs " + std::to_string(sizeof(T)) + " bytes but the file ends (" +
                  std::to_string(n_) + " bytes): truncated?");
    std::memcpy(v, d_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status ReadString(std::string* s, const std::string& field, bool sanitize) {
    uint64_t len = 0;
    KILN_RETURN_IF_ERROR(Read(&len, field, " length"));
    if (len > remaining())
      return Fail(field + ": string length " + std::to_string(len) + " runs past the end of the file (" +
                  std::to_string(remaining()) + " bytes left)");
    const char* p = reinterpret_cast<const char*>(d_ + pos_);
    *s = sanitize ? SanitizeUtf8(p, len) : std::string(p, len);
    pos_ += len;
    return Status::Ok();
  }
  const std::string& where() const { return where_; }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  std::string where_;
};

// Smallest encoded size of one value of type t (bounds counts before anything is allocated).
uint64_t MinValueBytes(uint32_t t) {
  switch (static_cast<GgufValueType>(t)) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16:
      return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32:
      return 4;
    case GgufValueType::kString:
      return 8;
    case GgufValueType::kArray:
      return 12;
    default:
      return 8;
  }
}

template <typename T>
Status ReadScalar(Cursor& c, json* out, const std::string& field) {
  T v{};
  KILN_RETURN_IF_ERROR(c.Read(&v, field));
  if constexpr (std::is_same_v<T, float>) {
    *out = F32ToJsonDouble(v);
  } else {
    *out = v;
  }
  return Status::Ok();
}

Status ReadValue(Cursor& c, uint32_t type, json* out, const std::string& field, int depth,
                 uint32_t* array_elem_type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::kU8:
      return ReadScalar<uint8_t>(c, out, field);
    case GgufValueType::kI8:
      return ReadScalar<int8_t>(c, out, field);
    case GgufValueType::kU16:
      return ReadScalar<uint16_t>(c, out, field);
    case GgufValueType::kI16:
      return ReadScalar<int16_t>(c, out, field);
    case GgufValueType::kU32:
      return ReadScalar<uint32_t>(c, out, field);
    case GgufValueType::kI32:
      return ReadScalar<int32_t>(c, out, field);
    case GgufValueType::kF32:
      return ReadScalar<float>(c, out, field);
    case GgufValueType::kU64:
      return ReadScalar<uint64_t>(c, out, field);
    case GgufValueType::kI64:
      return ReadScalar<int64_t>(c, out, field);
    case GgufValueType::kF64:
      return ReadScalar<double>(c, out, field);
    case GgufValueType::kBool: {
      uint8_t b = 0;
      KILN_RETURN_IF_ERROR(c.Read(&b, field));
      if (b > 1) return c.Fail(field + ": bool value " + std::to_string(b) + " is neither 0 nor 1");
      *out = b != 0;
      return Status::Ok();
    }
    case GgufValueType::kString: {
      std::string s;
      KILN_RETURN_IF_ERROR(c.ReadString(&s, field, /*sanitize=*/true));
      *out = std::move(s);
      return Status::Ok();
    }
    case GgufValueType::kArray: {
      if (depth >= kMaxArrayDepth)
        return c.Fail(field + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
      uint32_t et = 0;
      uint64_t count = 0;
      KILN_RETURN_IF_ERROR(c.Read(&et, field, " array element type"));
      KILN_RETURN_IF_ERROR(c.Read(&count, field, " array length"));
      if (et > 12) return c.Fail(field + ": unknown array element type " + std::to_string(et));
      if (count > c.remaining() / MinValueBytes(et))
        return c.Fail(field + ": array of " + std::to_string(count) + " " + TypeName(et) +
                      " values cannot fit in the " + std::to_string(c.remaining()) + " bytes left");
      if (array_elem_type) *array_elem_type = et;
      json arr = json::array();
      arr.get_ref<json::array_t&>().reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        json v;
        Status st = ReadValue(c, et, &v, field, depth + 1, nullptr);
        if (!st.ok()) return Status(st.code(), st.message() + " (in element " + std::to_string(i) + ")");
        arr.push_back(std::move(v));
      }
      *out = std::move(arr);
      return Status::Ok();
    }
  }
  return c.Fail(field + ": unknown value type " + std::to_string(type));
}

}  // namespace

std::string GgmlTypeName(uint32_t type) {
  const BlockInfo* b = FindBlockInfo(type);
  return b ? b->name : "type " + std::to_string(type);
}

bool GgmlBlockInfo(uint32_t type, uint64_t* block_elems, uint64_t* block_bytes) {
  const BlockInfo* b = FindBlockInfo(type);
  if (!b) return false;
  *block_elems = b->elems;
  *block_bytes = b->bytes;
  return true;
}

const GgufTensorInfo* GgufFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Expected<GgufFile> GgufFile::Open(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  auto parsed = ParseGguf(file->data(), file->size(), path);
  if (!parsed.ok()) return parsed.status();
  parsed->file_ = file;
  return parsed;
}

Expected<GgufFile> ParseGguf(const uint8_t* data, size_t size, const std::string& path) {
  Cursor c(data, size, "gguf '" + path + "'");
  const std::string& where = c.where();
  uint32_t magic = 0, version = 0;
  KILN_RETURN_IF_ERROR(c.Read(&magic, "magic"));
  if (magic != kGgufMagic) return c.Fail("bad magic (not a GGUF file)");
  KILN_RETURN_IF_ERROR(c.Read(&version, "version"));
  if (version != 2 && version != 3)
    return Unsupported(where + ": GGUF version " + std::to_string(version) +
                       " (kiln reads versions 2 and 3)");
  uint64_t n_tensors = 0, n_kv = 0;
  KILN_RETURN_IF_ERROR(c.Read(&n_tensors, "tensor_count"));
  KILN_RETURN_IF_ERROR(c.Read(&n_kv, "metadata_kv_count"));
  // A tensor info takes at least 24 bytes, a key/value pair at least 13.
  if (n_tensors > c.remaining() / 24)
    return c.Fail("tensor_count " + std::to_string(n_tensors) + " cannot fit in a " + std::to_string(size) +
                  "-byte file");
  if (n_kv > c.remaining() / 13)
    return c.Fail("metadata_kv_count " + std::to_string(n_kv) + " cannot fit in a " + std::to_string(size) +
                  "-byte file");

  GgufFile out;
  out.path_ = path;
  out.version_ = version;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    KILN_RETURN_IF_ERROR(c.ReadString(&key, "metadata key #" + std::to_string(i), /*sanitize=*/true));
    if (out.metadata_.contains(key)) return c.Fail("duplicate metadata key '" + key + "'");
    uint32_t type = 0;
    KILN_RETURN_IF_ERROR(c.Read(&type, "type of metadata key '" + key + "'"));
    if (type > 12) return c.Fail("metadata key '" + key + "' has unknown value type " + std::to_string(type));
    json v;
    uint32_t et = 0;
    KILN_RETURN_IF_ERROR(ReadValue(c, type, &v, "metadata key '" + key + "'", 0, &et));
    out.types_[key] = static_cast<GgufValueType>(type);
    if (type == static_cast<uint32_t>(GgufValueType::kArray))
      out.array_types_[key] = static_cast<GgufValueType>(et);
    out.metadata_[key] = std::move(v);
  }

  if (out.metadata_.contains("general.alignment")) {
    const json& a = out.metadata_["general.alignment"];
    if (!a.is_number_integer()) return Corrupt(where + ": general.alignment is not an integer");
    const int64_t av = a.is_number_unsigned()
                           ? static_cast<int64_t>(std::min<uint64_t>(a.get<uint64_t>(), 1ull << 62))
                           : a.get<int64_t>();
    if (av <= 0 || (av & (av - 1)) != 0 || av > (1 << 30))
      return Corrupt(where + ": general.alignment " + a.dump() + " is not a power of two");
    out.alignment_ = static_cast<uint64_t>(av);
  }

  out.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    KILN_RETURN_IF_ERROR(c.ReadString(&t.name, "name of tensor #" + std::to_string(i), /*sanitize=*/true));
    const std::string tf = "tensor '" + t.name + "'";
    if (out.index_.count(t.name)) return c.Fail("duplicate tensor name '" + t.name + "'");
    uint32_t n_dims = 0;
    KILN_RETURN_IF_ERROR(c.Read(&n_dims, tf + " n_dims"));
    if (n_dims > kMaxDims)
      return c.Fail(tf + " has " + std::to_string(n_dims) + " dims (GGUF allows at most " +
                    std::to_string(kMaxDims) + ")");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      KILN_RETURN_IF_ERROR(c.Read(&ne, tf + " ne[" + std::to_string(d) + "]"));
      if (ne > (1ull << 62))
        return c.Fail(tf + " ne[" + std::to_string(d) + "] = " + std::to_string(ne) + " is absurd");
      if (ne != 0 && numel > (1ull << 62) / ne) return c.Fail(tf + " element count overflows");
      numel *= ne;
      t.dims.push_back(ne);
    }
    KILN_RETURN_IF_ERROR(c.Read(&t.type, tf + " type"));
    KILN_RETURN_IF_ERROR(c.Read(&t.offset, tf + " offset"));
    uint64_t be = 0, bb = 0;
    if (!GgmlBlockInfo(t.type, &be, &bb))
      return Unsupported(where + ": " + tf + " has unknown ggml type " + std::to_string(t.type));
    const uint64_t ne0 = t.dims.empty() ? 1 : t.dims[0];
    if (ne0 % be != 0)
      return Corrupt(where + ": " + tf + " ne[0] = " + std::to_string(ne0) + " is not a multiple of the " +
                     GgmlTypeName(t.type) + " block size " + std::to_string(be));
    if (numel / be > (1ull << 62) / bb) return Corrupt(where + ": " + tf + " byte size overflows");
    t.nbytes = numel / be * bb;
    if (t.offset % out.alignment_ != 0)
      return Corrupt(where + ": " + tf + " offset " + std::to_string(t.offset) +
                     " is not a multiple of the alignment " + std::to_string(out.alignment_));
    out.index_[t.name] = out.tensors_.size();
    out.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  // Vocab-only files (no tensors) may end without that padding.
  const uint64_t pad = (out.alignment_ - c.pos() % out.alignment_) % out.alignment_;
  const uint64_t data_start = c.pos() + pad;
  if (data_start > size) {
    if (!out.tensors_.empty())
      return Corrupt(where + ": the data section would start at byte " + std::to_string(data_start) +
                     ", past the end of the file (" + std::to_string(size) + " bytes): truncated?");
    out.data_ = data + size;
    out.data_size_ = 0;
    return out;
  }
  out.data_ = data + data_start;
  out.data_size_ = size - data_start;
  for (auto& t : out.tensors_) {
    if (t.offset > out.data_size_ || t.nbytes > out.data_size_ - t.offset)
      return Corrupt(where + ": tensor '" + t.name + "' (" + GgmlTypeName(t.type) + ", " +
                     std::to_string(t.nbytes) + " bytes at data offset " + std::to_string(t.offset) +
                     ") runs past the end of the file (data section is " + std::to_string(out.data_size_) +
                     " bytes): truncated?");
    t.data = out.data_ + t.offset;
  }
  std::vector<const GgufTensorInfo*> sorted;
  for (const auto& t : out.tensors_)
    if (t.nbytes) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->offset < sorted[i - 1]->offset + sorted[i - 1]->nbytes)
      return Corrupt(where + ": tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap");
  return out;
}

Expected<json> ReadGgufMetadata(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(auto f, GgufFile::Open(path));
  return f.metadata();
}

}  // namespace kiln
