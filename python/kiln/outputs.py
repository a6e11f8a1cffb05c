"""What generate(), generate_stream() and chat() return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: Dict[int, float] = field(default_factory=dict)  # alternative token id -> logprob


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: List[int]
    finish_reason: Optional[str]          # "stop" | "length" | "cancelled" | "error"
    logprobs: Optional[List[TokenLogprob]] = None
    cumulative_logprob: float = 0.0
    stats: Optional[dict] = None          # prompt/generated tokens, ttft_ms, e2e_ms, ...
    error: str = ""


@dataclass
class RequestOutput:
    prompt: Optional[str]
    prompt_token_ids: List[int]
    outputs: List[CompletionOutput]
    finished: bool = True


@dataclass
class StreamDelta:
    """One step of a streamed generation: new text and tokens of one sample."""

    prompt_index: int
    index: int                       # sample index within the prompt (0..n-1)
    text: str
    token_ids: List[int]
    finished: bool = False
    finish_reason: Optional[str] = None
    logprobs: Optional[List[TokenLogprob]] = None
