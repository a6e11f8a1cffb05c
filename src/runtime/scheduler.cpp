#include "runtime/scheduler.h"

#include <algorithm>
#include <optional>
#include <set>

namespace kiln {

Expected<CapacityPolicy> ParseCapacityPolicy(const std::string& name) {
  if (name == "max_utilization" || name == "MAX_UTILIZATION") return CapacityPolicy::kMaxUtilization;
  if (name == "guaranteed_no_evict" || name == "GUARANTEED_NO_EVICT")
    return CapacityPolicy::kGuaranteedNoEvict;
  return InvalidArgument(
      "scheduler_policy: expected max_utilization or "
      "guaranteed_no_evict, got '" +
      name + "'");
}

Expected<ScheduleOrder> ParseScheduleOrder(const std::string& name) {
  if (name == "fcfs") return ScheduleOrder::kFcfs;
  if (name == "priority") return ScheduleOrder::kPriority;
  return InvalidArgument("schedule_order: expected fcfs or priority, got '" + name + "'");
}

Scheduler::Scheduler(const SchedulerOptions& options, BlockManager& blocks) : opt_(options), bm_(blocks) {}

bool Scheduler::Before(const Sequence* a, const Sequence* b) const {
  if (opt_.order == ScheduleOrder::kPriority && a->priority != b->priority) return a->priority > b->priority;
  return a->arrival < b->arrival;
}

void Scheduler::InsertSorted(std::vector<Sequence*>& v, Sequence* s) const {
  auto it = std::upper_bound(v.begin(), v.end(), s,
                             [this](const Sequence* a, const Sequence* b) { return Before(a, b); });
  v.insert(it, s);
}

void Scheduler::Add(Sequence* s) {
  s->state = SeqState::kWaiting;
  s->n_computed = 0;
  InsertSorted(waiting_, s);
}

void Scheduler::Remove(Sequence* s) {
  auto drop = [s](std::vector<Sequence*>& v) {
    auto it = std::find(v.begin(), v.end(), s);
    if (it != v.end()) v.erase(it);
  };
  drop(waiting_);
  drop(running_);
  bm_.Free(&s->blocks);
  s->state = SeqState::kFinished;
}

int64_t Scheduler::ReservedBlocks(const Sequence& s) const {
  return bm_.BlocksFor(std::max<int64_t>(s.max_kv_tokens(), s.num_tokens()));
}

FutureClaims Scheduler::RunningClaims(const SchedulerOutput& out) const {
  FutureClaims claims(bm_.block_size());
  std::set<const Sequence*> lanes;  // reach their last token this step
  if (Lockstep())
    for (const ScheduledChunk& c : out.chunks)
      if (c.wants_logits) lanes.insert(c.seq);
  for (const Sequence* s : running_) {
    const int64_t held = s->blocks.size();
    if (!lanes.count(s)) {
      claims.AddFixed(std::max<int64_t>(0, ReservedBlocks(*s) - held));
      continue;
    }
    // Only blocks no other sequence holds go back to the pool when it finishes.
    int64_t freed = 0;
    for (size_t b = s->blocks.n_released; b < s->blocks.blocks.size(); ++b)
      freed += bm_.ref_count(s->blocks.blocks[b]) == 1 ? 1 : 0;
    const int64_t kv_now = s->num_tokens();
    claims.AddLane({.kv_now = kv_now,
                    .last_step = std::max<int64_t>(s->max_kv_tokens(), kv_now) - kv_now,
                    .held = held,
                    .freed = freed});
  }
  return claims;
}

void Scheduler::Preempt(Sequence* s) {
  running_.erase(std::find(running_.begin(), running_.end(), s));
  bm_.Free(&s->blocks);  // full blocks stay in the prefix cache: the recompute
                         // may hit them
  s->n_computed = 0;
  s->state = SeqState::kWaiting;
  ++s->preemptions;
  ++preemptions_;
  InsertSorted(waiting_, s);
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int budget = opt_.max_num_tokens;
  // 1. Running sequences, in order: a decode token or the next prefill chunk
  // each. A prefill chunk leaves room for the one-token chunks after it.
  int one_token_after = 0;
  for (const Sequence* s : running_) one_token_after += s->num_tokens() - s->n_computed == 1 ? 1 : 0;
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* s = running_[i];
    const int64_t remaining = s->num_tokens() - s->n_computed;
    if (remaining == 1) --one_token_after;
    const int n = static_cast<int>(
        remaining == 1 ? 1 : std::min<int64_t>(remaining, budget - std::min(budget, one_token_after)));
    if (n == 0) {
      ++i;
      continue;
    }
    bool self_preempted = false;
    while (!bm_.Allocate(&s->blocks, s->n_computed + n)) {
      // Out of blocks: recompute the last in order later (never one already
      // scheduled: those come before i). Under kGuaranteedNoEvict this is
      // unreachable by construction.
      Sequence* victim = running_.back();
      Preempt(victim);
      out.preempted.push_back(victim);
      if (victim == s) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    out.chunks.push_back({s, s->n_computed, n, s->n_computed + n == s->num_tokens()});
    budget -= n;
    ++i;
  }
  // 2. Waiting sequences, in order, while they fit (not after a preemption:
  // blocks are short).
  const int bs = bm_.block_size();
  const bool no_evict = opt_.policy == CapacityPolicy::kGuaranteedNoEvict;
  std::optional<FutureClaims> claims;
  if (no_evict && !waiting_.empty()) claims = RunningClaims(out);
  while (out.preempted.empty() && !waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < opt_.max_batch_size) {
    Sequence* s = waiting_.front();
    // Never match the last token: at least one must be computed to get logits,
    // and new KV is then written only to blocks of our own.
    const int max_match = static_cast<int>((s->num_tokens() - 1) / bs);
    const PrefixMatch m = bm_.PeekPrefix(s->tokens, max_match);
    const int64_t start = static_cast<int64_t>(m.n_blocks) * bs;
    const int64_t remaining = s->num_tokens() - start;
    const int n = static_cast<int>(std::min<int64_t>(remaining, budget));
    // Without chunked prefill a prompt runs whole, unless it can never fit in
    // one step.
    if (!opt_.chunked_prefill && n < remaining && remaining <= opt_.max_num_tokens) break;
    // Blocks it takes now: new ones and cached ones pulled out of the free
    // pool.
    const int64_t held = bm_.BlocksFor(start + n);
    const int64_t take_now = held - m.n_blocks + m.n_unreferenced;
    if (bm_.n_free() < take_now) break;
    std::optional<ClaimLane> lane;
    if (no_evict) {
      // Its whole prompt runs now: from here on it is a lane too.
      if (Lockstep() && n == remaining)
        lane =
            ClaimLane{.kv_now = s->num_tokens(),
                      .last_step = std::max<int64_t>(s->max_kv_tokens(), s->num_tokens()) - s->num_tokens(),
                      .held = held,
                      .freed = held - m.n_blocks + m.n_unreferenced};
      const int64_t fixed = lane ? 0 : std::max<int64_t>(0, ReservedBlocks(*s) - held);
      // Cached blocks it shares with one holder were counted as freed when that
      // holder finishes: charged for good.
      const int64_t shared = Lockstep() ? m.n_single_ref : 0;
      const int64_t peak = (lane ? claims->Peak(&*lane) : claims->Peak()) + fixed + shared;
      if (peak > bm_.n_free() - take_now) break;
      claims->AddFixed(fixed + shared);
      if (lane) claims->AddLane(*lane);
    }
    waiting_.erase(waiting_.begin());
    const int taken = bm_.TakePrefix(s->tokens, m.n_blocks, &s->blocks);
    s->n_computed = static_cast<int64_t>(taken) * bs;
    if (!bm_.Allocate(&s->blocks,
                      s->n_computed + n)) {  // unreachable: checked above
      bm_.Free(&s->blocks);
      s->n_computed = 0;
      InsertSorted(waiting_, s);
      break;
    }
    prefix_queries_ += static_cast<uint64_t>(s->num_tokens());
    prefix_hits_ += static_cast<uint64_t>(s->n_computed);
    if (!s->admitted_once) {
      s->admitted_once = true;
      s->cached_prompt_tokens = static_cast<int>(std::min<int64_t>(s->n_computed, s->n_prompt));
    }
    s->state = SeqState::kRunning;
    InsertSorted(running_, s);
    out.admitted.push_back(s);
    out.chunks.push_back({s, s->n_computed, n, s->n_computed + n == s->num_tokens()});
    budget -= n;
  }
  for (const ScheduledChunk& c : out.chunks) {
    out.n_tokens += c.n_tokens;
    out.n_logits += c.wants_logits ? 1 : 0;
  }
  return out;
}

void Scheduler::Commit(const SchedulerOutput& out) {
  for (const ScheduledChunk& c : out.chunks) {
    Sequence* s = c.seq;
    s->n_computed = c.start + c.n_tokens;
    bm_.CacheFullBlocks(&s->blocks, s->tokens, s->n_computed);
    // The next query (position n_computed) attends to [n_computed - window + 1,
    // n_computed].
    if (opt_.sliding_window > 0) bm_.ReleaseBefore(&s->blocks, s->n_computed - opt_.sliding_window + 1);
  }
}

Status Scheduler::CheckInvariants() const {
  std::vector<const BlockTable*> tables;
  std::set<const Sequence*> seen;
  for (const auto* list : {&waiting_, &running_}) {
    for (size_t i = 0; i < list->size(); ++i) {
      const Sequence* s = (*list)[i];
      if (!seen.insert(s).second) return Internal("sequence " + std::to_string(s->id) + " queued twice");
      if (i > 0 && Before(s, (*list)[i - 1])) return Internal("scheduler queue out of order");
      if (s->n_computed > s->num_tokens()) return Internal("sequence computed past its tokens");
      if (s->blocks.size() * bm_.block_size() < s->n_computed)
        return Internal("sequence " + std::to_string(s->id) + " holds too few blocks for its KV");
      if (list == &waiting_ && (!s->blocks.blocks.empty() || s->n_computed != 0))
        return Internal("waiting sequence " + std::to_string(s->id) + " holds blocks");
      tables.push_back(&s->blocks);
    }
  }
  if (static_cast<int>(running_.size()) > opt_.max_batch_size)
    return Internal("running set exceeds max_batch_size");
  return bm_.CheckInvariants(tables);
}

}  // namespace kiln
