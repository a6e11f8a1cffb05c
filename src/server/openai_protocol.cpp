#include "server/openai_protocol.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "server/json_util.h"

namespace kiln::server {
namespace {

using nlohmann::json;

std::string TypeName(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "integer";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  return "object";
}

ApiError TypeError(const std::string& field, const std::string& want, const json& got) {
  return {422, "'" + field + "' must be " + want + ", got " + TypeName(got), "invalid_request_error", field,
          ""};
}
ApiError ValueError(const std::string& field, const std::string& message) {
  return {400, "'" + field + "' " + message, "invalid_request_error", field, ""};
}

// Reads optional fields of the body; the first error wins and later reads are no-ops.
class Fields {
 public:
  explicit Fields(const json& body) : body_(body) {}
  std::optional<ApiError> error;

  const json* Get(const char* name) {
    if (error) return nullptr;
    auto it = body_.find(name);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Bool(const char* name, bool& out) {
    const json* v = Get(name);
    if (!v) return false;
    if (!v->is_boolean()) return Fail(TypeError(name, "a boolean", *v));
    out = v->get<bool>();
    return true;
  }
  bool Int(const char* name, int64_t& out, int64_t lo, int64_t hi) {
    const json* v = Get(name);
    if (!v) return false;
    // 3.0 is accepted as 3 (some clients send every number as a float).
    if (v->is_number_float()) {
      double d = v->get<double>();
      if (!std::isfinite(d) || d != std::floor(d)) return Fail(TypeError(name, "an integer", *v));
      // |d| >= 2^62 is out of every range we use, and would not convert to int64 safely.
      if (std::fabs(d) >= 4.6e18 || d < static_cast<double>(lo) || d > static_cast<double>(hi))
        return Range(name, lo, hi);
      out = static_cast<int64_t>(d);
      return true;
    }
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();  // non-negative JSON integers land here (0 included)
      if (hi < 0 || u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo)))
        return Range(name, lo, hi);
      out = static_cast<int64_t>(u);
      return true;
    }
    if (!v->is_number_integer()) return Fail(TypeError(name, "an integer", *v));
    out = v->get<int64_t>();
    if (out < lo || out > hi) return Range(name, lo, hi);
    return true;
  }
  bool Float(const char* name, float& out, double lo, double hi) {
    const json* v = Get(name);
    if (!v) return false;
    if (!v->is_number()) return Fail(TypeError(name, "a number", *v));
    double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi)
      return Fail(ValueError(name, "must be between " + Num(lo) + " and " + Num(hi)));
    out = static_cast<float>(d);
    return true;
  }
  bool Fail(ApiError e) {
    if (!error) error = std::move(e);
    return false;
  }

 private:
  static std::string Num(double d) {
    json j = d;
    return j.dump();
  }
  bool Range(const char* name, int64_t lo, int64_t hi) {
    if (lo < -(int64_t{1} << 40) || hi > (int64_t{1} << 40)) return Fail(ValueError(name, "is out of range"));
    return Fail(ValueError(name, "must be between " + std::to_string(lo) + " and " + std::to_string(hi)));
  }
  const json& body_;
};

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

// Chat content: a string, or an array of {"type":"text","text":...} parts (joined).
std::optional<ApiError> NormalizeContent(json& message, size_t index) {
  const std::string field = "messages[" + std::to_string(index) + "].content";
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) {
    message["content"] = "";
    return std::nullopt;
  }
  if (it->is_string()) return std::nullopt;
  if (!it->is_array()) return TypeError(field, "a string or an array of content parts", *it);
  std::string text;
  for (const json& part : *it) {
    if (!part.is_object()) return TypeError(field, "an array of content parts", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string() || *type != "text")
      return ApiError{400, "'" + field + "': only content parts of type 'text' are supported",
                      "invalid_request_error", field, ""};
    auto t = part.find("text");
    if (t == part.end() || !t->is_string())
      return TypeError(field + ".text", "a string", t == part.end() ? json() : *t);
    text += t->get<std::string>();
  }
  *it = text;
  return std::nullopt;
}

std::optional<ApiError> ParseMessages(const json& body, const TokenizerAccess& tok, Prompt& out) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null())
    return ApiError{422, "'messages' is required", "invalid_request_error", "messages", ""};
  if (!it->is_array()) return TypeError("messages", "an array", *it);
  if (it->empty()) return ValueError("messages", "must not be empty");
  json messages = json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string field = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return TypeError(field, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return TypeError(field + ".role", "a string", role == m.end() ? json() : *role);
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "developer" && r != "tool")
      return ValueError(field + ".role", "must be one of system, developer, user, assistant, tool");
    json msg = {{"role", r == "developer" ? "system" : r}};
    if (auto c = m.find("content"); c != m.end()) msg["content"] = *c;
    if (auto err = NormalizeContent(msg, i)) return err;
    messages.push_back(std::move(msg));
  }
  auto rendered = tok.ApplyChatTemplate(messages.dump());
  if (!rendered.ok())
    return ApiError{400, "chat template: " + rendered.status().message(), "invalid_request_error", "messages",
                    ""};
  auto ids = tok.Encode(*rendered);
  if (!ids.ok()) return ApiError{400, "tokenizing the conversation: " + ids.status().message()};
  out.ids = std::move(*ids);
  return std::nullopt;
}

std::optional<ApiError> CheckIds(const json& arr, const std::string& field, int64_t vocab,
                                 std::vector<int32_t>& out) {
  if (arr.empty()) return ValueError(field, "must not be empty");
  out.reserve(arr.size());
  for (const json& t : arr) {
    if (!t.is_number_integer() && !t.is_number_unsigned())
      return TypeError(field, "an array of token ids", t);
    int64_t id = t.is_number_unsigned()
                     ? static_cast<int64_t>(std::min<uint64_t>(t.get<uint64_t>(), INT64_MAX))
                     : t.get<int64_t>();
    if (id < 0 || id >= vocab)
      return ValueError(
          field, "holds token id " + std::to_string(id) + " outside [0, " + std::to_string(vocab) + ")");
    out.push_back(static_cast<int32_t>(id));
  }
  return std::nullopt;
}

// prompt: string | [string] | [int] | [[int]]
std::optional<ApiError> ParsePrompts(const json& body, const TokenizerAccess& tok,
                                     const ProtocolLimits& limits, std::vector<Prompt>& out) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null())
    return ApiError{422, "'prompt' is required", "invalid_request_error", "prompt", ""};
  const json& p = *it;
  auto encode = [&](const std::string& text) -> std::optional<ApiError> {
    auto ids = tok.Encode(text);
    if (!ids.ok())
      return ApiError{400, "tokenizing the prompt: " + ids.status().message(), "invalid_request_error",
                      "prompt", ""};
    out.push_back({std::move(*ids), text});
    return std::nullopt;
  };
  if (p.is_string()) return encode(p.get<std::string>());
  if (!p.is_array()) return TypeError("prompt", "a string, an array of strings or an array of token ids", p);
  if (p.empty()) return ValueError("prompt", "must not be empty");
  if (p.size() > static_cast<size_t>(limits.max_prompts) && !p[0].is_number())
    return ValueError("prompt", "holds more than " + std::to_string(limits.max_prompts) + " prompts");
  if (p[0].is_number()) {
    Prompt one;
    if (auto e = CheckIds(p, "prompt", tok.vocab_size(), one.ids)) return e;
    out.push_back(std::move(one));
    return std::nullopt;
  }
  for (size_t i = 0; i < p.size(); ++i) {
    const std::string field = "prompt[" + std::to_string(i) + "]";
    if (p[i].is_string()) {
      if (auto e = encode(p[i].get<std::string>())) return e;
    } else if (p[i].is_array()) {
      Prompt one;
      if (auto e = CheckIds(p[i], field, tok.vocab_size(), one.ids)) return e;
      out.push_back(std::move(one));
    } else {
      return TypeError(field, "a string or an array of token ids", p[i]);
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ParseStop(Fields& f, const ProtocolLimits& limits, std::vector<std::string>& out) {
  const json* v = f.Get("stop");
  if (!v) return f.error;
  if (v->is_string()) {
    if (!v->get<std::string>().empty()) out.push_back(v->get<std::string>());
    return std::nullopt;
  }
  if (!v->is_array()) return TypeError("stop", "a string or an array of strings", *v);
  if (v->size() > static_cast<size_t>(limits.max_stop))
    return ValueError("stop", "holds more than " + std::to_string(limits.max_stop) + " strings");
  for (const json& s : *v) {
    if (!s.is_string()) return TypeError("stop", "an array of strings", s);
    if (!s.get<std::string>().empty()) out.push_back(s.get<std::string>());
  }
  return std::nullopt;
}

std::optional<ApiError> ParseSampling(Fields& f, GenerationSpec& spec) {
  SamplingParams& s = spec.base.sampling;
  f.Float("temperature", s.temperature, 0.0, 100.0);
  f.Float("top_p", s.top_p, 0.0, 1.0);
  if (!f.error && s.top_p <= 0.0f) return ValueError("top_p", "must be in (0, 1]");
  int64_t top_k = 0;
  if (f.Int("top_k", top_k, -1, kIntMax)) s.top_k = top_k < 0 ? 0 : static_cast<int32_t>(top_k);  // -1 = off
  f.Float("min_p", s.min_p, 0.0, 1.0);
  f.Float("presence_penalty", s.presence_penalty, -2.0, 2.0);
  f.Float("frequency_penalty", s.frequency_penalty, -2.0, 2.0);
  f.Float("repetition_penalty", s.repetition_penalty, 0.0, 100.0);
  if (!f.error && s.repetition_penalty <= 0.0f) return ValueError("repetition_penalty", "must be > 0");
  int64_t seed = 0;
  if (f.Int("seed", seed, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    s.seed = static_cast<uint64_t>(seed);
    spec.seed_given = true;
  }
  if (f.error) return f.error;
  Status st = s.Validate();
  if (!st.ok()) return ApiError{400, st.message()};
  return std::nullopt;
}

}  // namespace

std::string ErrorBody(const ApiError& e) {
  json err = {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json() : json(e.param)},
              {"code", e.code.empty() ? json() : json(e.code)}};
  return Dump(json{{"error", err}});
}

std::variant<GenerationSpec, ApiError> ParseGenerationRequest(Endpoint endpoint, const std::string& body_text,
                                                              const ProtocolLimits& limits,
                                                              const TokenizerAccess& tok) {
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return ApiError{400, "the request body is not valid JSON"};
  if (!body.is_object()) return ApiError{400, "the request body must be a JSON object"};
  GenerationSpec spec;
  spec.endpoint = endpoint;
  const bool chat = endpoint == Endpoint::kChat;
  Fields f(body);

  // model: optional; when given it must be ours.
  if (auto it = body.find("model"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return TypeError("model", "a string", *it);
    spec.model = it->get<std::string>();
    if (spec.model != limits.served_model_name)
      return ApiError{404,
                      "The model '" + spec.model + "' does not exist (this server serves '" +
                          limits.served_model_name + "')",
                      "invalid_request_error", "model", "model_not_found"};
  }
  spec.model = limits.served_model_name;

  f.Bool("stream", spec.stream);
  if (const json* so = f.Get("stream_options")) {
    if (!so->is_object()) return TypeError("stream_options", "an object", *so);
    if (!spec.stream) return ValueError("stream_options", "is only allowed when 'stream' is true");
    if (auto iu = so->find("include_usage"); iu != so->end() && !iu->is_null()) {
      if (!iu->is_boolean()) return TypeError("stream_options.include_usage", "a boolean", *iu);
      spec.include_usage = iu->get<bool>();
    }
  }
  int64_t n = 1;
  f.Int("n", n, 1, limits.max_n);
  spec.n = static_cast<int>(n);
  int64_t best_of = n;
  if (f.Int("best_of", best_of, 1, limits.max_n) && best_of != n)
    return ValueError("best_of", "is not supported (must equal n)");

  // max_tokens (chat also: max_completion_tokens); checked against the context below.
  int64_t max_tokens = -1;
  if (!f.Int("max_tokens", max_tokens, std::numeric_limits<int64_t>::min(),
             std::numeric_limits<int64_t>::max()) &&
      chat)
    f.Int("max_completion_tokens", max_tokens, std::numeric_limits<int64_t>::min(),
          std::numeric_limits<int64_t>::max());
  if (f.error) return *f.error;
  if (max_tokens != -1 && max_tokens < 1)
    return ValueError(body.contains("max_tokens") ? "max_tokens" : "max_completion_tokens",
                      "must be at least 1");

  if (chat) {
    bool want = false;
    f.Bool("logprobs", want);
    int64_t top = 0;
    bool top_given = f.Int("top_logprobs", top, 0, limits.max_logprobs);
    if (f.error) return *f.error;
    if (top_given && top > 0 && !want) return ValueError("top_logprobs", "requires 'logprobs' to be true");
    spec.logprobs = want;
    spec.top_logprobs = static_cast<int>(top);
  } else {
    int64_t lp = 0;
    if (f.Int("logprobs", lp, 0, limits.max_logprobs)) {
      spec.logprobs = true;
      spec.top_logprobs = static_cast<int>(lp);
    }
    f.Bool("echo", spec.echo);
    if (f.error) return *f.error;
    if (spec.echo && spec.stream) return ValueError("echo", "is not supported with streaming");
    if (const json* suffix = f.Get("suffix");
        suffix && !(suffix->is_string() && suffix->get<std::string>().empty()))
      return ValueError("suffix", "is not supported");
  }
  if (auto e = ParseSampling(f, spec)) return *e;
  if (auto e = ParseStop(f, limits, spec.base.stop)) return *e;
  bool ignore_eos = false;
  if (f.Bool("ignore_eos", ignore_eos)) spec.base.ignore_eos = ignore_eos;
  if (const json* ids = f.Get("stop_token_ids")) {
    if (!ids->is_array()) return TypeError("stop_token_ids", "an array of token ids", *ids);
    if (!ids->empty())
      if (auto e = CheckIds(*ids, "stop_token_ids", tok.vocab_size(), spec.base.stop_token_ids)) return *e;
  }
  if (const json* u = f.Get("user"); u && !u->is_string()) return TypeError("user", "a string", *u);
  if (f.error) return *f.error;

  if (chat) {
    Prompt p;
    if (auto e = ParseMessages(body, tok, p)) return *e;
    spec.prompts.push_back(std::move(p));
  } else {
    if (auto e = ParsePrompts(body, tok, limits, spec.prompts)) return *e;
  }
  size_t longest = 0;
  for (const Prompt& p : spec.prompts) longest = std::max(longest, p.ids.size());
  if (longest == 0) return ValueError(chat ? "messages" : "prompt", "produced no tokens");
  if (static_cast<int64_t>(longest) > limits.max_prompt_tokens)
    return ApiError{413,
                    "the prompt has " + std::to_string(longest) + " tokens; this server accepts at most " +
                        std::to_string(limits.max_prompt_tokens),
                    "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded"};
  const int64_t room = limits.max_seq_len - static_cast<int64_t>(longest);
  if (room < 1)
    return ApiError{413,
                    "the prompt has " + std::to_string(longest) +
                        " tokens, leaving no room in the context of " + std::to_string(limits.max_seq_len),
                    "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded"};
  if (max_tokens == -1) {
    max_tokens = chat ? room : std::min<int64_t>(16, room);  // OpenAI defaults
  } else if (max_tokens > room) {
    return ApiError{400,
                    "This model's maximum context length is " + std::to_string(limits.max_seq_len) +
                        " tokens; the prompt has " + std::to_string(longest) + " and max_tokens asks for " +
                        std::to_string(max_tokens),
                    "invalid_request_error", "max_tokens", "context_length_exceeded"};
  }
  spec.base.max_tokens = static_cast<int>(max_tokens);
  spec.base.logprobs = spec.top_logprobs;
  spec.base.return_logprob = spec.logprobs;  // a log-softmax over the vocabulary per token, only when asked
  spec.base.detokenize = true;
  return spec;
}

}  // namespace kiln::server
