// kiln._kiln: the nanobind bindings under the `kiln` Python package (python/kiln).
// The executor's callbacks run on its step-loop thread, which never touches Python: events go
// into a queue that Python drains with poll() (the GIL is released while it waits).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "builder/builder.h"
#include "kiln/executor.h"
#include "tokenizer/tokenizer.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

[[noreturn]] void Raise(const kiln::Status& s) {
  if (s.code() == kiln::ErrorCode::kInvalidArgument) throw nb::value_error(s.message().c_str());
  if (s.code() == kiln::ErrorCode::kNotFound) throw std::runtime_error(s.message());  // FileNotFound-like
  throw std::runtime_error(s.message());
}
template <typename T>
T Unwrap(kiln::Expected<T> e) {
  if (!e.ok()) Raise(e.status());
  return std::move(e).value();
}

template <typename T>
bool Take(nb::dict& d, const char* key, T& out) {
  if (!d.contains(key)) return false;
  nb::object v = d[key];
  if (!v.is_none()) out = nb::cast<T>(v);
  nb::del(d[key]);
  return true;
}

void RejectRest(const nb::dict& d, const char* what) {
  if (d.size() == 0) return;
  std::string names;
  for (auto [k, v] : d) names += (names.empty() ? "" : ", ") + nb::cast<std::string>(nb::str(k));
  throw nb::type_error((std::string(what) + ": unknown option(s): " + names).c_str());
}

kiln::ExecutorOptions ParseOptions(nb::dict d) {
  kiln::ExecutorOptions o;
  Take(d, "device", o.device);
  Take(d, "f32_activations", o.f32_activations);
  Take(d, "max_batch_size", o.max_batch_size);
  Take(d, "max_num_tokens", o.max_num_tokens);
  Take(d, "max_seq_len", o.max_seq_len);
  Take(d, "kv_cache_fraction", o.kv_cache_fraction);
  Take(d, "kv_cache_bytes", o.kv_cache_bytes);
  Take(d, "block_size", o.block_size);
  Take(d, "enable_prefix_caching", o.enable_prefix_caching);
  Take(d, "scheduler_policy", o.scheduler_policy);
  Take(d, "enable_chunked_prefill", o.enable_chunked_prefill);
  Take(d, "max_queue_size", o.max_queue_size);
  Take(d, "shuffle_blocks", o.shuffle_blocks);
  Take(d, "show_progress", o.show_progress);
  RejectRest(d, "kiln.LLM");
  return o;
}

kiln::Request ParseRequest(std::vector<int32_t> prompt, nb::dict d) {
  kiln::Request r;
  r.prompt = std::move(prompt);
  kiln::SamplingParams& s = r.sampling;
  Take(d, "temperature", s.temperature);
  Take(d, "top_k", s.top_k);
  Take(d, "top_p", s.top_p);
  Take(d, "min_p", s.min_p);
  Take(d, "repetition_penalty", s.repetition_penalty);
  Take(d, "presence_penalty", s.presence_penalty);
  Take(d, "frequency_penalty", s.frequency_penalty);
  Take(d, "seed", s.seed);
  Take(d, "max_tokens", r.max_tokens);
  Take(d, "stop", r.stop);
  Take(d, "stop_token_ids", r.stop_token_ids);
  Take(d, "ignore_eos", r.ignore_eos);
  Take(d, "logprobs", r.logprobs);
  Take(d, "priority", r.priority);
  Take(d, "detokenize", r.detokenize);
  RejectRest(d, "sampling parameters");
  kiln::Status st = s.Validate();
  if (!st.ok()) Raise(st);
  return r;
}

nb::dict Dict(const kiln::RequestStats& s) {
  nb::dict d;
  d["prompt_tokens"] = s.prompt_tokens;
  d["cached_prompt_tokens"] = s.cached_prompt_tokens;
  d["generated_tokens"] = s.generated_tokens;
  d["preemptions"] = s.preemptions;
  d["queue_ms"] = s.queue_ms;
  d["ttft_ms"] = s.ttft_ms;
  d["e2e_ms"] = s.e2e_ms;
  return d;
}

class PyExecutor {
 public:
  PyExecutor(const std::string& engine_dir, nb::dict options) {
    kiln::ExecutorOptions o = ParseOptions(std::move(options));
    kiln::Expected<std::unique_ptr<kiln::Executor>> ex = [&] {
      nb::gil_scoped_release release;
      return kiln::Executor::Create(engine_dir, o);
    }();
    ex_ = Unwrap(std::move(ex));
    state_ = std::make_shared<State>();
  }
  ~PyExecutor() {
    if (ex_) {
      nb::gil_scoped_release release;
      ex_->Shutdown(false);
      ex_.reset();
    }
  }

  uint64_t Enqueue(std::vector<int32_t> prompt, nb::dict params) {
    kiln::Request r = ParseRequest(std::move(prompt), std::move(params));
    std::shared_ptr<State> st = state_;
    auto id = ex_->Enqueue(std::move(r), [st](const kiln::RequestEvent& ev) {
      {
        std::lock_guard lock(st->mu);
        st->events.push_back(ev);
      }
      st->cv.notify_all();
    });
    return Unwrap(std::move(id));
  }

  // -> [(request_id, token, text_delta, logprob, [(token, logprob)], finished, finish_reason, error,
  // stats|None)]
  nb::list Poll(double timeout_s) {
    std::deque<kiln::RequestEvent> got;
    {
      nb::gil_scoped_release release;
      std::unique_lock lock(state_->mu);
      state_->cv.wait_for(lock, std::chrono::duration<double>(timeout_s),
                          [&] { return !state_->events.empty(); });
      got.swap(state_->events);
    }
    nb::list out;
    for (const kiln::RequestEvent& ev : got) {
      std::vector<std::pair<int32_t, float>> top;
      for (const auto& t : ev.top_logprobs) top.emplace_back(t.token, t.logprob);
      nb::bytes delta(ev.text_delta.data(), ev.text_delta.size());
      out.append(nb::make_tuple(ev.request_id, ev.token, delta, ev.logprob, top, ev.finished,
                                ev.finish_reason, ev.error,
                                ev.finished ? nb::object(Dict(ev.stats)) : nb::none()));
    }
    return out;
  }

  void Cancel(uint64_t id) { ex_->Cancel(id); }
  void WaitAll() {
    nb::gil_scoped_release release;
    ex_->WaitAll();
  }
  void Shutdown(bool drain) {
    nb::gil_scoped_release release;
    ex_->Shutdown(drain);
  }
  nb::dict Metrics() const {
    kiln::ExecutorMetrics m = ex_->Metrics();
    nb::dict d;
    d["requests_finished"] = m.requests_finished;
    d["requests_cancelled"] = m.requests_cancelled;
    d["requests_failed"] = m.requests_failed;
    d["requests_rejected"] = m.requests_rejected;
    d["prompt_tokens"] = m.prompt_tokens;
    d["generated_tokens"] = m.generated_tokens;
    d["cached_prompt_tokens"] = m.cached_prompt_tokens;
    d["preemptions"] = m.preemptions;
    d["running"] = m.running;
    d["waiting"] = m.waiting;
    d["kv_blocks_total"] = m.kv_blocks_total;
    d["kv_blocks_used"] = m.kv_blocks_used;
    d["kv_blocks_free"] = m.kv_blocks_free;
    d["prefix_cache_hits"] = m.prefix_cache_hits;
    d["prefix_cache_queries"] = m.prefix_cache_queries;
    d["steps"] = m.steps;
    return d;
  }
  nb::dict MemoryPlan() const {
    kiln::MemoryPlan p = ex_->memory_plan();
    nb::dict d;
    d["weights"] = p.weights;
    d["kv_cache"] = p.kv_cache;
    d["activations"] = p.activations;
    d["workspace"] = p.workspace;
    d["kv_blocks"] = p.kv_blocks;
    d["block_size"] = p.block_size;
    d["max_seq_len"] = p.max_seq_len;
    return d;
  }
  std::vector<int32_t> Encode(const std::string& text, bool add_special) const {
    return Unwrap(ex_->Encode(text, add_special));
  }
  std::string Decode(const std::vector<int32_t>& ids) const { return Unwrap(ex_->Decode(ids)); }
  nb::bytes DecodeBytes(const std::vector<int32_t>& ids) const {
    std::string s = Unwrap(ex_->Decode(ids));
    return nb::bytes(s.data(), s.size());
  }
  std::string ApplyChatTemplate(const std::string& messages_json, bool add_generation_prompt) const {
    return Unwrap(ex_->ApplyChatTemplate(messages_json, add_generation_prompt));
  }
  kiln::Executor& ex() { return *ex_; }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<kiln::RequestEvent> events;
  };
  std::unique_ptr<kiln::Executor> ex_;
  std::shared_ptr<State> state_;
};

class PyTokenizer {
 public:
  explicit PyTokenizer(const std::string& path) : tok_(Unwrap(kiln::LoadTokenizer(path))) {}
  std::vector<int32_t> Encode(const std::string& text, bool add_special) const {
    return tok_->Encode(text, add_special);
  }
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special) const {
    return tok_->Decode(ids, skip_special);
  }
  int32_t vocab_size() const { return tok_->vocab_size(); }
  int32_t bos_id() const { return tok_->bos_id(); }
  std::vector<int32_t> eos_ids() const { return tok_->eos_ids(); }
  std::string piece(int32_t id) const { return tok_->piece(id); }

 private:
  std::unique_ptr<kiln::Tokenizer> tok_;
};

void Build(const std::string& checkpoint, const std::string& out, const std::string& dtype,
           const std::string& tokenizer, const std::string& hf_config, bool dummy_weights,
           uint64_t dummy_seed, const std::vector<std::string>& lora) {
  kiln::BuildOptions o;
  o.checkpoint = checkpoint;
  o.out = out;
  o.dtype = dtype;
  o.tokenizer = tokenizer;
  o.hf_config = hf_config;
  o.dummy_weights = dummy_weights;
  o.dummy_seed = dummy_seed;
  o.lora = lora;
  kiln::Status st;
  {
    nb::gil_scoped_release release;
    st = kiln::BuildEngine(o);
  }
  if (!st.ok()) Raise(st);
}

}  // namespace

NB_MODULE(_kiln, m) {
  m.doc() = "kiln C++ core (engine builder, in-flight batching executor, tokenizers)";
  m.attr("__version__") = KILN_VERSION;
  m.def("build", &Build, "checkpoint"_a, "out"_a, "dtype"_a = "auto", "tokenizer"_a = "", "hf_config"_a = "",
        "dummy_weights"_a = false, "dummy_seed"_a = 1234, "lora"_a = std::vector<std::string>{},
        "Builds an engine directory from a checkpoint (HF folder, llama2.c .bin or GGUF).");

  nb::class_<PyExecutor>(m, "Executor")
      .def(nb::init<const std::string&, nb::dict>(), "engine_dir"_a, "options"_a = nb::dict())
      .def("enqueue", &PyExecutor::Enqueue, "prompt"_a, "params"_a = nb::dict())
      .def("poll", &PyExecutor::Poll, "timeout_s"_a = 0.1)
      .def("cancel", &PyExecutor::Cancel, "request_id"_a)
      .def("wait_all", &PyExecutor::WaitAll)
      .def("shutdown", &PyExecutor::Shutdown, "drain"_a = true)
      .def("metrics", &PyExecutor::Metrics)
      .def("memory_plan", &PyExecutor::MemoryPlan)
      .def("encode", &PyExecutor::Encode, "text"_a, "add_special"_a = true)
      .def("decode", &PyExecutor::Decode, "ids"_a)
      .def("decode_bytes", &PyExecutor::DecodeBytes, "ids"_a)
      .def("apply_chat_template", &PyExecutor::ApplyChatTemplate, "messages_json"_a,
           "add_generation_prompt"_a = true)
      .def_prop_ro("bos_id", [](PyExecutor& e) { return e.ex().bos_id(); })
      .def_prop_ro("eos_ids", [](PyExecutor& e) { return e.ex().eos_ids(); })
      .def_prop_ro("max_seq_len", [](PyExecutor& e) { return e.ex().max_seq_len(); })
      .def_prop_ro("vocab_size", [](PyExecutor& e) { return e.ex().vocab_size(); })
      .def_prop_ro("device_name", [](PyExecutor& e) { return e.ex().device_name(); });

  nb::class_<PyTokenizer>(m, "Tokenizer")
      .def(nb::init<const std::string&>(), "path"_a)
      .def("encode", &PyTokenizer::Encode, "text"_a, "add_special"_a = true)
      .def("decode", &PyTokenizer::Decode, "ids"_a, "skip_special"_a = false)
      .def("piece", &PyTokenizer::piece, "id"_a)
      .def_prop_ro("vocab_size", &PyTokenizer::vocab_size)
      .def_prop_ro("bos_id", &PyTokenizer::bos_id)
      .def_prop_ro("eos_ids", &PyTokenizer::eos_ids);
}
