// Chooses, each step, which sequences run and how many of their tokens: running
// sequences first (a decode token or the next prefill chunk each), then waiting
// ones while the token budget, the batch size and the KV blocks allow. Prefill
// chunks and decode tokens share a step.
//
// Capacity policies:
//   kGuaranteedNoEvict: admit a request only when the blocks it may need up to
//     prompt + max_tokens fit next to the most the running ones may still
//     claim at any future step, so a running sequence never waits for a block.
//     When max_batch_size <= max_num_tokens every sequence past its prefill
//     advances one token per step (decode tokens are never crowded out by a
//     prefill chunk), so their future needs are known step by step: the claim
//     is the peak over future steps of their growth minus the blocks freed by
//     those that finish first (TensorRT-LLM reserves every request's whole
//     length instead, which idles memory when requests are staggered).
//     Otherwise each running sequence is charged its whole length.
//   kMaxUtilization: admit whatever fits this step; when a running sequence
//     needs a block and none is free, preempt the last in order (the newest,
//     or the newest of the lowest priority) by recompute: its blocks are freed
//     and it is requeued.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "runtime/block_manager.h"
#include "runtime/future_claims.h"
#include "runtime/sequence.h"

namespace kiln {

enum class CapacityPolicy { kGuaranteedNoEvict, kMaxUtilization };
enum class ScheduleOrder { kFcfs, kPriority };

Expected<CapacityPolicy> ParseCapacityPolicy(const std::string& name);  // names the option at fault
Expected<ScheduleOrder> ParseScheduleOrder(const std::string& name);

struct SchedulerOptions {
  CapacityPolicy policy = CapacityPolicy::kGuaranteedNoEvict;
  ScheduleOrder order = ScheduleOrder::kFcfs;
  int max_batch_size = 256;   // running sequences
  int max_num_tokens = 8192;  // tokens per step
  bool chunked_prefill = true;
  int64_t sliding_window = 0;  // > 0: blocks wholly outside the window are released
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int64_t start = 0;  // first position computed this step (= seq->n_computed)
  int n_tokens = 0;
  bool wants_logits = false;  // the chunk reaches the sequence's last token: sample the next one
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;  // in running order; logits rows follow this order
  std::vector<Sequence*> preempted;    // requeued this step
  std::vector<Sequence*> admitted;     // first scheduled this step (waiting -> running)
  int n_tokens = 0;
  int n_logits = 0;
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, BlockManager& blocks);

  // Queues a new sequence (state waiting, nothing computed).
  void Add(Sequence* seq);
  // Drops a sequence from whichever queue holds it and frees its blocks (finish
  // or cancel).
  void Remove(Sequence* seq);
  SchedulerOutput Schedule();
  // After the step ran: advances n_computed, caches newly full blocks, releases
  // blocks that fell out of the sliding window. The caller then appends sampled
  // tokens or Remove()s.
  void Commit(const SchedulerOutput& out);

  int n_waiting() const { return static_cast<int>(waiting_.size()); }
  int n_running() const { return static_cast<int>(running_.size()); }
  const std::vector<Sequence*>& running() const { return running_; }
  const std::vector<Sequence*>& waiting() const { return waiting_; }
  // KV blocks a sequence may need in all (the reservation under
  // kGuaranteedNoEvict).
  int64_t ReservedBlocks(const Sequence& s) const;
  // Tests: no sequence is in two places, held blocks cover the computed tokens,
  // invariants of the block manager over every table.
  Status CheckInvariants() const;

  // Counters (tokens).
  uint64_t prefix_queries() const { return prefix_queries_; }
  uint64_t prefix_hits() const { return prefix_hits_; }
  uint64_t total_preemptions() const { return preemptions_; }

 private:
  bool Before(const Sequence* a, const Sequence* b) const;  // scheduling order
  void InsertSorted(std::vector<Sequence*>& v, Sequence* s) const;
  void Preempt(Sequence* s);
  // Under kGuaranteedNoEvict, once this step's running chunks hold their
  // blocks: what the running sequences may still claim at future steps.
  FutureClaims RunningClaims(const SchedulerOutput& out) const;
  // Whether every sequence past its prefill is scheduled each step.
  bool Lockstep() const { return opt_.max_batch_size <= opt_.max_num_tokens; }

  SchedulerOptions opt_;
  BlockManager& bm_;
  std::vector<Sequence*> waiting_;  // sorted by Before
  std::vector<Sequence*> running_;  // sorted by Before
  uint64_t prefix_queries_ = 0, prefix_hits_ = 0, preemptions_ = 0;
};

}  // namespace kiln
