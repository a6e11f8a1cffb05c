// kiln's public C++ API: open an engine directory, generate text with sampling parameters,
// stream tokens through a callback, read logits.
//
//   auto engine = kiln::Engine::Open("engines/stories260K").value();
//   kiln::GenerateOptions opts;  opts.max_tokens = 64;  opts.sampling.temperature = 0;
//   auto result = engine->Generate(engine->Encode("Once upon a time", true), opts,
//                                  [](int32_t, std::string_view delta) { std::cout << delta; return true; });
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/sampling_params.h"
#include "kiln/status.h"

namespace kiln {

struct EngineOptions {
  std::string device = "auto";  // auto (cuda when available) | cpu | cuda | cuda:N
  bool f32_activations = false;  // CUDA: compute in f32 (exactness runs); CPU is always f32
  int64_t max_seq_len = 0;       // 0 = min(model max positions, 8192)
  int block_size = 16;           // KV cache block size (tokens)
  int max_num_tokens = 512;      // tokens per forward step (longer prompts are prefilled in chunks)
  bool show_progress = false;    // weight-loading progress on stderr
};

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 256;              // tokens to generate
  std::vector<std::string> stop;     // stop strings (not included in the output)
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (without the prompt)
  std::string text;             // decoded generated text (empty when the engine has no tokenizer)
  std::string finish_reason;    // "stop" (EOS/stop string/token), "length", "cancelled"
  int prompt_tokens = 0;
  double ttft_ms = 0;           // time to first token
  double decode_tokens_per_s = 0;
};

// Called for every generated token with the new text it completes (may be empty while a
// UTF-8 character or a possible stop string is incomplete). Return false to cancel.
using StreamCallback = std::function<bool(int32_t token, std::string_view text_delta)>;

class Engine {
 public:
  static Expected<std::unique_ptr<Engine>> Open(const std::string& engine_dir, const EngineOptions& options = {});
  ~Engine();

  Expected<GenerateResult> Generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                    const StreamCallback& on_token = {});
  // Logits of every position, [tokens.size() * vocab_size] row-major f32. one_at_a_time runs
  // the decode path (one token per step through the KV cache) instead of one prefill.
  Expected<std::vector<float>> Logits(std::span<const int32_t> tokens, bool one_at_a_time);

  bool has_tokenizer() const;
  Expected<std::vector<int32_t>> Encode(std::string_view text, bool add_special) const;
  Expected<std::string> Decode(std::span<const int32_t> ids, bool skip_special = true) const;

  int64_t vocab_size() const;
  int32_t bos_id() const;
  std::vector<int32_t> eos_ids() const;
  int64_t max_seq_len() const;
  std::string device_name() const;
  double load_seconds() const;

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln
