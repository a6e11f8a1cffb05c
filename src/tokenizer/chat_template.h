// Chat templates: HF tokenizer_config.json "chat_template" (or chat_template.jinja/.json)
// rendered by kiln's bounded Jinja-subset interpreter (src/tokenizer/jinja*.cpp).
#pragma once
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/status.h"

namespace kiln {

namespace jinja {
struct Template;
}

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  std::time_t now = 0;  // what strftime_now() sees; 0 = the current time
  // More template variables (tools, documents, date_string, enable_thinking, ...). Ordered so
  // that tojson prints keys in the caller's order, as Python does.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  // Bounds that keep a hostile template from running away.
  int max_depth = 64;
  int64_t max_loop_iterations = 1000000;
  size_t max_output_bytes = 8u << 20;
};

class ChatTemplate {
 public:
  // `special_tokens`: bos_token, eos_token, unk_token, pad_token ... as strings.
  static Expected<ChatTemplate> Create(const std::string& source,
                                       nlohmann::json special_tokens = nlohmann::json::object());
  // From a folder (chat_template.jinja, chat_template.json, tokenizer_config.json, in that order),
  // or a file (*.jinja, chat_template.json, tokenizer_config.json). `name` picks one of several
  // named templates ("default" when empty). Special tokens come from tokenizer_config.json.
  static Expected<ChatTemplate> Load(const std::string& path, const std::string& name = "");

  // messages: [{"role": ..., "content": ...}, ...]. A raise_exception() in the template comes
  // back as an InvalidArgument status carrying the template's message.
  // Pass ordered_json (e.g. nlohmann::ordered_json::parse(request_body)) to keep key order in
  // tojson output; nlohmann::json sorts keys.
  Expected<std::string> Render(const nlohmann::ordered_json& messages,
                               const ChatTemplateOptions& opt = {}) const;
  Expected<std::string> Render(const nlohmann::json& messages, const ChatTemplateOptions& opt = {}) const {
    return Render(nlohmann::ordered_json::parse(messages.dump()), opt);
  }
  const std::string& source() const { return source_; }

 private:
  std::shared_ptr<const jinja::Template> tmpl_;
  std::string source_;
  nlohmann::json specials_;
};

}  // namespace kiln
