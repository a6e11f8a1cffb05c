// libFuzzer target: a chat template (arbitrary bytes, as a model's tokenizer_config.json may carry)
// parsed and rendered by the bounded Jinja interpreter over a fixed conversation must come back as
// a string or an error, never a crash, a hang or unbounded memory (Limits: depth, loop
// iterations, output size).
#include <cstddef>
#include <cstdint>
#include <string>

#include "tokenizer/jinja.h"

namespace {

const kiln::jinja::Value& Context() {
  static const kiln::jinja::Value ctx = kiln::jinja::Value::parse(R"({
    "messages": [
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": "Hi \u00e9\u4e2d\ud83d\ude00 {{ not a tag }}"},
      {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "c1",
        "function": {"name": "lookup", "arguments": {"q": "x", "n": 3}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "[1, 2]"},
      {"role": "assistant", "content": "Done."},
      {"role": "user", "content": ["part", {"type": "text", "text": "two"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "lookup", "description": "d",
      "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
    "add_generation_prompt": true,
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": null,
    "enable_thinking": false
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  kiln::jinja::RenderOptions opt;
  opt.now = 1700000000;  // deterministic strftime_now
  auto tmpl = kiln::jinja::Parse(source, opt.limits);
  if (!tmpl.ok()) return 0;
  auto out = kiln::jinja::Render(**tmpl, Context(), opt);
  if (out.ok() && out->size() > opt.limits.max_output_bytes) __builtin_trap();  // the output bound holds
  return 0;
}
