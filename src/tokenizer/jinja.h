// A bounded interpreter for the Jinja subset that chat templates use (HF apply_chat_template:
// trim_blocks, lstrip_blocks, loop controls). No I/O; recursion depth, loop iterations and
// output size are limited; errors are values naming the template line.
#pragma once
#include <cstdint>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::jinja {

// Values are JSON with insertion-ordered objects; "undefined" is a discarded json.
using Value = nlohmann::ordered_json;
inline Value Undefined() { return Value(Value::value_t::discarded); }
inline bool IsUndefined(const Value& v) { return v.is_discarded(); }
// namespace() objects carry this key so they can be told from dicts.
inline constexpr const char* kNamespaceKey = "\x01namespace";
// Macros are stored in scope as {kMacroKey: index}.
inline constexpr const char* kMacroKey = "\x01macro";

struct Limits {
  int max_depth = 64;                     // nested expressions / statements / calls
  int64_t max_loop_iterations = 1000000;  // summed over all loops of one render
  size_t max_output_bytes = 8u << 20;
  size_t max_template_bytes = 1u << 20;
};

// ---- tokens ----
struct Token {
  enum Kind {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEnd
  } kind;
  std::string text;  // text, name, string value, op spelling
  int64_t i = 0;
  double f = 0;
  int line = 1;
};
Expected<std::vector<Token>> Lex(const std::string& source);

// ---- AST ----
struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct Expr {
  enum Kind {
    kLiteral,
    kName,
    kList,
    kDict,
    kAttr,
    kIndex,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kCond
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;  // name / attribute / filter / test / operator
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;  // "is not"
};

struct Stmt;
using Body = std::vector<Stmt>;
struct Stmt {
  enum Kind { kText, kOutput, kIf, kFor, kSet, kBreak, kContinue, kBlock, kMacro };
  explicit Stmt(Kind k = kText) : kind(k) {}
  Kind kind;
  int line = 0;
  std::string text;                                // kText
  ExprPtr expr;                                    // kOutput, kSet value, kFor iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf (null condition = else)
  std::vector<std::string> targets;  // kFor loop variables; kSet: [name] or [namespace, attribute];
                                     // kMacro: [name, params...]
  std::vector<ExprPtr> defaults;     // kMacro: default of each parameter (null: none)
  ExprPtr filter;                    // kFor "... if cond"
  Body body, else_body;              // kFor / kBlock
};

struct Template {
  Body body;
};
Expected<std::shared_ptr<Template>> Parse(const std::string& source, const Limits& limits);

// ---- evaluation ----
struct RenderOptions {
  Limits limits;
  std::time_t now = 0;  // strftime_now; 0 = the current time
};
Expected<std::string> Render(const Template& t, const Value& context, const RenderOptions& opt);

// Python-compatible printing, used by output and filters.
std::string PyStr(const Value& v);                    // str(x)
std::string PyRepr(const Value& v);                   // repr(x)
std::string PyJsonDumps(const Value& v, int indent);  // json.dumps(x, ensure_ascii=False, indent)
bool Truthy(const Value& v);

// Builtins (jinja_builtins.cpp). Keyword arguments come as (name, value) pairs.
using KwArgs = std::vector<std::pair<std::string, Value>>;
Expected<Value> ApplyFilter(const std::string& name, const Value& v, const std::vector<Value>& args,
                            const KwArgs& kwargs);
Expected<bool> ApplyTest(const std::string& name, const Value& v, const std::vector<Value>& args);
Expected<Value> CallMethod(const Value& obj, const std::string& name, const std::vector<Value>& args,
                           const KwArgs& kwargs);
// Python semantics helpers shared with the evaluator.
bool PyEqual(const Value& a, const Value& b);
Expected<bool> PyContains(const Value& container, const Value& item);
std::vector<std::string> Utf8Chars(const std::string& s);

}  // namespace kiln::jinja
