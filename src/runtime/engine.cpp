// Engine: the single-request path (CLI run/chat/logits, the C++ API). The in-flight batching
// executor reuses the same Model, KvCache and StepBuilder.
#include "kiln/engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/device_sampling.h"
#include "runtime/kv_cache.h"
#include "runtime/open_backend.h"
#include "runtime/special_tokens.h"
#include "runtime/step_builder.h"
#include "runtime/stop_matcher.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

struct Engine::Impl {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<KvCache> kv;
  StepBuilder steps;
  std::vector<int32_t> block_table;  // this path owns the whole cache: blocks 0..n-1 in order
  int64_t max_seq_len = 0;
  int max_num_tokens = 512;
  double load_seconds = 0;
  // Sampling on the device (unless KILN_HOST_SAMPLING=1): a step copies back one id.
  bool device_sampling_on = true;
  DeviceSampling sampling;
  DeviceBuffer greedy_id;  // i32 [1]

  // Runs tokens [begin, end) of `seq` (positions begin..end-1) and returns host logits of
  // the last token (want_all: of every token, appended to *all). With `device`, the last
  // token's logits stay on the device: *device views them and *out is untouched.
  Status Step(std::span<const int32_t> seq, int64_t begin, int64_t end, bool want_all, std::vector<float>* out,
              Tensor* device = nullptr) {
    const int64_t V = model->config().vocab_size;
    for (int64_t s = begin; s < end; s += max_num_tokens) {
      const int64_t e = std::min<int64_t>(end, s + max_num_tokens);
      SequenceChunk chunk;
      chunk.tokens = seq.subspan(s, e - s);
      chunk.start_pos = static_cast<int32_t>(s);
      chunk.block_table = block_table;
      chunk.logits = want_all ? LogitsWanted::kAll : (e == end ? LogitsWanted::kLast : LogitsWanted::kNone);
      KILN_ASSIGN_OR_RETURN(StepInputs in, steps.Build(std::span<const SequenceChunk>(&chunk, 1), kv->block_size()));
      KILN_ASSIGN_OR_RETURN(Tensor logits, model->Forward(in, kv->layers()));
      if (in.n_logits > 0 && device && !want_all) {
        *device = logits;
      } else if (in.n_logits > 0) {
        const size_t old = want_all ? out->size() : 0;
        out->resize(old + static_cast<size_t>(in.n_logits) * V);
        KILN_RETURN_IF_ERROR(backend->CopyToHostF32(out->data() + old, logits));
      }
    }
    return Status::Ok();
  }

  Status CheckTokens(std::span<const int32_t> ids) const {
    const int64_t V = model->config().vocab_size;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= V)
        return InvalidArgument("token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                               " is outside the vocabulary [0, " + std::to_string(V) + ")");
    return Status::Ok();
  }
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Expected<std::unique_ptr<Engine>> Engine::Open(const std::string& dir, const EngineOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto impl = std::make_unique<Impl>();
  KILN_ASSIGN_OR_RETURN(EngineConfig cfg, ReadEngineConfig(dir));
  KILN_ASSIGN_OR_RETURN(impl->backend, OpenBackend(ResolveDevice(o.device), cfg.dtype, o.f32_activations));
  KILN_ASSIGN_OR_RETURN(impl->model, Model::Load(dir, *impl->backend, StderrLoadProgress(o.show_progress)));
  const ModelConfig& mc = impl->model->config();
  if (o.block_size <= 0 || o.block_size > 1024) return InvalidArgument("--block-size must be in [1, 1024]");
  if (o.max_num_tokens <= 0) return InvalidArgument("--max-num-tokens must be positive");
  impl->max_seq_len = o.max_seq_len > 0 ? o.max_seq_len : std::min<int64_t>(mc.max_position_embeddings, 8192);
  if (impl->max_seq_len > mc.max_position_embeddings && mc.position == "learned")
    return InvalidArgument("--max-seq-len " + std::to_string(impl->max_seq_len) + " exceeds the model's " +
                           std::to_string(mc.max_position_embeddings) + " learned positions");
  impl->max_num_tokens = static_cast<int>(std::min<int64_t>(o.max_num_tokens, impl->max_seq_len));
  const int64_t n_blocks = (impl->max_seq_len + o.block_size - 1) / o.block_size;
  KILN_ASSIGN_OR_RETURN(impl->kv, KvCache::Create(*impl->backend, mc, n_blocks, o.block_size));
  impl->block_table.resize(n_blocks);
  for (int64_t i = 0; i < n_blocks; ++i) impl->block_table[i] = static_cast<int32_t>(i);
  KILN_RETURN_IF_ERROR(impl->model->Reserve(impl->max_num_tokens, impl->max_num_tokens));
  KILN_RETURN_IF_ERROR(impl->steps.Reserve(*impl->backend, impl->max_num_tokens, 1, static_cast<int>(n_blocks)));
  auto tok = LoadTokenizer(dir);
  if (tok.ok()) impl->tokenizer = std::move(tok).value();
  impl->device_sampling_on = DeviceSamplingEnabled();
  if (impl->device_sampling_on) {
    KILN_RETURN_IF_ERROR(impl->sampling.Reserve(*impl->backend, 1, mc.vocab_size));
    KILN_ASSIGN_OR_RETURN(impl->greedy_id, AllocBuffer(*impl->backend, sizeof(int32_t)));
  }
  impl->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Expected<GenerateResult> Engine::Generate(std::span<const int32_t> prompt_in, const GenerateOptions& o,
                                          const StreamCallback& on_token) {
  Impl& m = *impl_;
  KILN_RETURN_IF_ERROR(o.sampling.Validate());
  if (o.max_tokens < 0) return InvalidArgument("max_tokens must be >= 0");
  std::vector<int32_t> seq(prompt_in.begin(), prompt_in.end());
  if (seq.empty()) {
    if (bos_id() < 0) return InvalidArgument("empty prompt and the model has no BOS token to start from");
    seq.push_back(bos_id());
  }
  KILN_RETURN_IF_ERROR(m.CheckTokens(seq));
  if (static_cast<int64_t>(seq.size()) > m.max_seq_len)
    return InvalidArgument("prompt of " + std::to_string(seq.size()) + " tokens does not fit max_seq_len " +
                           std::to_string(m.max_seq_len));
  GenerateResult r;
  r.prompt_tokens = static_cast<int>(seq.size());
  const size_t n_prompt = seq.size();
  std::vector<int32_t> eos = o.ignore_eos ? std::vector<int32_t>{} : eos_ids();
  eos.insert(eos.end(), o.stop_token_ids.begin(), o.stop_token_ids.end());
  Sampler sampler(o.sampling);
  std::unique_ptr<IncrementalDetokenizer> detok;
  if (m.tokenizer) {
    detok = std::make_unique<IncrementalDetokenizer>(*m.tokenizer, /*skip_special=*/true);
    detok->SetPrompt(seq);
  }
  StopMatcher stops(o.stop);
  std::vector<float> logits;  // [vocab] host logits (host sampling only)
  Tensor dev_logits;          // [1, vocab] device logits (device sampling)
  Tensor* dev = m.device_sampling_on ? &dev_logits : nullptr;
  const bool greedy = IsPlainGreedy(o.sampling, false);
  // The next token from this step's logits: the device argmax for plain greedy, else the
  // sampling chain on the device, or the host Sampler over host logits.
  auto sample = [&](std::span<const int32_t> prompt, std::span<const int32_t> generated,
                    uint64_t step) -> Expected<int32_t> {
    if (!dev) return sampler.Sample(logits, prompt, generated, step);
    int32_t id = 0;
    if (greedy) {
      m.backend->ArgmaxRows(Tensor(m.greedy_id.get(), DType::kI32, {1}), dev_logits);
      KILN_RETURN_IF_ERROR(m.backend->CopyToHost(&id, m.greedy_id.get(), sizeof(int32_t)));
      return id;
    }
    m.sampling.Clear();
    m.sampling.AddRow(o.sampling, prompt, generated, step, false, 0);
    KILN_RETURN_IF_ERROR(m.sampling.Run(dev_logits));
    return m.sampling.id(0);
  };
  auto t0 = std::chrono::steady_clock::now();
  KILN_RETURN_IF_ERROR(m.Step(seq, 0, static_cast<int64_t>(seq.size()), false, &logits, dev));
  auto t_first = std::chrono::steady_clock::now();
  r.finish_reason = "length";
  for (int i = 0; i < o.max_tokens; ++i) {
    const std::span<const int32_t> prompt(seq.data(), n_prompt);
    const std::span<const int32_t> generated(seq.data() + n_prompt, seq.size() - n_prompt);
    KILN_ASSIGN_OR_RETURN(const int32_t next, sample(prompt, generated, static_cast<uint64_t>(i)));
    if (i == 0) t_first = std::chrono::steady_clock::now();
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) {
      r.finish_reason = "stop";
      break;
    }
    seq.push_back(next);
    r.tokens.push_back(next);
    std::string delta;
    bool stopped = false;
    if (detok) stopped = stops.Feed(detok->Push(next), &delta);
    if (on_token && !on_token(next, delta)) {
      r.finish_reason = "cancelled";
      break;
    }
    if (stopped) {
      r.finish_reason = "stop";
      break;
    }
    if (i + 1 == o.max_tokens) break;
    // The new token would sit at position seq.size() - 1: past the last position, stop.
    if (static_cast<int64_t>(seq.size()) > m.max_seq_len) break;  // "length"
    KILN_RETURN_IF_ERROR(m.Step(seq, static_cast<int64_t>(seq.size()) - 1, static_cast<int64_t>(seq.size()), false,
                                &logits, dev));
  }
  if (detok && r.finish_reason != "stop" && r.finish_reason != "cancelled") {
    std::string tail;
    stops.Feed(detok->Flush(), &tail);
    std::string rest = stops.Finish();
    if (on_token && !(tail + rest).empty()) on_token(-1, tail + rest);
  }
  r.text = stops.text();
  auto t_end = std::chrono::steady_clock::now();
  r.ttft_ms = std::chrono::duration<double, std::milli>(t_first - t0).count();
  const double decode_s = std::chrono::duration<double>(t_end - t_first).count();
  if (r.tokens.size() > 1 && decode_s > 0) r.decode_tokens_per_s = (r.tokens.size() - 1) / decode_s;
  return r;
}

Expected<std::vector<float>> Engine::Logits(std::span<const int32_t> tokens, bool one_at_a_time) {
  Impl& m = *impl_;
  if (tokens.empty()) return InvalidArgument("no tokens given");
  KILN_RETURN_IF_ERROR(m.CheckTokens(tokens));
  if (static_cast<int64_t>(tokens.size()) > m.max_seq_len)
    return InvalidArgument(std::to_string(tokens.size()) + " tokens exceed max_seq_len " + std::to_string(m.max_seq_len));
  std::vector<float> out;
  if (!one_at_a_time) {
    KILN_RETURN_IF_ERROR(m.Step(tokens, 0, static_cast<int64_t>(tokens.size()), true, &out));
  } else {
    for (size_t i = 0; i < tokens.size(); ++i)
      KILN_RETURN_IF_ERROR(m.Step(tokens, static_cast<int64_t>(i), static_cast<int64_t>(i) + 1, true, &out));
  }
  return out;
}

bool Engine::has_tokenizer() const { return impl_->tokenizer != nullptr; }

Expected<std::vector<int32_t>> Engine::Encode(std::string_view text, bool add_special) const {
  if (!impl_->tokenizer) return NotFound("this engine has no tokenizer (rebuild with --tokenizer, or pass token ids)");
  return impl_->tokenizer->Encode(text, add_special);
}

Expected<std::string> Engine::Decode(std::span<const int32_t> ids, bool skip_special) const {
  if (!impl_->tokenizer) return NotFound("this engine has no tokenizer (rebuild with --tokenizer)");
  return impl_->tokenizer->Decode(ids, skip_special);
}

int64_t Engine::vocab_size() const { return impl_->model->config().vocab_size; }
int32_t Engine::bos_id() const { return ResolveBosId(impl_->model->config(), impl_->tokenizer.get()); }
std::vector<int32_t> Engine::eos_ids() const { return ResolveEosIds(impl_->model->config(), impl_->tokenizer.get()); }
int64_t Engine::max_seq_len() const { return impl_->max_seq_len; }
std::string Engine::device_name() const { return impl_->backend->name(); }
double Engine::load_seconds() const { return impl_->load_seconds; }

}  // namespace kiln
