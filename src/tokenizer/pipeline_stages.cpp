// Normalizers, pre-tokenizers and decoders of the pipeline tokenizer (HF tokenizers semantics).
#include <utf8proc.h>

#include <cstdlib>

#include "tokenizer/pipeline.h"
#include "tokenizer/text_util.h"

namespace kiln::tok {
namespace {

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

std::string Utf8procMap(const std::string& s, int options) {
  if (s.empty()) return s;
  utf8proc_uint8_t* dst = nullptr;
  utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                   static_cast<utf8proc_ssize_t>(s.size()), &dst, static_cast<utf8proc_option_t>(options));
  if (n < 0 || !dst) return s;  // invalid UTF-8: leave untouched
  std::string out(reinterpret_cast<char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

bool IsSpaceChar(uint32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
         (cp >= 0x80 && utf8proc_category(static_cast<utf8proc_int32_t>(cp)) == UTF8PROC_CATEGORY_ZS) ||
         cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

// Splits one piece by the given match ranges according to an HF SplitDelimiterBehavior.
void SplitPiece(const PreToken& p, const std::vector<std::pair<size_t, size_t>>& matches,
                SplitBehavior behavior, bool invert, std::vector<PreToken>* out) {
  struct Part {
    size_t b, e;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t pos = 0;
  for (auto [b, e] : matches) {
    if (b > pos) parts.push_back({pos, b, invert});
    parts.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < p.text.size()) parts.push_back({pos, p.text.size(), invert});
  std::vector<Part> merged;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& x = parts[i];
    switch (behavior) {
      case SplitBehavior::kRemoved:
        if (!x.is_match) merged.push_back(x);
        break;
      case SplitBehavior::kIsolated:
        merged.push_back(x);
        break;
      case SplitBehavior::kMergedWithPrevious:
        if (x.is_match && !merged.empty())
          merged.back().e = x.e;
        else
          merged.push_back(x);
        break;
      case SplitBehavior::kMergedWithNext:
        if (!merged.empty() && merged.back().is_match)
          merged.back().e = x.e, merged.back().is_match = x.is_match;
        else
          merged.push_back(x);
        break;
      case SplitBehavior::kContiguous:
        if (x.is_match && !merged.empty() && merged.back().is_match)
          merged.back().e = x.e;
        else
          merged.push_back(x);
        break;
    }
  }
  for (const Part& x : merged)
    if (x.e > x.b) out->push_back({p.text.substr(x.b, x.e - x.b), p.at_start && x.b == 0});
}

std::vector<std::pair<size_t, size_t>> LiteralMatches(std::string_view text, std::string_view lit) {
  std::vector<std::pair<size_t, size_t>> m;
  if (lit.empty()) return m;
  for (size_t pos = text.find(lit); pos != std::string_view::npos; pos = text.find(lit, pos + lit.size()))
    m.emplace_back(pos, pos + lit.size());
  return m;
}

}  // namespace

std::string ApplyNormalizers(const std::vector<NormalizerOp>& ops, std::string text) {
  for (const NormalizerOp& op : ops) {
    switch (op.kind) {
      case NormalizerOp::kNfc:
        text = Utf8procMap(text, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        break;
      case NormalizerOp::kNfd:
        text = Utf8procMap(text, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
        break;
      case NormalizerOp::kNfkc:
        text = Utf8procMap(text, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
        break;
      case NormalizerOp::kNfkd:
        text = Utf8procMap(text, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
        break;
      case NormalizerOp::kLowercase: {
        std::string out;
        for (size_t i = 0; i < text.size();) {
          size_t at = i;
          uint32_t cp = DecodeUtf8(text, i);
          if (cp == 0xFFFD && i == at + 1) {
            out += text[at];  // keep invalid bytes as they are
            continue;
          }
          out += EncodeUtf8(static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
        }
        text = std::move(out);
        break;
      }
      case NormalizerOp::kPrepend:
        if (!text.empty()) text = op.a + text;
        break;
      case NormalizerOp::kReplace:
        if (op.regex) {
          std::string out;
          size_t pos = 0;
          for (auto [b, e] : op.regex->FindAll(text)) {
            out.append(text, pos, b - pos);
            out += op.b;
            pos = e;
          }
          out.append(text, pos, std::string::npos);
          text = std::move(out);
        } else {
          text = ReplaceAll(text, op.a, op.b);
        }
        break;
      case NormalizerOp::kStrip: {
        size_t b = 0, e = text.size();
        if (op.left)
          while (b < e && IsSpaceChar(static_cast<unsigned char>(text[b]))) ++b;
        if (op.right)
          while (e > b && IsSpaceChar(static_cast<unsigned char>(text[e - 1]))) --e;
        text = text.substr(b, e - b);
        break;
      }
    }
  }
  return text;
}

std::vector<PreToken> ApplyPreTokenizers(const std::vector<PreTokOp>& ops, std::vector<PreToken> pieces) {
  for (const PreTokOp& op : ops) {
    std::vector<PreToken> next;
    next.reserve(pieces.size() * 2);
    for (PreToken& p : pieces) {
      switch (op.kind) {
        case PreTokOp::kSplit:
          SplitPiece(p, op.regex ? op.regex->FindAll(p.text) : LiteralMatches(p.text, op.literal),
                     op.behavior, op.invert, &next);
          break;
        case PreTokOp::kByteLevel: {
          if (op.add_prefix_space && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
          std::vector<PreToken> split;
          if (op.regex)
            SplitPiece(p, op.regex->FindAll(p.text), SplitBehavior::kIsolated, false, &split);
          else
            split.push_back(std::move(p));
          for (PreToken& s : split) next.push_back({BytesToByteLevel(s.text), s.at_start});
          break;
        }
        case PreTokOp::kMetaspace: {
          std::string t = ReplaceAll(p.text, " ", op.replacement);
          bool starts = t.compare(0, op.replacement.size(), op.replacement) == 0;
          if (!t.empty() && !starts &&
              (op.prepend == PreTokOp::kAlways || (op.prepend == PreTokOp::kFirst && p.at_start)))
            t.insert(0, op.replacement);
          PreToken q{std::move(t), p.at_start};
          if (op.split)
            SplitPiece(q, LiteralMatches(q.text, op.replacement), SplitBehavior::kMergedWithNext, false,
                       &next);
          else
            next.push_back(std::move(q));
          break;
        }
        case PreTokOp::kDigits:
        case PreTokOp::kWhitespaceSplit:
          SplitPiece(p, op.regex->FindAll(p.text),
                     op.kind == PreTokOp::kDigits ? SplitBehavior::kIsolated : SplitBehavior::kRemoved, false,
                     &next);
          break;
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

std::string ApplyDecoders(const std::vector<DecoderOp>& ops, std::vector<std::string> tokens) {
  for (const DecoderOp& op : ops) {
    switch (op.kind) {
      case DecoderOp::kByteLevel: {
        std::string all;
        for (const std::string& t : tokens)
          if (!ByteLevelToBytes(t, &all)) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderOp::kReplace:
        for (std::string& t : tokens) t = ReplaceAll(t, op.a, op.b);
        break;
      case DecoderOp::kByteFallback: {
        // Runs of <0xXX> pieces become their bytes when those form valid UTF-8, else one
        // U+FFFD per piece (HF semantics).
        std::vector<std::string> out;
        std::string bytes;
        size_t run = 0;
        auto flush = [&]() {
          if (run == 0) return;
          if (IsValidUtf8(bytes)) {
            out.push_back(bytes);
          } else {
            for (size_t k = 0; k < run; ++k) out.push_back("\xEF\xBF\xBD");
          }
          bytes.clear();
          run = 0;
        };
        for (std::string& t : tokens) {
          int b = ParseBytePiece(t);
          if (b >= 0) {
            bytes += static_cast<char>(b);
            ++run;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecoderOp::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderOp::kStrip:
        for (std::string& t : tokens) {
          size_t b = 0, e = t.size();
          const std::string& c = op.a;
          for (int k = 0; k < op.start && !c.empty() && t.compare(b, c.size(), c) == 0 && b + c.size() <= e;
               ++k)
            b += c.size();
          for (int k = 0;
               k < op.stop && !c.empty() && e >= b + c.size() && t.compare(e - c.size(), c.size(), c) == 0;
               ++k)
            e -= c.size();
          t = t.substr(b, e - b);
        }
        break;
      case DecoderOp::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          // HF: in the first token every replacement character is dropped, not just one.
          std::string t = ReplaceAll(tokens[i], op.replacement, i == 0 && op.strip_first_space ? "" : " ");
          tokens[i] = std::move(t);
        }
        break;
    }
  }
  std::string all;
  for (const std::string& t : tokens) all += t;
  return all;
}

std::string CleanUpTokenizationSpaces(std::string t) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) t = ReplaceAll(t, from, to);
  return t;
}

}  // namespace kiln::tok
