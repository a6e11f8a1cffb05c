// The scheduler: token budget and chunked prefill, unchunked prefill, the two
// capacity policies, preemption order, priority order, and a randomized run of
// thousands of operations through the scheduler and block manager checking
// their invariants after each.
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <random>

#include "runtime/scheduler.h"

namespace kiln {
namespace {

std::unique_ptr<Sequence> MakeSeq(uint64_t id, int prompt_len, int max_new, int priority = 0,
                                  int32_t first = 0) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->arrival = id;
  s->priority = priority;
  for (int i = 0; i < prompt_len; ++i) s->tokens.push_back(first + i);
  s->n_prompt = prompt_len;
  s->max_new_tokens = max_new;
  return s;
}

void ExpectOk(const Scheduler& s) {
  Status st = s.CheckInvariants();
  EXPECT_TRUE(st.ok()) << st.message();
}

// Runs the step as the executor would: commit, then append a token to each
// sampled sequence.
void Step(Scheduler& sched, const SchedulerOutput& out) {
  sched.Commit(out);
  for (const auto& c : out.chunks)
    if (c.wants_logits) c.seq->tokens.push_back(7);
}

TEST(Scheduler, TokenBudgetMixesDecodeAndPrefillChunks) {
  BlockManager bm({.n_blocks = 32, .block_size = 4, .enable_prefix_caching = false});
  Scheduler sched({.max_num_tokens = 10}, bm);
  auto a = MakeSeq(1, 8, 4), b = MakeSeq(2, 7, 4, 0, 100);
  sched.Add(a.get());
  sched.Add(b.get());
  SchedulerOutput o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 2u);
  EXPECT_EQ(o.chunks[0].n_tokens, 8);
  EXPECT_TRUE(o.chunks[0].wants_logits);
  EXPECT_EQ(o.chunks[1].n_tokens, 2);  // chunk of b's prompt
  EXPECT_FALSE(o.chunks[1].wants_logits);
  EXPECT_EQ(o.n_tokens, 10);
  Step(sched, o);
  ExpectOk(sched);
  o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 2u);
  EXPECT_EQ(o.chunks[0].seq, a.get());  // a's decode token
  EXPECT_EQ(o.chunks[0].n_tokens, 1);
  EXPECT_EQ(o.chunks[0].start, 8);
  EXPECT_EQ(o.chunks[1].n_tokens, 5);  // the rest of b
  EXPECT_EQ(o.chunks[1].start, 2);
  EXPECT_TRUE(o.chunks[1].wants_logits);
  Step(sched, o);
  ExpectOk(sched);
  sched.Remove(a.get());
  sched.Remove(b.get());
  EXPECT_EQ(bm.n_used(), 0);
}

TEST(Scheduler, UnchunkedPrefillWaitsForRoom) {
  BlockManager bm({.n_blocks = 32, .block_size = 4, .enable_prefix_caching = false});
  Scheduler sched({.max_num_tokens = 10, .chunked_prefill = false}, bm);
  auto a = MakeSeq(1, 6, 4), b = MakeSeq(2, 7, 4), big = MakeSeq(3, 25, 2);
  sched.Add(a.get());
  sched.Add(b.get());
  SchedulerOutput o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);  // b does not fit whole in the 4 tokens left
  Step(sched, o);
  o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 2u);  // a's decode + b whole
  EXPECT_EQ(o.chunks[1].n_tokens, 7);
  Step(sched, o);
  // A prompt longer than the budget is chunked anyway (it could never run
  // otherwise).
  sched.Remove(a.get());
  sched.Remove(b.get());
  sched.Add(big.get());
  o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].n_tokens, 10);
  sched.Remove(big.get());
  EXPECT_EQ(bm.n_used(), 0);
}

TEST(Scheduler, GuaranteedNoEvictReservesWholeRequests) {
  BlockManager bm({.n_blocks = 10, .block_size = 4, .enable_prefix_caching = false});
  // More sequences than tokens per step: decode steps are not in lockstep, so
  // each running sequence is charged its whole length.
  Scheduler sched({.policy = CapacityPolicy::kGuaranteedNoEvict, .max_batch_size = 16, .max_num_tokens = 8},
                  bm);
  auto a = MakeSeq(1, 8, 20), b = MakeSeq(2, 8, 20);  // each may need ceil(27 / 4) = 7 blocks
  EXPECT_EQ(sched.ReservedBlocks(*a), 7);
  sched.Add(a.get());
  sched.Add(b.get());
  SchedulerOutput o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);  // b would not be able to finish next to a
  EXPECT_EQ(sched.n_waiting(), 1);
  for (int i = 0; i < 30 && a->generated() < 20; ++i) {
    Step(sched, o);
    ExpectOk(sched);
    o = sched.Schedule();
    EXPECT_TRUE(o.preempted.empty());
    EXPECT_EQ(sched.n_running(), 1);
  }
  sched.Remove(a.get());
  o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].seq, b.get());
  sched.Remove(b.get());
  EXPECT_EQ(bm.n_used(), 0);
}

// In lockstep (max_batch_size <= max_num_tokens) a request is admitted as soon
// as its blocks fit next to the running ones at every future step, counting the
// blocks they give back when they finish: b (5 blocks at most) joins a (6 at
// most) in a 10-block cache well before a finishes, and nothing is ever
// preempted.
TEST(Scheduler, GuaranteedNoEvictAdmitsStaggeredRequestsEarly) {
  BlockManager bm({.n_blocks = 10, .block_size = 4, .enable_prefix_caching = false});
  Scheduler sched({.policy = CapacityPolicy::kGuaranteedNoEvict, .max_batch_size = 4, .max_num_tokens = 64},
                  bm);
  auto a = MakeSeq(1, 4, 21), b = MakeSeq(2, 4, 17, 0, 100);
  sched.Add(a.get());
  sched.Add(b.get());
  int a_left_when_b_joined = -1;
  for (int step = 0; step < 80 && (sched.n_running() > 0 || sched.n_waiting() > 0); ++step) {
    SchedulerOutput o = sched.Schedule();
    ASSERT_TRUE(o.preempted.empty());
    for (Sequence* s : o.admitted)
      if (s == b.get() && a->state == SeqState::kRunning) a_left_when_b_joined = 21 - a->generated();
    Step(sched, o);
    ExpectOk(sched);
    for (Sequence* s : {a.get(), b.get()})
      if (s->state == SeqState::kRunning && s->generated() >= s->max_new_tokens) sched.Remove(s);
  }
  EXPECT_EQ(a->generated(), 21);
  EXPECT_EQ(b->generated(), 17);
  // With 10 tokens left for a the bound first admits b: a ends holding 6 blocks
  // while b holds 4; the exact peak would have allowed it one step earlier.
  // Whole lengths would have kept b out until a finished.
  EXPECT_EQ(a_left_when_b_joined, 10);
  EXPECT_EQ(bm.n_used(), 0);
}

TEST(Scheduler, MaxUtilizationPreemptsNewestFirst) {
  BlockManager bm({.n_blocks = 6, .block_size = 2, .enable_prefix_caching = false});
  Scheduler sched({.policy = CapacityPolicy::kMaxUtilization}, bm);
  auto a = MakeSeq(1, 4, 10), b = MakeSeq(2, 4, 10), c = MakeSeq(3, 3, 10);
  for (auto* s : {a.get(), b.get(), c.get()}) sched.Add(s);
  SchedulerOutput o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 3u);  // 2 + 2 + 2 blocks: the cache is full
  Step(sched, o);
  o = sched.Schedule();  // a needs a 3rd block: c (newest) is preempted; b still
                         // fits
  ASSERT_EQ(o.preempted.size(), 1u);
  EXPECT_EQ(o.preempted[0], c.get());
  EXPECT_EQ(c->n_computed, 0);
  EXPECT_EQ(c->preemptions, 1);
  EXPECT_EQ(c->num_tokens(), 4);  // keeps its generated token; recomputed later
  EXPECT_EQ(o.chunks.size(), 2u);
  EXPECT_TRUE(o.admitted.empty());  // no admission in a step that preempted
  ExpectOk(sched);
  Step(sched, o);
  sched.Remove(a.get());
  o = sched.Schedule();
  ASSERT_EQ(o.admitted.size(), 1u);
  EXPECT_EQ(o.admitted[0], c.get());
  EXPECT_EQ(o.chunks.back().n_tokens, 4);  // prompt + generated token recomputed
  sched.Remove(b.get());
  sched.Remove(c.get());
  EXPECT_EQ(bm.n_used(), 0);
}

TEST(Scheduler, PriorityOrderAdmitsHigherFirst) {
  BlockManager bm({.n_blocks = 32, .block_size = 4});
  Scheduler sched({.order = ScheduleOrder::kPriority, .max_batch_size = 1}, bm);
  auto low = MakeSeq(1, 4, 2, 0), high = MakeSeq(2, 4, 2, 5), mid = MakeSeq(3, 4, 2, 1);
  for (auto* s : {low.get(), high.get(), mid.get()}) sched.Add(s);
  SchedulerOutput o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].seq, high.get());
  sched.Remove(high.get());
  EXPECT_EQ(sched.Schedule().chunks[0].seq, mid.get());
  sched.Remove(mid.get());
  EXPECT_EQ(sched.Schedule().chunks[0].seq, low.get());
  sched.Remove(low.get());
  // FCFS ignores priorities.
  Scheduler fcfs({.max_batch_size = 1}, bm);
  auto x = MakeSeq(4, 4, 2, 0), y = MakeSeq(5, 4, 2, 9);
  fcfs.Add(x.get());
  fcfs.Add(y.get());
  EXPECT_EQ(fcfs.Schedule().chunks[0].seq, x.get());
  fcfs.Remove(x.get());
  fcfs.Remove(y.get());
  EXPECT_EQ(bm.n_used(), 0);
}

TEST(Scheduler, PrefixHitSkipsCachedBlocks) {
  BlockManager bm({.n_blocks = 32, .block_size = 4});
  Scheduler sched({}, bm);
  auto a = MakeSeq(1, 10, 1), b = MakeSeq(2, 13, 1);  // same first 10 tokens
  sched.Add(a.get());
  SchedulerOutput o = sched.Schedule();
  Step(sched, o);
  sched.Remove(a.get());
  sched.Add(b.get());
  o = sched.Schedule();
  ASSERT_EQ(o.chunks.size(), 1u);
  EXPECT_EQ(o.chunks[0].start, 8);  // two cached blocks
  EXPECT_EQ(o.chunks[0].n_tokens, 5);
  EXPECT_EQ(b->cached_prompt_tokens, 8);
  EXPECT_EQ(sched.prefix_hits(), 8u);
  sched.Remove(b.get());
  EXPECT_EQ(bm.n_used(), 0);
}

// Thousands of random operations (add with shared prefixes, schedule + commit +
// sample, cancel) over random configurations; invariants after every operation,
// progress whenever the batch is empty, and nothing held at the end.
TEST(Scheduler, RandomizedOperationsKeepInvariants) {
  std::mt19937 g(12345);
  auto rnd = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); };
  int total_ops = 0;
  for (int config = 0; config < 96; ++config) {
    const int bs = rnd(1, 6);
    const bool sliding = rnd(0, 3) == 0;
    BlockManagerOptions bo{.n_blocks = rnd(12, 48),
                           .block_size = bs,
                           .enable_prefix_caching = !sliding && rnd(0, 3) != 0,
                           .shuffle_blocks = rnd(0, 1) == 1,
                           .seed = static_cast<uint64_t>(config)};
    BlockManager bm(bo);
    SchedulerOptions so{
        .policy = rnd(0, 1) ? CapacityPolicy::kMaxUtilization : CapacityPolicy::kGuaranteedNoEvict,
        .order = rnd(0, 1) ? ScheduleOrder::kPriority : ScheduleOrder::kFcfs,
        .max_batch_size = rnd(1, 8),
        .max_num_tokens = rnd(1, 40),
        .chunked_prefill = rnd(0, 3) != 0,
        .sliding_window = sliding ? rnd(2, 9) : 0};
    SCOPED_TRACE("config " + std::to_string(config));
    Scheduler sched(so, bm);
    std::deque<std::unique_ptr<Sequence>> live;
    uint64_t next_id = 1;
    const std::vector<int32_t> prefixes[] = {
        {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {1, 2, 3, 9, 9, 9}, {5}};
    int idle_steps = 0;
    for (int op = 0; op < 400; ++op, ++total_ops) {
      const int r = rnd(0, 9);
      if (r < 3 && live.size() < 16) {
        auto s = std::make_unique<Sequence>();
        s->id = s->arrival = next_id++;
        s->priority = rnd(0, 2);
        const auto& p = prefixes[rnd(0, 2)];
        s->tokens.assign(p.begin(), p.begin() + rnd(1, static_cast<int>(p.size())));
        for (int k = rnd(0, 10); k > 0; --k) s->tokens.push_back(rnd(0, 3));
        s->n_prompt = static_cast<int>(s->tokens.size());
        s->max_new_tokens = rnd(1, 16);
        if (bm.BlocksFor(s->max_kv_tokens()) > bm.n_blocks()) continue;  // the executor rejects these
        sched.Add(s.get());
        live.push_back(std::move(s));
      } else if (r < 4 && !live.empty()) {
        const size_t i = rnd(0, static_cast<int>(live.size()) - 1);
        sched.Remove(live[i].get());
        live.erase(live.begin() + i);
      } else {
        const bool was_empty = sched.n_running() == 0 && sched.n_waiting() > 0;
        SchedulerOutput o = sched.Schedule();
        ASSERT_LE(o.n_tokens, so.max_num_tokens);
        ASSERT_LE(sched.n_running(), so.max_batch_size);
        if (was_empty) ASSERT_FALSE(o.empty()) << "no progress with an empty batch";
        if (so.policy == CapacityPolicy::kGuaranteedNoEvict) ASSERT_TRUE(o.preempted.empty());
        for (const auto& c : o.chunks) {
          ASSERT_EQ(c.seq->state, SeqState::kRunning);
          ASSERT_EQ(c.start, c.seq->n_computed);
          ASSERT_GE(c.seq->blocks.size() * bs, c.start + c.n_tokens);
          ASSERT_LE(c.start + c.n_tokens, c.seq->num_tokens());
        }
        idle_steps = o.empty() ? idle_steps + 1 : 0;
        ASSERT_LT(idle_steps, 50) << "scheduler stalled";
        sched.Commit(o);
        for (const auto& c : o.chunks) {
          if (!c.wants_logits) continue;
          Sequence* s = c.seq;
          s->tokens.push_back(static_cast<int32_t>((s->num_tokens() * 7 + s->id) % 4));
          if (s->generated() >= s->max_new_tokens) {
            sched.Remove(s);
            for (size_t i = 0; i < live.size(); ++i)
              if (live[i].get() == s) {
                live.erase(live.begin() + i);
                break;
              }
          }
        }
      }
      Status st = sched.CheckInvariants();
      ASSERT_TRUE(st.ok()) << "op " << op << ": " << st.message();
    }
    for (auto& s : live) sched.Remove(s.get());
    ASSERT_EQ(bm.n_used(), 0);
    ASSERT_TRUE(sched.CheckInvariants().ok());
  }
  EXPECT_GE(total_ops, 9000);
}

}  // namespace
}  // namespace kiln
