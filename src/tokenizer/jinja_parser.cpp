// Tokens -> AST for the chat-template Jinja subset: if/elif/else, for (with "if" filter,
// else, loop controls), set (name, namespace attribute), raw, generation blocks; full
// expression grammar with filters, tests, calls, slices, conditional expressions.
#include "tokenizer/jinja.h"

namespace kiln::jinja {
namespace {

class Parser {
 public:
  Parser(std::vector<Token> toks, const Limits& lim) : t_(std::move(toks)), lim_(lim) {}

  Expected<Body> ParseBody(const std::vector<std::string>& stops, std::string* stopped_at) {
    Body body;
    while (true) {
      const Token& tk = Peek();
      if (tk.kind == Token::kEnd) {
        if (!stops.empty()) return Err("missing {% " + stops.front() + " %}");
        return body;
      }
      if (tk.kind == Token::kText) {
        Stmt s{Stmt::kText};
        s.line = tk.line;
        s.text = tk.text;
        body.push_back(std::move(s));
        ++p_;
        continue;
      }
      if (tk.kind == Token::kVarBegin) {
        ++p_;
        Stmt s{Stmt::kOutput};
        s.line = tk.line;
        KILN_ASSIGN_OR_RETURN(s.expr, ParseExpr());
        KILN_RETURN_IF_ERROR(Expect(Token::kVarEnd, "'}}'"));
        body.push_back(std::move(s));
        continue;
      }
      if (tk.kind != Token::kBlockBegin) return Err("unexpected token");
      const Token& kw = t_[p_ + 1];
      if (kw.kind != Token::kName) return Err("expected a statement name after '{%'");
      for (const std::string& stop : stops)
        if (kw.text == stop) {
          p_ += 2;
          *stopped_at = stop;
          return body;
        }
      p_ += 2;
      KILN_ASSIGN_OR_RETURN(Stmt s, ParseStatement(kw));
      body.push_back(std::move(s));
    }
  }

 private:
  const Token& Peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  bool IsOp(const char* op, size_t k = 0) const { return Peek(k).kind == Token::kOp && Peek(k).text == op; }
  bool IsName(const char* n, size_t k = 0) const { return Peek(k).kind == Token::kName && Peek(k).text == n; }
  Status Err(const std::string& m) const {
    return InvalidArgument("chat template line " + std::to_string(Peek().line) + ": " + m);
  }
  Status Expect(Token::Kind k, const char* what) {
    if (Peek().kind != k) return Err(std::string("expected ") + what);
    ++p_;
    return {};
  }
  Status ExpectOp(const char* op) {
    if (!IsOp(op)) return Err(std::string("expected '") + op + "'");
    ++p_;
    return {};
  }
  Expected<std::string> ExpectName() {
    if (Peek().kind != Token::kName) return Err("expected a name");
    return t_[p_++].text;
  }
  Status EndTag() { return Expect(Token::kBlockEnd, "'%}'"); }

  Expected<Stmt> ParseStatement(const Token& kw) {
    if (++depth_ > lim_.max_depth) return Err("statements nested too deeply");
    struct Guard {
      int& d;
      ~Guard() { --d; }
    } guard{depth_};
    Stmt s{Stmt::kText};
    s.line = kw.line;
    const std::string& k = kw.text;
    std::string stop;
    if (k == "if") {
      s.kind = Stmt::kIf;
      KILN_ASSIGN_OR_RETURN(ExprPtr cond, ParseExpr());
      KILN_RETURN_IF_ERROR(EndTag());
      while (true) {
        KILN_ASSIGN_OR_RETURN(Body b, ParseBody({"elif", "else", "endif"}, &stop));
        s.branches.emplace_back(std::move(cond), std::move(b));
        if (stop == "endif") break;
        if (stop == "else") {
          KILN_RETURN_IF_ERROR(EndTag());
          KILN_ASSIGN_OR_RETURN(Body eb, ParseBody({"endif"}, &stop));
          s.branches.emplace_back(nullptr, std::move(eb));
          break;
        }
        KILN_ASSIGN_OR_RETURN(cond, ParseExpr());
        KILN_RETURN_IF_ERROR(EndTag());
      }
      KILN_RETURN_IF_ERROR(EndTag());
      return s;
    }
    if (k == "for") {
      s.kind = Stmt::kFor;
      do {
        KILN_ASSIGN_OR_RETURN(std::string v, ExpectName());
        s.targets.push_back(std::move(v));
      } while (IsOp(",") && (++p_, true));
      if (!IsName("in")) return Err("expected 'in' in for loop");
      ++p_;
      KILN_ASSIGN_OR_RETURN(s.expr, ParseOr());  // no conditional expression: "if" filters
      if (IsName("if")) {
        ++p_;
        KILN_ASSIGN_OR_RETURN(s.filter, ParseOr());
      }
      if (IsName("recursive")) return Err("recursive loops are not supported");
      KILN_RETURN_IF_ERROR(EndTag());
      KILN_ASSIGN_OR_RETURN(s.body, ParseBody({"else", "endfor"}, &stop));
      if (stop == "else") {
        KILN_RETURN_IF_ERROR(EndTag());
        KILN_ASSIGN_OR_RETURN(s.else_body, ParseBody({"endfor"}, &stop));
      }
      KILN_RETURN_IF_ERROR(EndTag());
      return s;
    }
    if (k == "set") {
      s.kind = Stmt::kSet;
      KILN_ASSIGN_OR_RETURN(std::string name, ExpectName());
      s.targets.push_back(name);
      if (IsOp(".")) {
        ++p_;
        KILN_ASSIGN_OR_RETURN(std::string attr, ExpectName());
        s.targets.push_back(attr);
      }
      if (IsOp("|")) return Err("filtered {% set %} blocks are not supported");
      if (Peek().kind == Token::kBlockEnd && s.targets.size() == 1) {  // {% set x %}...{% endset %}
        KILN_RETURN_IF_ERROR(EndTag());
        KILN_ASSIGN_OR_RETURN(s.body, ParseBody({"endset"}, &stop));
        KILN_RETURN_IF_ERROR(EndTag());
        return s;
      }
      if (!IsOp("=")) return Err("expected '=' in {% set %}");
      ++p_;
      KILN_ASSIGN_OR_RETURN(s.expr, ParseExpr());
      KILN_RETURN_IF_ERROR(EndTag());
      return s;
    }
    if (k == "break" || k == "continue") {
      s.kind = k == "break" ? Stmt::kBreak : Stmt::kContinue;
      KILN_RETURN_IF_ERROR(EndTag());
      return s;
    }
    if (k == "macro") {
      s.kind = Stmt::kMacro;
      KILN_ASSIGN_OR_RETURN(std::string name, ExpectName());
      s.targets.push_back(name);
      KILN_RETURN_IF_ERROR(ExpectOp("("));
      while (!IsOp(")")) {
        KILN_ASSIGN_OR_RETURN(std::string param, ExpectName());
        s.targets.push_back(param);
        ExprPtr dflt;
        if (IsOp("=")) {
          ++p_;
          KILN_ASSIGN_OR_RETURN(dflt, ParseExpr());
        }
        s.defaults.push_back(std::move(dflt));
        if (IsOp(","))
          ++p_;
        else if (!IsOp(")"))
          return Err("expected ',' or ')' in macro parameters");
      }
      ++p_;
      KILN_RETURN_IF_ERROR(EndTag());
      KILN_ASSIGN_OR_RETURN(s.body, ParseBody({"endmacro"}, &stop));
      KILN_RETURN_IF_ERROR(EndTag());
      return s;
    }
    if (k == "generation") {  // HF extension marking assistant text: rendered as is
      s.kind = Stmt::kBlock;
      KILN_RETURN_IF_ERROR(EndTag());
      KILN_ASSIGN_OR_RETURN(s.body, ParseBody({"endgeneration"}, &stop));
      KILN_RETURN_IF_ERROR(EndTag());
      return s;
    }
    return Err("statement '" + k + "' is not supported");
  }

  // ---- expressions ----
  ExprPtr Make(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }
  Expected<ExprPtr> Binary(const std::string& op, ExprPtr a, ExprPtr b, int line) {
    ExprPtr e = Make(Expr::kBinary, line);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  Expected<ExprPtr> ParseExpr() {
    if (++depth_ > lim_.max_depth) return Err("expression nested too deeply");
    struct Guard {
      int& d;
      ~Guard() { --d; }
    } guard{depth_};
    int line = Peek().line;
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParseOr());
    if (IsName("if")) {
      ++p_;
      KILN_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr e = Make(Expr::kCond, line);
      e->args.push_back(std::move(a));
      e->args.push_back(std::move(cond));
      if (IsName("else")) {
        ++p_;
        KILN_ASSIGN_OR_RETURN(ExprPtr b, ParseExpr());
        e->args.push_back(std::move(b));
      }
      return e;
    }
    return a;
  }
  Expected<ExprPtr> ParseOr() {
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParseAnd());
    while (IsName("or")) {
      int line = t_[p_++].line;
      KILN_ASSIGN_OR_RETURN(ExprPtr b, ParseAnd());
      KILN_ASSIGN_OR_RETURN(a, Binary("or", std::move(a), std::move(b), line));
    }
    return a;
  }
  Expected<ExprPtr> ParseAnd() {
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParseNot());
    while (IsName("and")) {
      int line = t_[p_++].line;
      KILN_ASSIGN_OR_RETURN(ExprPtr b, ParseNot());
      KILN_ASSIGN_OR_RETURN(a, Binary("and", std::move(a), std::move(b), line));
    }
    return a;
  }
  Expected<ExprPtr> ParseNot() {
    if (IsName("not")) {
      int line = t_[p_++].line;
      if (++depth_ > lim_.max_depth) return Err("expression nested too deeply");
      auto inner = ParseNot();
      --depth_;
      if (!inner.ok()) return inner.status();
      ExprPtr e = Make(Expr::kUnary, line);
      e->name = "not";
      e->args.push_back(std::move(inner).value());
      return e;
    }
    return ParseCompare();
  }
  Expected<ExprPtr> ParseCompare() {
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParseConcat());
    while (true) {
      std::string op;
      int line = Peek().line;
      if (Peek().kind == Token::kOp &&
          (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">="))) {
        op = t_[p_++].text;
      } else if (IsName("in")) {
        op = "in";
        ++p_;
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        p_ += 2;
      } else {
        return a;
      }
      KILN_ASSIGN_OR_RETURN(ExprPtr b, ParseConcat());
      KILN_ASSIGN_OR_RETURN(a, Binary(op, std::move(a), std::move(b), line));
    }
  }
  Expected<ExprPtr> ParseConcat() {
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParseAdd());
    while (IsOp("~")) {
      int line = t_[p_++].line;
      KILN_ASSIGN_OR_RETURN(ExprPtr b, ParseAdd());
      KILN_ASSIGN_OR_RETURN(a, Binary("~", std::move(a), std::move(b), line));
    }
    return a;
  }
  Expected<ExprPtr> ParseAdd() {
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParseMul());
    while (IsOp("+") || IsOp("-")) {
      const Token& op = t_[p_++];
      KILN_ASSIGN_OR_RETURN(ExprPtr b, ParseMul());
      KILN_ASSIGN_OR_RETURN(a, Binary(op.text, std::move(a), std::move(b), op.line));
    }
    return a;
  }
  Expected<ExprPtr> ParseMul() {
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& op = t_[p_++];
      KILN_ASSIGN_OR_RETURN(ExprPtr b, ParsePow());
      KILN_ASSIGN_OR_RETURN(a, Binary(op.text, std::move(a), std::move(b), op.line));
    }
    return a;
  }
  Expected<ExprPtr> ParsePow() {
    KILN_ASSIGN_OR_RETURN(ExprPtr a, ParseUnary());
    while (IsOp("**")) {
      int line = t_[p_++].line;
      KILN_ASSIGN_OR_RETURN(ExprPtr b, ParseUnary());
      KILN_ASSIGN_OR_RETURN(a, Binary("**", std::move(a), std::move(b), line));
    }
    return a;
  }
  Expected<ExprPtr> ParseUnary() {
    if (IsOp("-") || IsOp("+")) {
      const Token& op = t_[p_++];
      if (++depth_ > lim_.max_depth) return Err("expression nested too deeply");
      auto inner = ParseUnary();
      --depth_;
      if (!inner.ok()) return inner.status();
      ExprPtr e = Make(Expr::kUnary, op.line);
      e->name = op.text;
      e->args.push_back(std::move(inner).value());
      return e;
    }
    KILN_ASSIGN_OR_RETURN(ExprPtr e, ParsePrimary());
    return ParsePostfix(std::move(e));
  }

  Status ParseCallArgs(Expr* e) {
    // after '('
    while (!IsOp(")")) {
      if (Peek().kind == Token::kName && IsOp("=", 1)) {
        std::string k = t_[p_].text;
        p_ += 2;
        KILN_ASSIGN_OR_RETURN(ExprPtr v, ParseExpr());
        e->kwargs.emplace_back(std::move(k), std::move(v));
      } else {
        KILN_ASSIGN_OR_RETURN(ExprPtr v, ParseExpr());
        e->args.push_back(std::move(v));
      }
      if (IsOp(","))
        ++p_;
      else if (!IsOp(")"))
        return Err("expected ',' or ')' in call");
    }
    ++p_;
    return {};
  }

  Expected<ExprPtr> ParsePostfix(ExprPtr e) {
    while (true) {
      int line = Peek().line;
      if (IsOp(".")) {
        ++p_;
        KILN_ASSIGN_OR_RETURN(std::string attr, ExpectName());
        ExprPtr a = Make(Expr::kAttr, line);
        a->name = attr;
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (IsOp("[")) {
        ++p_;
        ExprPtr parts[3];
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!IsOp(":") && !IsOp("]")) {
            KILN_ASSIGN_OR_RETURN(parts[k], ParseExpr());
          }
          if (IsOp(":")) {
            slice = true;
            ++p_;
          } else {
            break;
          }
        }
        KILN_RETURN_IF_ERROR(ExpectOp("]"));
        ExprPtr a = Make(slice ? Expr::kSlice : Expr::kIndex, line);
        a->args.push_back(std::move(e));
        if (!slice && !parts[0]) return Err("empty subscript");
        for (int k = 0; k < (slice ? 3 : 1); ++k) a->args.push_back(std::move(parts[k]));
        e = std::move(a);
      } else if (IsOp("(")) {
        ++p_;
        ExprPtr c = Make(Expr::kCall, line);
        c->args.push_back(std::move(e));
        KILN_RETURN_IF_ERROR(ParseCallArgs(c.get()));
        e = std::move(c);
      } else if (IsOp("|")) {
        ++p_;
        KILN_ASSIGN_OR_RETURN(std::string name, ExpectName());
        ExprPtr f = Make(Expr::kFilter, line);
        f->name = name;
        f->args.push_back(std::move(e));
        if (IsOp("(")) {
          ++p_;
          KILN_RETURN_IF_ERROR(ParseCallArgs(f.get()));
        }
        e = std::move(f);
      } else if (IsName("is")) {
        ++p_;
        ExprPtr t = Make(Expr::kTest, line);
        if (IsName("not")) {
          t->negated = true;
          ++p_;
        }
        KILN_ASSIGN_OR_RETURN(std::string name, ExpectName());
        t->name = name;
        t->args.push_back(std::move(e));
        if (IsOp("(")) {
          ++p_;
          KILN_RETURN_IF_ERROR(ParseCallArgs(t.get()));
        } else if (Peek().kind == Token::kString || Peek().kind == Token::kInt ||
                   Peek().kind == Token::kFloat ||
                   (Peek().kind == Token::kName && !IsName("and") && !IsName("or") && !IsName("if") &&
                    !IsName("else") && !IsName("not") && !IsName("in") && !IsName("is"))) {
          KILN_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());  // "is equalto 'x'", "is divisibleby 3"
          t->args.push_back(std::move(arg));
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  Expected<ExprPtr> ParsePrimary() {
    const Token& tk = Peek();
    int line = tk.line;
    if (tk.kind == Token::kString) {
      std::string v = tk.text;
      ++p_;
      while (Peek().kind == Token::kString) v += t_[p_++].text;  // adjacent literals concatenate
      ExprPtr e = Make(Expr::kLiteral, line);
      e->literal = v;
      return e;
    }
    if (tk.kind == Token::kInt || tk.kind == Token::kFloat) {
      ExprPtr e = Make(Expr::kLiteral, line);
      if (tk.kind == Token::kInt)
        e->literal = tk.i;
      else
        e->literal = tk.f;
      ++p_;
      return e;
    }
    if (tk.kind == Token::kName) {
      ++p_;
      ExprPtr e = Make(Expr::kLiteral, line);
      const std::string& n = tk.text;
      if (n == "true" || n == "True")
        e->literal = true;
      else if (n == "false" || n == "False")
        e->literal = false;
      else if (n == "none" || n == "None")
        e->literal = nullptr;
      else {
        e->kind = Expr::kName;
        e->name = n;
      }
      return e;
    }
    if (IsOp("(")) {
      ++p_;
      KILN_ASSIGN_OR_RETURN(ExprPtr e, ParseExpr());
      if (IsOp(",")) {  // tuple -> list
        ExprPtr l = Make(Expr::kList, line);
        l->args.push_back(std::move(e));
        while (IsOp(",")) {
          ++p_;
          if (IsOp(")")) break;
          KILN_ASSIGN_OR_RETURN(ExprPtr x, ParseExpr());
          l->args.push_back(std::move(x));
        }
        e = std::move(l);
      }
      KILN_RETURN_IF_ERROR(ExpectOp(")"));
      return e;
    }
    if (IsOp("[")) {
      ++p_;
      ExprPtr l = Make(Expr::kList, line);
      while (!IsOp("]")) {
        KILN_ASSIGN_OR_RETURN(ExprPtr x, ParseExpr());
        l->args.push_back(std::move(x));
        if (IsOp(","))
          ++p_;
        else if (!IsOp("]"))
          return Err("expected ',' or ']' in list");
      }
      ++p_;
      return l;
    }
    if (IsOp("{")) {
      ++p_;
      ExprPtr d = Make(Expr::kDict, line);
      while (!IsOp("}")) {
        KILN_ASSIGN_OR_RETURN(ExprPtr k, ParseExpr());
        KILN_RETURN_IF_ERROR(ExpectOp(":"));
        KILN_ASSIGN_OR_RETURN(ExprPtr v, ParseExpr());
        d->args.push_back(std::move(k));
        d->args.push_back(std::move(v));
        if (IsOp(","))
          ++p_;
        else if (!IsOp("}"))
          return Err("expected ',' or '}' in dict");
      }
      ++p_;
      return d;
    }
    return Err("unexpected '" + tk.text + "' in expression");
  }

  std::vector<Token> t_;
  const Limits& lim_;
  size_t p_ = 0;
  int depth_ = 0;
};

}  // namespace

Expected<std::shared_ptr<Template>> Parse(const std::string& source, const Limits& limits) {
  if (source.size() > limits.max_template_bytes)
    return InvalidArgument("chat template is " + std::to_string(source.size()) +
                           " bytes, over the limit of " + std::to_string(limits.max_template_bytes));
  KILN_ASSIGN_OR_RETURN(std::vector<Token> toks, Lex(source));
  Parser p(std::move(toks), limits);
  std::string stop;
  auto t = std::make_shared<Template>();
  KILN_ASSIGN_OR_RETURN(t->body, p.ParseBody({}, &stop));
  return t;
}

}  // namespace kiln::jinja
