// libFuzzer target: an OpenAI-style request body (arbitrary bytes, as a client may send) parsed
// for both endpoints must come back as a validated spec or an API error naming the problem, never
// a crash; a spec stays inside the limits it was parsed under.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "server/openai_protocol.h"

namespace {

// Words become ids by length; a chat template that joins the messages' JSON.
class FakeTokenizer final : public kiln::server::TokenizerAccess {
 public:
  kiln::Expected<std::vector<int32_t>> Encode(const std::string& text) const override {
    std::vector<int32_t> ids = {1};
    for (size_t i = 0; i < text.size(); i += 4) ids.push_back(2 + static_cast<int32_t>(text[i] & 0x7f));
    return ids;
  }
  kiln::Expected<std::string> ApplyChatTemplate(const std::string& messages_json) const override {
    if (messages_json.size() > 4096) return kiln::InvalidArgument("template: conversation too long");
    return "<chat>" + messages_json;
  }
  int64_t vocab_size() const override { return 160; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  kiln::server::ProtocolLimits limits;
  limits.served_model_name = "kiln-test";
  limits.max_seq_len = 256;
  limits.max_prompt_tokens = 200;
  static const FakeTokenizer tok;
  for (auto ep : {kiln::server::Endpoint::kCompletions, kiln::server::Endpoint::kChat}) {
    auto r = kiln::server::ParseGenerationRequest(ep, body, limits, tok);
    if (auto* e = std::get_if<kiln::server::ApiError>(&r)) {
      (void)kiln::server::ErrorBody(*e);
      if (e->http_status < 400 || e->http_status > 599 || e->message.empty()) __builtin_trap();
      continue;
    }
    const auto& spec = std::get<kiln::server::GenerationSpec>(r);
    if (spec.n < 1 || spec.n > limits.max_n || spec.prompts.empty() ||
        static_cast<int>(spec.prompts.size()) > limits.max_prompts || spec.top_logprobs > limits.max_logprobs)
      __builtin_trap();
    for (const auto& p : spec.prompts)
      if (static_cast<int64_t>(p.ids.size()) > limits.max_prompt_tokens) __builtin_trap();
  }
  return 0;
}
