#include "server/openai_response.h"

namespace kiln::server {

using nlohmann::json;

std::string TokenTexts::Get(int32_t id) {
  std::lock_guard lock(mu_);
  auto it = cache_.find(id);
  if (it != cache_.end()) return it->second;
  auto text = ex_.Decode(std::span<const int32_t>(&id, 1));
  std::string s = text.ok() ? *text : std::string();
  cache_.emplace(id, s);
  return s;
}

void Accumulate(ChoiceResult& r, const RequestEvent& ev, bool want_logprobs, TokenTexts& texts) {
  if (ev.token >= 0) {
    r.tokens.push_back(ev.token);
    if (want_logprobs) {
      LogprobEntry e{texts.Get(ev.token), ev.logprob, {}};
      for (const TokenLogprob& t : ev.top_logprobs) e.top.emplace_back(texts.Get(t.token), t.logprob);
      r.logprobs.push_back(std::move(e));
    }
  }
  r.text += ev.text_delta;
  if (ev.finished) {
    r.finish_reason = ev.finish_reason.empty() ? "stop" : ev.finish_reason;
    r.error = ev.error;
    r.stats = ev.stats;
  }
}

json FinishReason(const std::string& reason) {
  if (reason.empty()) return nullptr;
  if (reason == "cancelled") return "abort";
  return reason;
}

json Usage(int prompt_tokens, int completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

static json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

json LogprobsJson(Endpoint endpoint, const std::vector<LogprobEntry>& entries, size_t text_offset) {
  if (endpoint == Endpoint::kChat) {
    json content = json::array();
    for (const LogprobEntry& e : entries) {
      json top = json::array();
      for (const auto& [tok, lp] : e.top)
        top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", Bytes(tok)}});
      content.push_back(
          {{"token", e.token}, {"logprob", e.logprob}, {"bytes", Bytes(e.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(e.token);
    lps.push_back(e.logprob);
    json top = json::object();
    for (const auto& [tok, lp] : e.top) top[tok] = lp;  // same-text tokens collapse, as in OpenAI
    tops.push_back(top);
    offsets.push_back(text_offset);
    text_offset += e.token.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json FullResponse(const GenerationSpec& spec, const std::string& id, int64_t created,
                  const std::vector<ChoiceResult>& choices, int prompt_tokens, int completion_tokens) {
  const bool chat = spec.endpoint == Endpoint::kChat;
  json out = {{"id", id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", created},
              {"model", spec.model},
              {"system_fingerprint", nullptr}};
  json arr = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    std::string prefix = spec.echo ? spec.prompts[i / spec.n].text : std::string();
    json lp = spec.logprobs ? LogprobsJson(spec.endpoint, c.logprobs, prefix.size()) : json();
    json choice = {{"index", i}, {"finish_reason", FinishReason(c.finish_reason)}, {"logprobs", lp}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      choice["text"] = prefix + c.text;
    arr.push_back(std::move(choice));
  }
  out["choices"] = std::move(arr);
  out["usage"] = Usage(prompt_tokens, completion_tokens);
  return out;
}

json StreamChunk(const GenerationSpec& spec, const std::string& id, int64_t created, int choice,
                 const std::string& delta, const std::vector<LogprobEntry>* logprobs, size_t text_offset,
                 const std::string* finish_reason, bool role_only) {
  const bool chat = spec.endpoint == Endpoint::kChat;
  json c = {
      {"index", choice},
      {"logprobs", logprobs && spec.logprobs ? LogprobsJson(spec.endpoint, *logprobs, text_offset) : json()},
      {"finish_reason", finish_reason ? FinishReason(*finish_reason) : json()}};
  if (chat) {
    json d = json::object();
    if (role_only) {
      d["role"] = "assistant";
      d["content"] = "";
    } else if (!delta.empty() || !finish_reason) {
      d["content"] = delta;
    }
    c["delta"] = std::move(d);
  } else {
    c["text"] = delta;
  }
  json out = {{"id", id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", spec.model},
              {"system_fingerprint", nullptr},
              {"choices", json::array({c})}};
  if (spec.include_usage) out["usage"] = nullptr;
  return out;
}

json UsageChunk(const GenerationSpec& spec, const std::string& id, int64_t created, int prompt_tokens,
                int completion_tokens) {
  const bool chat = spec.endpoint == Endpoint::kChat;
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", spec.model},
          {"system_fingerprint", nullptr},
          {"choices", json::array()},
          {"usage", Usage(prompt_tokens, completion_tokens)}};
}

}  // namespace kiln::server
