// Renders a parsed template: scopes (loop bodies get their own, like Jinja), namespace()
// attribute assignment, loop controls, and the render limits.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <ctime>

#include "tokenizer/jinja.h"

namespace kiln::jinja {
namespace {

class Evaluator {
 public:
  Evaluator(const Value& ctx, const RenderOptions& opt) : opt_(opt) {
    scopes_.push_back(ctx.is_object() ? ctx : Value::object());
    scopes_.push_back(Value::object());
  }

  Status Exec(const Body& body) {
    for (const Stmt& s : body) {
      KILN_RETURN_IF_ERROR(ExecOne(s));
      if (break_ || continue_) return {};
    }
    return {};
  }
  std::string& out() { return out_; }

 private:
  Status Err(int line, const std::string& m) const {
    return InvalidArgument("chat template line " + std::to_string(line) + ": " + m);
  }

  Status Emit(const std::string& s, int line) {
    if (out_.size() + s.size() > opt_.limits.max_output_bytes)
      return Err(line, "output exceeds " + std::to_string(opt_.limits.max_output_bytes) + " bytes");
    out_ += s;
    return {};
  }

  const Value* Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return &*f;
    }
    return nullptr;
  }
  Value* LookupMut(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return &*f;
    }
    return nullptr;
  }

  Status ExecOne(const Stmt& s) {
    switch (s.kind) {
      case Stmt::kText:
        return Emit(s.text, s.line);
      case Stmt::kOutput: {
        KILN_ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
        return Emit(PyStr(v), s.line);
      }
      case Stmt::kIf:
        for (const auto& [cond, body] : s.branches) {
          bool take = true;
          if (cond) {
            KILN_ASSIGN_OR_RETURN(Value c, Eval(*cond));
            take = Truthy(c);
          }
          if (take) return Exec(body);
        }
        return {};
      case Stmt::kMacro:
        macros_.push_back(&s);
        scopes_.back()[s.targets[0]] = Value{{kMacroKey, static_cast<int64_t>(macros_.size() - 1)}};
        return {};
      case Stmt::kSet: {
        if (!s.expr) {  // block set: the rendered body is the value
          KILN_ASSIGN_OR_RETURN(std::string text, Capture(s.body, s.line));
          scopes_.back()[s.targets[0]] = std::move(text);
          return {};
        }
        KILN_ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
        if (s.targets.size() == 1) {
          scopes_.back()[s.targets[0]] = std::move(v);
          return {};
        }
        Value* ns = LookupMut(s.targets[0]);
        if (!ns || !ns->is_object() || !ns->contains(kNamespaceKey))
          return Err(s.line, "cannot set attribute of '" + s.targets[0] + "': not a namespace()");
        (*ns)[s.targets[1]] = std::move(v);
        return {};
      }
      case Stmt::kBreak:
        break_ = true;
        return {};
      case Stmt::kContinue:
        continue_ = true;
        return {};
      case Stmt::kBlock:
        return Exec(s.body);
      case Stmt::kFor:
        return ExecFor(s);
    }
    return {};
  }

  // Renders a body into a string of its own (macro calls, block sets).
  Expected<std::string> Capture(const Body& body, int line) {
    if (++call_depth_ > opt_.limits.max_depth) {
      --call_depth_;
      return Err(line, "macro calls nested too deeply");
    }
    std::string saved;
    saved.swap(out_);
    Status st = Exec(body);
    std::string text;
    text.swap(out_);
    out_.swap(saved);
    --call_depth_;
    if (!st.ok()) return st;
    if (out_.size() + text.size() > opt_.limits.max_output_bytes)
      return Err(line, "output exceeds the limit");
    return text;
  }

  Expected<Value> CallMacro(const Stmt& m, std::vector<Value> args, const KwArgs& kw, int line) {
    Value scope = Value::object();
    const size_t np = m.targets.size() - 1;
    if (args.size() > np)
      return Err(line, "macro '" + m.targets[0] + "' takes " + std::to_string(np) + " arguments");
    for (size_t k = 0; k < np; ++k) {
      const std::string& p = m.targets[k + 1];
      if (k < args.size()) {
        scope[p] = std::move(args[k]);
        continue;
      }
      auto it = std::find_if(kw.begin(), kw.end(), [&](const auto& x) { return x.first == p; });
      if (it != kw.end()) {
        scope[p] = it->second;
      } else if (m.defaults[k]) {
        KILN_ASSIGN_OR_RETURN(Value d, Eval(*m.defaults[k]));
        scope[p] = std::move(d);
      } else {
        scope[p] = Undefined();
      }
    }
    scopes_.push_back(std::move(scope));
    auto text = Capture(m.body, line);
    scopes_.pop_back();
    if (!text.ok()) return text.status();
    return Value(*text);
  }

  Status ExecFor(const Stmt& s) {
    KILN_ASSIGN_OR_RETURN(Value seq, Eval(*s.expr));
    std::vector<Value> items;
    if (seq.is_array()) {
      items.assign(seq.begin(), seq.end());
    } else if (seq.is_object()) {
      for (auto it = seq.begin(); it != seq.end(); ++it)
        if (it.key() != kNamespaceKey) items.push_back(it.key());
    } else if (seq.is_string()) {
      for (auto& c : Utf8Chars(seq.get<std::string>())) items.push_back(c);
    } else if (!IsUndefined(seq) && !seq.is_null()) {
      return Err(s.line, "cannot iterate over a " + std::string(seq.type_name()));
    }
    scopes_.push_back(Value::object());
    auto bind = [&](const Value& item) -> Status {
      Value& scope = scopes_.back();
      if (s.targets.size() == 1) {
        scope[s.targets[0]] = item;
      } else {
        if (!item.is_array() || item.size() != s.targets.size())
          return Err(s.line, "cannot unpack loop item into " + std::to_string(s.targets.size()) + " names");
        for (size_t k = 0; k < s.targets.size(); ++k) scope[s.targets[k]] = item[k];
      }
      return {};
    };
    if (s.filter) {  // "for x in xs if cond": filter first; loop.* counts what is left
      std::vector<Value> kept;
      for (const Value& item : items) {
        if (++iterations_ > opt_.limits.max_loop_iterations) return Err(s.line, "too many loop iterations");
        KILN_RETURN_IF_ERROR(bind(item));
        KILN_ASSIGN_OR_RETURN(Value c, Eval(*s.filter));
        if (Truthy(c)) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      if (++iterations_ > opt_.limits.max_loop_iterations) {
        scopes_.pop_back();
        return Err(s.line,
                   "more than " + std::to_string(opt_.limits.max_loop_iterations) + " loop iterations");
      }
      KILN_RETURN_IF_ERROR(bind(items[i]));
      Value loop = {{"index", i + 1},  {"index0", i},        {"revindex", n - i}, {"revindex0", n - i - 1},
                    {"first", i == 0}, {"last", i == n - 1}, {"length", n}};
      loop["previtem"] = i > 0 ? items[i - 1] : Undefined();
      loop["nextitem"] = i + 1 < n ? items[i + 1] : Undefined();
      scopes_.back()["loop"] = std::move(loop);
      Status st = Exec(s.body);
      if (!st.ok()) {
        scopes_.pop_back();
        return st;
      }
      continue_ = false;
      if (break_) {
        break_ = false;
        break;
      }
    }
    scopes_.pop_back();
    if (n == 0) return Exec(s.else_body);
    return {};
  }

  Expected<std::vector<Value>> EvalArgs(const Expr& e, size_t from, KwArgs* kw) {
    std::vector<Value> args;
    for (size_t k = from; k < e.args.size(); ++k) {
      KILN_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k]));
      args.push_back(std::move(v));
    }
    for (const auto& [name, x] : e.kwargs) {
      KILN_ASSIGN_OR_RETURN(Value v, Eval(*x));
      kw->emplace_back(name, std::move(v));
    }
    return args;
  }

  static bool IsGlobalFunction(const std::string& n) {
    return n == "raise_exception" || n == "namespace" || n == "range" || n == "strftime_now" || n == "dict";
  }

  Expected<Value> Call(const Expr& e) {
    const Expr& callee = *e.args[0];
    KwArgs kw;
    KILN_ASSIGN_OR_RETURN(std::vector<Value> args, EvalArgs(e, 1, &kw));
    if (callee.kind == Expr::kAttr) {
      KILN_ASSIGN_OR_RETURN(Value obj, Eval(*callee.args[0]));
      auto r = CallMethod(obj, callee.name, args, kw);
      if (!r.ok()) return Err(e.line, r.status().message());
      return r;
    }
    if (callee.kind != Expr::kName) return Err(e.line, "only functions and methods can be called");
    const std::string& n = callee.name;
    if (const Value* m = Lookup(n); m && m->is_object() && m->contains(kMacroKey)) {
      size_t idx = (*m)[kMacroKey].get<size_t>();
      if (idx < macros_.size()) return CallMacro(*macros_[idx], std::move(args), kw, e.line);
    }
    if (n == "raise_exception")
      return Status(ErrorCode::kInvalidArgument,
                    "chat template raised an exception: " + (args.empty() ? std::string() : PyStr(args[0])));
    if (n == "namespace" || n == "dict") {
      Value ns = Value::object();
      if (n == "namespace") ns[kNamespaceKey] = true;
      for (auto& [k, v] : kw) ns[k] = v;
      return ns;
    }
    if (n == "range") {
      int64_t a = 0, b = 0, step = 1;
      auto num = [&](size_t i) {
        return args[i].is_number() ? static_cast<int64_t>(args[i].get<double>()) : 0;
      };
      if (args.size() == 1)
        b = num(0);
      else if (args.size() >= 2)
        a = num(0), b = num(1);
      if (args.size() >= 3) step = num(2);
      if (step == 0) return Err(e.line, "range() step must not be zero");
      Value out = Value::array();
      for (int64_t x = a; step > 0 ? x < b : x > b; x += step) {
        if (++iterations_ > opt_.limits.max_loop_iterations) return Err(e.line, "range() too long");
        out.push_back(x);
      }
      return out;
    }
    if (n == "strftime_now") {
      std::time_t t = opt_.now ? opt_.now : std::time(nullptr);
      std::tm tm{};
      gmtime_r(&t, &tm);
      char buf[256];
      std::string fmt = args.empty() ? "%Y-%m-%d" : PyStr(args[0]);
      size_t len = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
      return Value(std::string(buf, len));
    }
    return Err(e.line, "'" + n + "' is not a function kiln's template engine knows");
  }

  Expected<Value> Binary(const Expr& e) {
    const std::string& op = e.name;
    KILN_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
    if (op == "and") {
      if (!Truthy(a)) return a;
      return Eval(*e.args[1]);
    }
    if (op == "or") {
      if (Truthy(a)) return a;
      return Eval(*e.args[1]);
    }
    KILN_ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
    if (op == "==") return Value(PyEqual(a, b));
    if (op == "!=") return Value(!PyEqual(a, b));
    if (op == "in" || op == "not in") {
      auto r = PyContains(b, a);
      if (!r.ok()) return Err(e.line, r.status().message());
      return Value(op == "in" ? *r : !*r);
    }
    if (op == "~") {
      std::string r = PyStr(a) + PyStr(b);
      if (r.size() > opt_.limits.max_output_bytes) return Err(e.line, "string too long");
      return Value(std::move(r));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (a.is_number() && b.is_number()) {
        double x = a.get<double>(), y = b.get<double>();
        c = x < y ? -1 : x > y ? 1 : 0;
      } else if (a.is_string() && b.is_string()) {
        int r = a.get<std::string>().compare(b.get<std::string>());
        c = r < 0 ? -1 : r > 0 ? 1 : 0;
      } else {
        return Err(e.line,
                   "cannot compare " + std::string(a.type_name()) + " and " + b.type_name() + " with " + op);
      }
      bool r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
      return Value(r);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        if (a.get_ref<const std::string&>().size() + b.get_ref<const std::string&>().size() >
            opt_.limits.max_output_bytes)
          return Err(e.line, "string too long");
        return Value(a.get<std::string>() + b.get<std::string>());
      }
      if (a.is_array() && b.is_array()) {
        if (a.size() + b.size() > opt_.limits.max_output_bytes / 8) return Err(e.line, "list too long");
        Value r = a;
        for (const Value& x : b) r.push_back(x);
        return r;
      }
    }
    if (a.is_number() && b.is_number()) {
      const bool ints = a.is_number_integer() && b.is_number_integer();
      const double x = a.get<double>(), y = b.get<double>();
      int64_t r = 0;  // integer results that overflow int64 fall back to float
      const int64_t ia = ints ? a.get<int64_t>() : 0, ib = ints ? b.get<int64_t>() : 0;
      if (op == "+") return ints && !__builtin_add_overflow(ia, ib, &r) ? Value(r) : Value(x + y);
      if (op == "-") return ints && !__builtin_sub_overflow(ia, ib, &r) ? Value(r) : Value(x - y);
      if (op == "*") return ints && !__builtin_mul_overflow(ia, ib, &r) ? Value(r) : Value(x * y);
      if (op == "**") {
        double p = std::pow(x, y);
        return ints && y >= 0 && std::fabs(p) < 9e18 ? Value(static_cast<int64_t>(p)) : Value(p);
      }
      if (y == 0 && (op == "/" || op == "//" || op == "%")) return Err(e.line, "division by zero");
      if (op == "/") return Value(x / y);
      if (op == "//")
        return ints && std::fabs(x / y) < 9e18 ? Value(static_cast<int64_t>(std::floor(x / y)))
                                               : Value(std::floor(x / y));
      if (op == "%") {
        if (ints && ib == -1) return Value(int64_t{0});  // and INT64_MIN % -1 would overflow
        if (ints) {
          int64_t m = ia % ib;
          if (m != 0 && ((m < 0) != (b.get<int64_t>() < 0))) m += b.get<int64_t>();
          return Value(m);
        }
        return Value(x - y * std::floor(x / y));
      }
    }
    if (op == "%" && a.is_string()) {  // printf-style: '%s' % x, '%s %d' % [x, y]
      const std::string& f = a.get_ref<const std::string&>();
      std::vector<Value> vals = b.is_array() ? std::vector<Value>(b.begin(), b.end()) : std::vector<Value>{b};
      std::string r;
      size_t next = 0;
      for (size_t i = 0; i < f.size(); ++i) {
        if (f[i] != '%' || i + 1 >= f.size()) {
          r += f[i];
          continue;
        }
        char c = f[++i];
        if (c == '%') {
          r += '%';
        } else if (c == 's' || c == 'd' || c == 'r' || c == 'i') {
          if (next >= vals.size()) return Err(e.line, "not enough arguments for format string");
          const Value& x = vals[next++];
          r += c == 'r' ? PyRepr(x)
                        : (c == 's' ? PyStr(x) : std::to_string(x.is_number() ? x.get<int64_t>() : 0));
        } else {
          return Err(e.line, std::string("unsupported format character '") + c + "'");
        }
      }
      return Value(r);
    }
    if (op == "*" && a.is_string() && b.is_number_integer()) {
      int64_t k = b.get<int64_t>();
      if (k > 0 &&
          a.get_ref<const std::string&>().size() * static_cast<size_t>(k) > opt_.limits.max_output_bytes)
        return Err(e.line, "string too long");
      std::string r;
      for (int64_t i = 0; i < k; ++i) r += a.get<std::string>();
      return Value(r);
    }
    return Err(e.line,
               "unsupported operand types for " + op + ": " + a.type_name() + " and " + b.type_name());
  }

  Expected<Value> Index(const Value& obj, const Value& key, int line) {
    if (obj.is_object()) {
      if (key.is_string() && obj.contains(key.get<std::string>())) return Value(obj[key.get<std::string>()]);
      return Undefined();
    }
    if ((obj.is_array() || obj.is_string()) && key.is_number_integer()) {
      int64_t i = key.get<int64_t>();
      if (obj.is_string()) {
        auto cs = Utf8Chars(obj.get<std::string>());
        int64_t n = static_cast<int64_t>(cs.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Undefined();
        return Value(cs[i]);
      }
      int64_t n = static_cast<int64_t>(obj.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Undefined();
      return Value(obj[static_cast<size_t>(i)]);
    }
    return Undefined();
  }

  Expected<Value> Slice(const Expr& e) {
    KILN_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
    int64_t parts[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      KILN_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
      if (v.is_null()) continue;
      if (!v.is_number_integer()) return Err(e.line, "slice indices must be integers");
      parts[k] = v.get<int64_t>();
      given[k] = true;
    }
    int64_t step = parts[2];
    if (step == 0) return Err(e.line, "slice step cannot be zero");
    std::vector<Value> items;
    bool is_str = obj.is_string();
    if (is_str) {
      for (auto& c : Utf8Chars(obj.get<std::string>())) items.push_back(c);
    } else if (obj.is_array()) {
      items.assign(obj.begin(), obj.end());
    } else {
      return Undefined();
    }
    const int64_t n = static_cast<int64_t>(items.size());
    auto norm = [&](int64_t x, bool is_given, int64_t dflt) {
      if (!is_given) return dflt;
      if (x < 0) x += n;
      if (step > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    int64_t start = norm(parts[0], given[0], step > 0 ? 0 : n - 1);
    int64_t stop = norm(parts[1], given[1], step > 0 ? n : -1);
    std::string s;
    Value arr = Value::array();
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (is_str)
        s += items[i].get<std::string>();
      else
        arr.push_back(items[i]);
    }
    return is_str ? Value(s) : arr;
  }

  Expected<Value> Eval(const Expr& e) {
    if (++depth_ > opt_.limits.max_depth * 4) {
      --depth_;
      return Err(e.line, "expression evaluation too deep");
    }
    auto r = EvalInner(e);
    --depth_;
    return r;
  }

  Expected<Value> EvalInner(const Expr& e) {
    switch (e.kind) {
      case Expr::kLiteral:
        return e.literal;
      case Expr::kName: {
        const Value* v = Lookup(e.name);
        return v ? *v : Undefined();
      }
      case Expr::kList: {
        Value out = Value::array();
        for (const auto& x : e.args) {
          KILN_ASSIGN_OR_RETURN(Value v, Eval(*x));
          out.push_back(std::move(v));
        }
        return out;
      }
      case Expr::kDict: {
        Value out = Value::object();
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          KILN_ASSIGN_OR_RETURN(Value key, Eval(*e.args[k]));
          KILN_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
          out[PyStr(key)] = std::move(v);
        }
        return out;
      }
      case Expr::kAttr: {
        KILN_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        return Index(obj, Value(e.name), e.line);
      }
      case Expr::kIndex: {
        KILN_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        KILN_ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
        return Index(obj, key, e.line);
      }
      case Expr::kSlice:
        return Slice(e);
      case Expr::kCall:
        return Call(e);
      case Expr::kFilter: {
        KILN_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        KwArgs kw;
        KILN_ASSIGN_OR_RETURN(std::vector<Value> args, EvalArgs(e, 1, &kw));
        auto r = ApplyFilter(e.name, v, args, kw);
        if (!r.ok()) return Err(e.line, r.status().message());
        return r;
      }
      case Expr::kTest: {
        Value v;
        if (e.args[0]->kind == Expr::kName && !Lookup(e.args[0]->name) && IsGlobalFunction(e.args[0]->name)) {
          v = true;  // "strftime_now is defined"
        } else {
          KILN_ASSIGN_OR_RETURN(v, Eval(*e.args[0]));
        }
        KwArgs kw;
        KILN_ASSIGN_OR_RETURN(std::vector<Value> args, EvalArgs(e, 1, &kw));
        auto r = ApplyTest(e.name, v, args);
        if (!r.ok()) return Err(e.line, r.status().message());
        return Value(e.negated ? !*r : *r);
      }
      case Expr::kUnary: {
        KILN_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        if (e.name == "not") return Value(!Truthy(v));
        if (!v.is_number()) return Err(e.line, "bad operand for unary " + e.name);
        if (e.name == "+") return v;
        if (v.is_number_integer() && v.get<int64_t>() != INT64_MIN) return Value(-v.get<int64_t>());
        return Value(-v.get<double>());
      }
      case Expr::kBinary:
        return Binary(e);
      case Expr::kCond: {
        KILN_ASSIGN_OR_RETURN(Value c, Eval(*e.args[1]));
        if (Truthy(c)) return Eval(*e.args[0]);
        if (e.args.size() > 2) return Eval(*e.args[2]);
        return Undefined();
      }
    }
    return Undefined();
  }

  const RenderOptions& opt_;
  std::vector<Value> scopes_;
  std::string out_;
  int64_t iterations_ = 0;
  int depth_ = 0, call_depth_ = 0;
  std::vector<const Stmt*> macros_;
  bool break_ = false, continue_ = false;
};

}  // namespace

Expected<std::string> Render(const Template& t, const Value& context, const RenderOptions& opt) {
  Evaluator ev(context, opt);
  KILN_RETURN_IF_ERROR(ev.Exec(t.body));
  return std::move(ev.out());
}

}  // namespace kiln::jinja
