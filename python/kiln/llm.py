"""kiln.LLM: offline generation over the in-flight batching executor."""

from __future__ import annotations

import codecs
import json
import os
import threading
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _kiln
from .outputs import CompletionOutput, RequestOutput, StreamDelta, TokenLogprob
from .sampling_params import SamplingParams

PromptType = Union[str, Sequence[int]]
Message = Dict[str, str]


class TokenizerView:
    """The engine's tokenizer (encode/decode/chat template) as the executor holds it."""

    def __init__(self, ex: "_kiln.Executor"):
        self._ex = ex

    def encode(self, text: str, add_special: bool = True) -> List[int]:
        return self._ex.encode(text, add_special)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        ids = [int(t) for t in ids]
        if skip_special_tokens:
            special = {self._ex.bos_id, *self._ex.eos_ids}
            ids = [t for t in ids if t not in special]
        return self._ex.decode_bytes(ids).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: List[Message], add_generation_prompt: bool = True) -> str:
        """Renders the engine's chat template. Engines without one get the plain rendering of
        `kiln chat` and the server: each message's content on its own line."""
        try:
            return self._ex.apply_chat_template(json.dumps(messages), add_generation_prompt)
        except ValueError:
            raise  # the template itself rejected the conversation
        except RuntimeError:
            return "".join(str(m.get("content") or "") + "\n" for m in messages)

    def encode_chat(self, messages: List[Message], add_generation_prompt: bool = True) -> List[int]:
        ids = self.encode(self.apply_chat_template(messages, add_generation_prompt), True)
        bos = self._ex.bos_id
        if bos >= 0 and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # the template wrote BOS itself
        return ids

    @property
    def bos_id(self) -> int:
        return self._ex.bos_id

    @property
    def eos_ids(self) -> List[int]:
        return list(self._ex.eos_ids)

    @property
    def vocab_size(self) -> int:
        return self._ex.vocab_size


class _Dispatcher:
    """poll() returns every request's events; each caller keeps its own and parks the rest."""

    def __init__(self, ex: "_kiln.Executor"):
        self._ex = ex
        self._lock = threading.Lock()
        self._parked: Dict[int, list] = {}

    def take(self, ids: set, timeout: float) -> list:
        with self._lock:
            mine = []
            for rid in list(self._parked):
                if rid in ids:
                    mine.extend(self._parked.pop(rid))
            if mine:
                return mine
            for ev in self._ex.poll(timeout):
                if ev[0] in ids:
                    mine.append(ev)
                else:
                    self._parked.setdefault(ev[0], []).append(ev)
            return mine


class _Slot:
    def __init__(self, prompt_index: int, sample: int):
        self.prompt_index = prompt_index
        self.sample = sample
        self.text = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tokens: List[int] = []
        self.logprobs: List[TokenLogprob] = []
        self.finish_reason: Optional[str] = None
        self.error = ""
        self.stats: Optional[dict] = None


class LLM:
    """An engine directory opened on the in-flight batching executor.

    Run-time knobs (none needs a rebuild): device, max_batch_size, max_num_tokens, max_seq_len,
    kv_cache_fraction, kv_cache_bytes, block_size, enable_prefix_caching, scheduler_policy,
    enable_chunked_prefill, max_queue_size, f32_activations.
    """

    def __init__(self, engine_dir: Union[str, "os.PathLike[str]"], **options):
        self._ex = _kiln.Executor(os.fspath(engine_dir), dict(options))
        self._dispatch = _Dispatcher(self._ex)
        self.tokenizer = TokenizerView(self._ex)
        self.engine_dir = os.fspath(engine_dir)

    # ---- facts ----
    @property
    def max_seq_len(self) -> int:
        return self._ex.max_seq_len

    @property
    def device(self) -> str:
        return self._ex.device_name

    def memory_plan(self) -> dict:
        return self._ex.memory_plan()

    def metrics(self) -> dict:
        return self._ex.metrics()

    def get_tokenizer(self) -> TokenizerView:
        return self.tokenizer

    # ---- generation ----
    def _prompt_ids(self, prompts) -> Tuple[List[Optional[str]], List[List[int]]]:
        if isinstance(prompts, str) or (
            isinstance(prompts, (list, tuple)) and prompts and isinstance(prompts[0], int)
        ):
            prompts = [prompts]
        texts, ids = [], []
        for p in prompts:
            if isinstance(p, str):
                texts.append(p)
                ids.append(self.tokenizer.encode(p, True))
            else:
                texts.append(None)
                ids.append([int(t) for t in p])
        return texts, ids

    def _events(self, prompt_ids: List[List[int]], params: SamplingParams):
        """Enqueues every (prompt, sample) and yields (slot, event) until all finished."""
        base_seed = SamplingParams.random_seed()
        slots: Dict[int, _Slot] = {}
        try:
            for pi, ids in enumerate(prompt_ids):
                for s in range(params.n):
                    rid = self._ex.enqueue(ids, params.request_params(s, base_seed))
                    slots[rid] = _Slot(pi, s)
            live = set(slots)
            while live:
                for ev in self._dispatch.take(live, 0.1):
                    rid, token, delta, logprob, top, finished, reason, error, stats = ev
                    slot = slots[rid]
                    yield slot, (token, delta, logprob, top, finished, reason, error, stats)
                    if finished:
                        live.discard(rid)
        finally:
            for rid, slot in slots.items():
                if slot.finish_reason is None:
                    self._ex.cancel(rid)

    @staticmethod
    def _apply(slot: _Slot, ev, want_logprobs: bool) -> Tuple[str, List[int], List[TokenLogprob]]:
        token, delta, logprob, top, finished, reason, error, stats = ev
        new_tokens, new_lps = [], []
        if token >= 0:
            slot.tokens.append(token)
            new_tokens.append(token)
            if want_logprobs:
                lp = TokenLogprob(token, logprob, {t: l for t, l in top})
                slot.logprobs.append(lp)
                new_lps.append(lp)
        slot.text += delta
        text = slot.decoder.decode(delta, final=finished)
        if finished:
            slot.finish_reason = reason or "stop"
            slot.error = error
            slot.stats = stats
        return text, new_tokens, new_lps

    def generate(
        self,
        prompts: Union[PromptType, Sequence[PromptType]],
        sampling_params: Optional[SamplingParams] = None,
    ) -> List[RequestOutput]:
        """Generates for every prompt (text or token ids), all batched together."""
        params = sampling_params or SamplingParams()
        texts, ids = self._prompt_ids(prompts)
        want_lp = params.logprobs is not None
        done: Dict[Tuple[int, int], _Slot] = {}
        for slot, ev in self._events(ids, params):
            self._apply(slot, ev, want_lp)
            if slot.finish_reason is not None:
                done[(slot.prompt_index, slot.sample)] = slot
        outs = []
        for pi in range(len(ids)):
            comps = []
            for s in range(params.n):
                sl = done[(pi, s)]
                if sl.finish_reason == "error":
                    raise RuntimeError(f"kiln: generation failed: {sl.error}")
                comps.append(
                    CompletionOutput(
                        index=s,
                        text=bytes(sl.text).decode("utf-8", errors="replace"),
                        token_ids=sl.tokens,
                        finish_reason=sl.finish_reason,
                        logprobs=sl.logprobs if want_lp else None,
                        cumulative_logprob=sum(l.logprob for l in sl.logprobs) if want_lp else 0.0,
                        stats=sl.stats,
                    )
                )
            outs.append(RequestOutput(prompt=texts[pi], prompt_token_ids=ids[pi], outputs=comps))
        return outs

    def generate_stream(
        self,
        prompts: Union[PromptType, Sequence[PromptType]],
        sampling_params: Optional[SamplingParams] = None,
    ) -> Iterator[StreamDelta]:
        """Yields text deltas as they are produced; closing the iterator cancels the requests."""
        params = sampling_params or SamplingParams()
        _, ids = self._prompt_ids(prompts)
        want_lp = params.logprobs is not None
        for slot, ev in self._events(ids, params):
            text, toks, lps = self._apply(slot, ev, want_lp)
            finished = slot.finish_reason is not None
            if text or toks or finished:
                yield StreamDelta(
                    prompt_index=slot.prompt_index,
                    index=slot.sample,
                    text=text,
                    token_ids=toks,
                    finished=finished,
                    finish_reason=slot.finish_reason,
                    logprobs=lps if want_lp else None,
                )

    def chat(
        self,
        messages: Union[List[Message], List[List[Message]]],
        sampling_params: Optional[SamplingParams] = None,
        add_generation_prompt: bool = True,
    ):
        """One conversation -> a RequestOutput; a list of conversations -> a list of them."""
        batch = bool(messages) and isinstance(messages[0], (list, tuple))
        convs = messages if batch else [messages]
        ids = [self.tokenizer.encode_chat(list(c), add_generation_prompt) for c in convs]
        outs = self.generate(ids, sampling_params)
        return outs if batch else outs[0]

    def chat_stream(
        self, messages: List[Message], sampling_params: Optional[SamplingParams] = None
    ) -> Iterator[StreamDelta]:
        return self.generate_stream([self.tokenizer.encode_chat(list(messages))], sampling_params)

    def shutdown(self, drain: bool = False) -> None:
        self._ex.shutdown(drain)

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown(False)
