// Template text -> tokens, applying HF's whitespace rules: trim_blocks (drop the newline after
// a block/comment tag), lstrip_blocks (drop indentation before one), "-" strip markers,
// and Jinja's removal of one trailing newline.
#include <cctype>

#include "tokenizer/jinja.h"
#include "tokenizer/text_util.h"

namespace kiln::jinja {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

struct Lexer {
  const std::string& s;
  size_t pos = 0;
  int line = 1;
  std::vector<Token> out;

  Status Err(const std::string& m) const {
    return InvalidArgument("chat template line " + std::to_string(line) + ": " + m);
  }

  void Advance(size_t n) {
    for (size_t k = 0; k < n && pos < s.size(); ++k, ++pos)
      if (s[pos] == '\n') ++line;
  }

  void PushText(std::string text, int at_line) {
    if (!text.empty()) out.push_back({Token::kText, std::move(text), 0, 0, at_line});
  }

  // Lexes expression tokens until the closing delimiter `close` ("}}" or "%}").
  // Returns whether the closer had a "-" strip marker.
  Expected<bool> LexInside(const std::string& close) {
    while (true) {
      while (pos < s.size() && IsSpace(s[pos])) Advance(1);
      if (pos >= s.size()) return Err("unclosed tag, expected '" + close + "'");
      if (s[pos] == '-' && s.compare(pos + 1, close.size(), close) == 0) {
        Advance(1 + close.size());
        return true;
      }
      if (s.compare(pos, close.size(), close) == 0) {
        Advance(close.size());
        return false;
      }
      char c = s[pos];
      if (c == '\'' || c == '"') {
        std::string v;
        size_t p = pos + 1;
        while (p < s.size() && s[p] != c) {
          if (s[p] == '\\' && p + 1 < s.size()) {
            char e = s[p + 1];
            switch (e) {
              case 'n':
                v += '\n';
                break;
              case 't':
                v += '\t';
                break;
              case 'r':
                v += '\r';
                break;
              case '\\':
                v += '\\';
                break;
              case '\'':
                v += '\'';
                break;
              case '"':
                v += '"';
                break;
              case 'x':
              case 'u':
              case 'U': {  // \xNN, \uNNNN, \UNNNNNNNN as in Python string literals
                const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                bool ok = p + 2 + n <= s.size();
                for (size_t k = 0; ok && k < n; ++k) {
                  char h = s[p + 2 + k];
                  int d = std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                          : (h >= 'a' && h <= 'f')                    ? h - 'a' + 10
                          : (h >= 'A' && h <= 'F')                    ? h - 'A' + 10
                                                                      : -1;
                  ok = d >= 0;
                  cp = cp * 16 + static_cast<uint32_t>(d);
                }
                if (ok && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF)) {
                  v += tok::EncodeUtf8(cp);
                  p += n;
                } else {
                  v += '\\';
                  v += e;
                }
                break;
              }
              default:
                v += '\\';
                v += e;
                break;
            }
            p += 2;
          } else {
            v += s[p++];
          }
        }
        if (p >= s.size()) return Err("unterminated string literal");
        out.push_back({Token::kString, std::move(v), 0, 0, line});
        Advance(p + 1 - pos);
        continue;
      }
      if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t p = pos;
        while (p < s.size() && (std::isdigit(static_cast<unsigned char>(s[p])) || s[p] == '_')) ++p;
        bool is_float = p + 1 < s.size() && s[p] == '.' && std::isdigit(static_cast<unsigned char>(s[p + 1]));
        if (is_float) {
          ++p;
          while (p < s.size() && std::isdigit(static_cast<unsigned char>(s[p]))) ++p;
        }
        std::string num = s.substr(pos, p - pos);
        std::erase(num, '_');
        Token t{is_float ? Token::kFloat : Token::kInt, num, 0, 0, line};
        try {
          if (is_float)
            t.f = std::stod(num);
          else
            t.i = std::stoll(num);
        } catch (...) {
          return Err("bad number '" + num + "'");
        }
        out.push_back(std::move(t));
        Advance(p - pos);
        continue;
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t p = pos;
        while (p < s.size() && (std::isalnum(static_cast<unsigned char>(s[p])) || s[p] == '_')) ++p;
        out.push_back({Token::kName, s.substr(pos, p - pos), 0, 0, line});
        Advance(p - pos);
        continue;
      }
      static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                         "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                         "]",  "{",  "}",  ",",  ".",  ":",  "|"};
      bool matched = false;
      for (const char* op : kOps) {
        size_t n = std::char_traits<char>::length(op);
        if (s.compare(pos, n, op) == 0) {
          out.push_back({Token::kOp, op, 0, 0, line});
          Advance(n);
          matched = true;
          break;
        }
      }
      if (!matched) return Err(std::string("unexpected character '") + c + "'");
    }
  }

  Status Run() {
    bool strip_next = false;  // previous tag ended with "-": strip leading whitespace
    bool trim_next = false;   // previous block/comment tag: drop one newline (trim_blocks)
    while (pos <= s.size()) {
      size_t open = s.find('{', pos);
      while (open != std::string::npos && open + 1 < s.size() && s[open + 1] != '{' && s[open + 1] != '%' &&
             s[open + 1] != '#')
        open = s.find('{', open + 1);
      if (open != std::string::npos && open + 1 >= s.size()) open = std::string::npos;
      std::string text = s.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      const int text_line = line;
      char kind = 0;
      bool minus = false, plus = false;
      if (open != std::string::npos) {
        kind = s[open + 1];
        minus = open + 2 < s.size() && s[open + 2] == '-';
        plus = open + 2 < s.size() && s[open + 2] == '+';
        if (minus) {
          while (!text.empty() && IsSpace(text.back())) text.pop_back();
        } else if (!plus && (kind == '%' || kind == '#')) {
          // lstrip_blocks: indentation between the line start and the tag goes.
          size_t nl = text.find_last_of('\n');
          bool line_start = nl != std::string::npos || pos == 0 || s[pos - 1] == '\n';
          size_t from = nl == std::string::npos ? 0 : nl + 1;
          bool only_ws = true;
          for (size_t k = from; k < text.size(); ++k)
            only_ws = only_ws && (text[k] == ' ' || text[k] == '\t');
          if (line_start && only_ws) text.erase(from);
        }
      }
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && IsSpace(text[k])) ++k;
        text.erase(0, k);
      } else if (trim_next) {
        if (text.rfind("\r\n", 0) == 0)
          text.erase(0, 2);
        else if (!text.empty() && text[0] == '\n')
          text.erase(0, 1);
      }
      strip_next = trim_next = false;
      if (open == std::string::npos) {
        PushText(std::move(text), text_line);
        Advance(s.size() - pos);
        break;
      }
      PushText(std::move(text), text_line);
      Advance(open - pos + 2 + ((minus || plus) ? 1 : 0));
      if (kind == '#') {
        size_t close = s.find("#}", pos);
        if (close == std::string::npos) return Err("unclosed comment");
        bool m = close > pos && s[close - 1] == '-';
        Advance(close + 2 - pos);
        strip_next = m;
        trim_next = !m;
        continue;
      }
      const int tag_line = line;
      out.push_back({kind == '{' ? Token::kVarBegin : Token::kBlockBegin, "", 0, 0, tag_line});
      size_t first_tok = out.size();
      KILN_ASSIGN_OR_RETURN(bool m, LexInside(kind == '{' ? "}}" : "%}"));
      out.push_back({kind == '{' ? Token::kVarEnd : Token::kBlockEnd, "", 0, 0, line});
      strip_next = m;
      trim_next = !m && kind == '%';
      // {% raw %}: everything up to {% endraw %} is text.
      if (kind == '%' && out.size() == first_tok + 2 && out[first_tok].kind == Token::kName &&
          out[first_tok].text == "raw") {
        out.resize(first_tok - 1);
        size_t end = s.find("endraw", pos);
        size_t tag = end == std::string::npos ? end : s.rfind("{%", end);
        if (tag == std::string::npos || tag < pos) return Err("{% raw %} without {% endraw %}");
        std::string raw = s.substr(pos, tag - pos);
        if (strip_next) {
          size_t k = 0;
          while (k < raw.size() && IsSpace(raw[k])) ++k;
          raw.erase(0, k);
        }
        if (s.compare(tag, 3, "{%-") == 0)
          while (!raw.empty() && IsSpace(raw.back())) raw.pop_back();
        PushText(std::move(raw), line);
        size_t close = s.find("%}", end);
        if (close == std::string::npos) return Err("unclosed {% endraw %}");
        strip_next = s[close - 1] == '-';
        trim_next = !strip_next;
        Advance(close + 2 - pos);
      }
    }
    out.push_back({Token::kEnd, "", 0, 0, line});
    return {};
  }
};

}  // namespace

Expected<std::vector<Token>> Lex(const std::string& source) {
  std::string src = source;
  if (!src.empty() && src.back() == '\n') src.pop_back();  // Jinja drops one trailing newline
  Lexer lx{src, 0, 1, {}};
  KILN_RETURN_IF_ERROR(lx.Run());
  return std::move(lx.out);
}

}  // namespace kiln::jinja
