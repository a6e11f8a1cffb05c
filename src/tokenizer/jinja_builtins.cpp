// Python-style printing and the filters, tests and methods that chat templates call.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tokenizer/jinja.h"
#include "tokenizer/text_util.h"

namespace kiln::jinja {
namespace {

Status TypeErr(const std::string& m) { return InvalidArgument("chat template: " + m); }

bool IsNs(const Value& v) { return v.is_object() && v.contains(kNamespaceKey); }

std::string TypeName(const Value& v) {
  if (IsUndefined(v)) return "undefined";
  if (v.is_null()) return "NoneType";
  if (v.is_boolean()) return "bool";
  if (v.is_number_integer()) return "int";
  if (v.is_number_float()) return "float";
  if (v.is_string()) return "str";
  if (v.is_array()) return "list";
  return "dict";
}

std::string FloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = Value(d).dump();
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

bool IsPyspace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string Strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto in_set = [&](char c) {
    if (chars.is_string()) return chars.get_ref<const std::string&>().find(c) != std::string::npos;
    return IsPyspace(c);
  };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && in_set(s[b])) ++b;
  if (right)
    while (e > b && in_set(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string ReplaceStr(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string CaseMap(const std::string& s, bool upper) {
  std::string o = s;
  for (char& c : o)
    if (upper ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z')) c = static_cast<char>(c ^ 0x20);
  return o;
}

Value Items(const Value& v) {
  Value out = Value::array();
  if (v.is_object())
    for (auto it = v.begin(); it != v.end(); ++it)
      if (it.key() != kNamespaceKey) out.push_back(Value::array({it.key(), it.value()}));
  return out;
}

Value ToList(const Value& v) {
  if (v.is_array()) return v;
  Value out = Value::array();
  if (v.is_string())
    for (auto& c : Utf8Chars(v.get<std::string>())) out.push_back(c);
  else if (v.is_object())
    for (auto it = v.begin(); it != v.end(); ++it)
      if (it.key() != kNamespaceKey) out.push_back(it.key());
  return out;
}

const Value* Arg(const std::vector<Value>& args, const KwArgs& kw, size_t i, const char* name) {
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return i < args.size() ? &args[i] : nullptr;
}

Value GetAttr(const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_object() && cur.contains(part))
      cur = Value(cur[part]);
    else if (cur.is_array() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) &&
             std::stoul(part) < cur.size())
      cur = Value(cur[std::stoul(part)]);
    else
      return Undefined();
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return cur;
}

int Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    double x = a.get<double>(), y = b.get<double>();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string())
    return a.get<std::string>().compare(b.get<std::string>()) < 0 ? -1 : a == b ? 0 : 1;
  return 0;
}

void JsonString(const std::string& s, std::string* out) {
  *out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          *out += buf;
        } else {
          *out += static_cast<char>(c);
        }
    }
  }
  *out += '"';
}

void JsonDump(const Value& v, int indent, int level, std::string* out) {
  auto nl = [&](int lvl) {
    *out += '\n';
    out->append(static_cast<size_t>(indent * lvl), ' ');
  };
  if (IsUndefined(v) || v.is_null()) {
    *out += "null";
  } else if (v.is_boolean()) {
    *out += v.get<bool>() ? "true" : "false";
  } else if (v.is_number_integer()) {
    *out += v.dump();
  } else if (v.is_number_float()) {
    double d = v.get<double>();
    *out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : FloatRepr(d);
  } else if (v.is_string()) {
    JsonString(v.get<std::string>(), out);
  } else if (v.is_array()) {
    if (v.empty()) {
      *out += "[]";
      return;
    }
    *out += '[';
    bool first = true;
    for (const Value& x : v) {
      if (!first) *out += indent >= 0 ? "," : ", ";
      first = false;
      if (indent >= 0) nl(level + 1);
      JsonDump(x, indent, level + 1, out);
    }
    if (indent >= 0) nl(level);
    *out += ']';
  } else {
    bool first = true;
    *out += '{';
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it.key() == kNamespaceKey) continue;
      if (!first) *out += indent >= 0 ? "," : ", ";
      first = false;
      if (indent >= 0) nl(level + 1);
      JsonString(it.key(), out);
      *out += ": ";
      JsonDump(it.value(), indent, level + 1, out);
    }
    if (first) {
      *out += '}';
      return;
    }
    if (indent >= 0) nl(level);
    *out += '}';
  }
}

}  // namespace

std::vector<std::string> Utf8Chars(const std::string& s) {
  std::vector<std::string> out;
  for (auto sv : tok::SplitUtf8Chars(s)) out.emplace_back(sv);
  return out;
}

bool Truthy(const Value& v) {
  if (IsUndefined(v) || v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0.0;
  if (v.is_string()) return !v.get_ref<const Value::string_t&>().empty();
  if (IsNs(v)) return true;
  return !v.empty();
}

std::string PyRepr(const Value& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
    std::string out(1, q);
    for (unsigned char c : s) {
      if (c == '\\')
        out += "\\\\";
      else if (c == static_cast<unsigned char>(q))
        out += std::string("\\") + q;
      else if (c == '\n')
        out += "\\n";
      else if (c == '\r')
        out += "\\r";
      else if (c == '\t')
        out += "\\t";
      else if (c < 0x20 || c == 0x7F) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      } else
        out += static_cast<char>(c);
    }
    return out + q;
  }
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + PyRepr(v[i]);
    return out + "]";
  }
  if (v.is_object()) {
    if (IsNs(v)) return "<Namespace>";
    std::string out = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += (first ? "" : ", ") + PyRepr(Value(it.key())) + ": " + PyRepr(it.value());
      first = false;
    }
    return out + "}";
  }
  return PyStr(v);
}

std::string PyStr(const Value& v) {
  if (IsUndefined(v)) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_integer()) return v.dump();
  if (v.is_number_float()) return FloatRepr(v.get<double>());
  return PyRepr(v);
}

std::string PyJsonDumps(const Value& v, int indent) {
  std::string out;
  JsonDump(v, indent, 0, &out);
  return out;
}

bool PyEqual(const Value& a, const Value& b) {
  if (IsUndefined(a) || IsUndefined(b)) return IsUndefined(a) && IsUndefined(b);
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  if (a.is_boolean() != b.is_boolean()) return false;
  return a == b;
}

Expected<bool> PyContains(const Value& c, const Value& item) {
  if (c.is_string()) {
    if (!item.is_string()) return TypeErr("'in <string>' requires a string, not " + TypeName(item));
    return c.get_ref<const std::string&>().find(item.get_ref<const std::string&>()) != std::string::npos;
  }
  if (c.is_array()) return std::any_of(c.begin(), c.end(), [&](const Value& x) { return PyEqual(x, item); });
  if (c.is_object()) return item.is_string() && c.contains(item.get<std::string>());
  if (IsUndefined(c) || c.is_null()) return false;
  return TypeErr("argument of type '" + TypeName(c) + "' is not iterable");
}

Expected<bool> ApplyTest(const std::string& n, const Value& v, const std::vector<Value>& args) {
  auto arg = [&](size_t i) { return i < args.size() ? args[i] : Undefined(); };
  if (n == "defined") return !IsUndefined(v);
  if (n == "undefined") return IsUndefined(v);
  if (n == "none") return v.is_null();
  if (n == "true") return v.is_boolean() && v.get<bool>();
  if (n == "false") return v.is_boolean() && !v.get<bool>();
  if (n == "boolean") return v.is_boolean();
  if (n == "string") return v.is_string();
  if (n == "number") return v.is_number();
  if (n == "integer") return v.is_number_integer();
  if (n == "float") return v.is_number_float();
  if (n == "mapping") return v.is_object();
  if (n == "iterable") return v.is_array() || v.is_object() || v.is_string();
  if (n == "sequence") return v.is_array() || v.is_string() || v.is_object();
  if (n == "callable") return false;
  if (n == "equalto" || n == "eq" || n == "==" || n == "sameas") return PyEqual(v, arg(0));
  if (n == "ne" || n == "!=") return !PyEqual(v, arg(0));
  if (n == "lt" || n == "lessthan") return Compare(v, arg(0)) < 0;
  if (n == "le") return Compare(v, arg(0)) <= 0;
  if (n == "gt" || n == "greaterthan") return Compare(v, arg(0)) > 0;
  if (n == "ge") return Compare(v, arg(0)) >= 0;
  if (n == "in") return PyContains(arg(0), v);
  if (n == "odd" || n == "even" || n == "divisibleby") {
    if (!v.is_number_integer()) return TypeErr("test '" + n + "' needs an integer");
    int64_t x = v.get<int64_t>();
    if (n == "odd") return x % 2 != 0;
    if (n == "even") return x % 2 == 0;
    int64_t d = arg(0).is_number_integer() ? arg(0).get<int64_t>() : 0;
    if (d == 0) return TypeErr("divisibleby needs a non-zero integer");
    return x % d == 0;
  }
  if (n == "lower") return v.is_string() && CaseMap(v.get<std::string>(), false) == v.get<std::string>();
  if (n == "upper") return v.is_string() && CaseMap(v.get<std::string>(), true) == v.get<std::string>();
  return TypeErr("unknown test '" + n + "'");
}

Expected<Value> ApplyFilter(const std::string& n, const Value& v, const std::vector<Value>& args,
                            const KwArgs& kw) {
  const Value* a0 = args.empty() ? nullptr : &args[0];
  if (n == "trim" || n == "strip") {
    if (!v.is_string()) return Value(PyStr(v));
    return Value(Strip(v.get<std::string>(), a0 ? *a0 : Value(), true, true));
  }
  if (n == "length" || n == "count") {
    if (v.is_string()) return Value(static_cast<int64_t>(Utf8Chars(v.get<std::string>()).size()));
    if (v.is_array() || v.is_object()) return Value(static_cast<int64_t>(v.size() - (IsNs(v) ? 1 : 0)));
    if (IsUndefined(v)) return Value(0);
    return TypeErr("object of type '" + TypeName(v) + "' has no length");
  }
  if (n == "tojson") {
    const Value* ind = Arg(args, kw, 0, "indent");
    int indent = ind && ind->is_number_integer() ? ind->get<int>() : -1;
    return Value(PyJsonDumps(v, indent));
  }
  if (n == "string") return Value(PyStr(v));
  if (n == "safe" || (n == "list" && v.is_array())) return v;
  if (n == "list") return ToList(v);
  if (n == "default" || n == "d") {
    const Value* b = Arg(args, kw, 1, "boolean");
    bool use_default = IsUndefined(v) || (b && Truthy(*b) && !Truthy(v));
    return use_default ? (a0 ? *a0 : Value("")) : v;
  }
  if (n == "upper" || n == "lower") return Value(CaseMap(PyStr(v), n == "upper"));
  if (n == "capitalize" || n == "title") {
    std::string s = CaseMap(PyStr(v), false);
    bool start = true;
    for (char& c : s) {
      if (start && c >= 'a' && c <= 'z') c = static_cast<char>(c ^ 0x20);
      start = n == "title" ? !std::isalnum(static_cast<unsigned char>(c)) : false;
    }
    return Value(s);
  }
  if (n == "first" || n == "last") {
    Value l = ToList(v);
    if (l.empty()) return Undefined();
    return n == "first" ? Value(l.front()) : Value(l.back());
  }
  if (n == "join") {
    const Value* sep = Arg(args, kw, 0, "d");
    const Value* attr = Arg(args, kw, 1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& x : ToList(v)) {
      if (!first) out += sep ? PyStr(*sep) : "";
      first = false;
      out += PyStr(attr ? GetAttr(x, PyStr(*attr)) : x);
    }
    return Value(out);
  }
  if (n == "replace") {
    if (args.size() < 2) return TypeErr("replace needs (old, new)");
    int64_t count = args.size() > 2 && args[2].is_number_integer() ? args[2].get<int64_t>() : -1;
    return Value(ReplaceStr(PyStr(v), PyStr(args[0]), PyStr(args[1]), count));
  }
  if (n == "items") return Items(v);
  if (n == "dictsort") {
    Value it = Items(v);
    std::vector<Value> xs(it.begin(), it.end());
    std::stable_sort(xs.begin(), xs.end(),
                     [](const Value& a, const Value& b) { return Compare(a[0], b[0]) < 0; });
    return Value(xs);
  }
  if (n == "selectattr" || n == "rejectattr" || n == "select" || n == "reject") {
    const bool by_attr = n == "selectattr" || n == "rejectattr";
    const bool keep = n == "selectattr" || n == "select";
    size_t ti = by_attr ? 1 : 0;
    std::string test = args.size() > ti ? PyStr(args[ti]) : "";
    std::vector<Value> targs(args.begin() + std::min(args.size(), ti + 1), args.end());
    Value out = Value::array();
    for (const Value& x : ToList(v)) {
      Value subject = by_attr ? GetAttr(x, a0 ? PyStr(*a0) : "") : x;
      bool ok;
      if (test.empty()) {
        ok = Truthy(subject);
      } else {
        KILN_ASSIGN_OR_RETURN(ok, ApplyTest(test, subject, targs));
      }
      if (ok == keep) out.push_back(x);
    }
    return out;
  }
  if (n == "map") {
    Value out = Value::array();
    const Value* attr = Arg({}, kw, 0, "attribute");
    const Value* dflt = Arg({}, kw, 0, "default");
    for (const Value& x : ToList(v)) {
      if (attr) {
        Value y = GetAttr(x, PyStr(*attr));
        out.push_back(IsUndefined(y) && dflt ? *dflt : y);
      } else if (a0) {
        std::vector<Value> rest(args.begin() + 1, args.end());
        KILN_ASSIGN_OR_RETURN(Value y, ApplyFilter(PyStr(*a0), x, rest, {}));
        out.push_back(std::move(y));
      } else {
        return TypeErr("map needs a filter name or attribute=");
      }
    }
    return out;
  }
  if (n == "unique") {
    Value out = Value::array();
    for (const Value& x : ToList(v))
      if (!std::any_of(out.begin(), out.end(), [&](const Value& y) { return PyEqual(x, y); }))
        out.push_back(x);
    return out;
  }
  if (n == "reverse") {
    if (v.is_string()) {
      auto cs = Utf8Chars(v.get<std::string>());
      std::string s;
      for (auto it = cs.rbegin(); it != cs.rend(); ++it) s += *it;
      return Value(s);
    }
    Value l = ToList(v);
    std::reverse(l.begin(), l.end());
    return l;
  }
  if (n == "sort") {
    Value l = ToList(v);
    std::vector<Value> xs(l.begin(), l.end());
    const Value* attr = Arg({}, kw, 0, "attribute");
    const Value* rev = Arg({}, kw, 0, "reverse");
    std::stable_sort(xs.begin(), xs.end(), [&](const Value& a, const Value& b) {
      return attr ? Compare(GetAttr(a, PyStr(*attr)), GetAttr(b, PyStr(*attr))) < 0 : Compare(a, b) < 0;
    });
    if (rev && Truthy(*rev)) std::reverse(xs.begin(), xs.end());
    return Value(xs);
  }
  if (n == "sum" || n == "min" || n == "max") {
    Value l = ToList(v);
    if (n == "sum") {
      double s = 0;
      bool all_int = true;
      for (const Value& x : l) {
        if (!x.is_number()) return TypeErr("sum of non-numbers");
        all_int = all_int && x.is_number_integer();
        s += x.get<double>();
      }
      return all_int ? Value(static_cast<int64_t>(s)) : Value(s);
    }
    if (l.empty()) return Undefined();
    Value best = l[0];
    for (const Value& x : l)
      if ((n == "min" && Compare(x, best) < 0) || (n == "max" && Compare(x, best) > 0)) best = x;
    return best;
  }
  if (n == "abs") {
    if (v.is_number_integer()) return Value(std::llabs(v.get<int64_t>()));
    if (v.is_number()) return Value(std::fabs(v.get<double>()));
    return TypeErr("abs of " + TypeName(v));
  }
  if (n == "int" || n == "float") {
    double d = 0;
    if (v.is_number())
      d = v.get<double>();
    else if (v.is_string()) {
      try {
        d = std::stod(v.get<std::string>());
      } catch (...) {
        d = 0;
      }
    } else if (v.is_boolean())
      d = v.get<bool>();
    if (n == "int") return Value(static_cast<int64_t>(d));
    return Value(d);
  }
  if (n == "round") {
    int prec = a0 && a0->is_number_integer() ? a0->get<int>() : 0;
    double p = std::pow(10.0, prec);
    return Value(std::round(v.get<double>() * p) / p);
  }
  if (n == "indent") {
    const Value* w = Arg(args, kw, 0, "width");
    const Value* first = Arg(args, kw, 1, "first");
    std::string pad = w && w->is_string()
                          ? w->get<std::string>()
                          : std::string(w && w->is_number_integer() ? w->get<size_t>() : 4, ' ');
    std::string s = PyStr(v), out;
    bool line_start = first && Truthy(*first);
    for (char c : s) {
      if (line_start && c != '\n') out += pad;
      line_start = false;
      out += c;
      if (c == '\n') line_start = true;
    }
    return Value(out);
  }
  if (n == "escape" || n == "e") {
    std::string out;
    for (char c : PyStr(v)) {
      if (c == '&')
        out += "&amp;";
      else if (c == '<')
        out += "&lt;";
      else if (c == '>')
        out += "&gt;";
      else if (c == '"')
        out += "&#34;";
      else if (c == '\'')
        out += "&#39;";
      else
        out += c;
    }
    return Value(out);
  }
  if (n == "attr") return a0 ? GetAttr(v, PyStr(*a0)) : Undefined();
  return TypeErr("unknown filter '" + n + "'");
}

Expected<Value> CallMethod(const Value& obj, const std::string& n, const std::vector<Value>& args,
                           const KwArgs& kw) {
  const Value* a0 = args.empty() ? nullptr : &args[0];
  if (obj.is_string()) {
    const std::string& s = obj.get_ref<const std::string&>();
    if (n == "strip") return Value(Strip(s, a0 ? *a0 : Value(), true, true));
    if (n == "lstrip") return Value(Strip(s, a0 ? *a0 : Value(), true, false));
    if (n == "rstrip") return Value(Strip(s, a0 ? *a0 : Value(), false, true));
    if (n == "upper" || n == "lower") return Value(CaseMap(s, n == "upper"));
    if (n == "title" || n == "capitalize") return ApplyFilter(n, obj, {}, {});
    if (n == "startswith" || n == "endswith") {
      if (!a0) return TypeErr(n + " needs an argument");
      std::vector<Value> cands =
          a0->is_array() ? std::vector<Value>(a0->begin(), a0->end()) : std::vector<Value>{*a0};
      for (const Value& c : cands) {
        std::string p = PyStr(c);
        bool hit = n == "startswith"
                       ? s.compare(0, p.size(), p) == 0
                       : s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
        if (hit) return Value(true);
      }
      return Value(false);
    }
    if (n == "replace") return ApplyFilter("replace", obj, args, kw);
    if (n == "split") {
      Value out = Value::array();
      int64_t maxsplit = args.size() > 1 && args[1].is_number_integer() ? args[1].get<int64_t>() : -1;
      if (!a0 || a0->is_null()) {
        size_t i = 0;
        while (i < s.size()) {
          while (i < s.size() && IsPyspace(s[i])) ++i;
          if (i >= s.size()) break;
          size_t j = i;
          if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit)
            j = s.size();
          else
            while (j < s.size() && !IsPyspace(s[j])) ++j;
          out.push_back(s.substr(i, j - i));
          i = j;
        }
        return out;
      }
      std::string sep = PyStr(*a0);
      if (sep.empty()) return TypeErr("split: empty separator");
      size_t pos = 0;
      while (true) {
        size_t hit = s.find(sep, pos);
        if (hit == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit))
          break;
        out.push_back(s.substr(pos, hit - pos));
        pos = hit + sep.size();
      }
      out.push_back(s.substr(pos));
      return out;
    }
    if (n == "find")
      return Value(
          a0 ? static_cast<int64_t>(s.find(PyStr(*a0)) == std::string::npos ? -1 : s.find(PyStr(*a0))) : -1);
    if (n == "count") {
      std::string p = a0 ? PyStr(*a0) : "";
      int64_t c = 0;
      if (!p.empty())
        for (size_t pos = s.find(p); pos != std::string::npos; pos = s.find(p, pos + p.size())) ++c;
      return Value(c);
    }
    if (n == "join") {
      std::string out;
      bool first = true;
      for (const Value& x : ToList(a0 ? *a0 : Value::array())) {
        if (!first) out += s;
        first = false;
        out += PyStr(x);
      }
      return Value(out);
    }
  }
  if (obj.is_object()) {
    if (n == "items") return Items(obj);
    if (n == "keys") return ToList(obj);
    if (n == "values") {
      Value out = Value::array();
      for (auto it = obj.begin(); it != obj.end(); ++it)
        if (it.key() != kNamespaceKey) out.push_back(it.value());
      return out;
    }
    if (n == "get") {
      if (!a0) return TypeErr("get needs a key");
      if (a0->is_string() && obj.contains(a0->get<std::string>())) return Value(obj[a0->get<std::string>()]);
      return args.size() > 1 ? args[1] : Value(nullptr);
    }
  }
  return TypeErr("'" + TypeName(obj) + "' object has no method '" + n + "'");
}

}  // namespace kiln::jinja
