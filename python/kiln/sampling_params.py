"""How tokens are chosen and when generation stops (vLLM-style SamplingParams)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import List, Optional, Union


@dataclass
class SamplingParams:
    n: int = 1                          # samples per prompt
    max_tokens: int = 16
    temperature: float = 1.0            # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0                      # 0 (or -1) = off
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: Optional[int] = None          # None = random; sample i of n uses seed + i
    stop: Union[None, str, List[str]] = None
    stop_token_ids: List[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: Optional[int] = None      # None = no logprobs; k = the chosen token and k alternatives

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            self.top_k = 0
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError("logprobs must be >= 0")

    def stops(self) -> List[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def request_params(self, sample: int, base_seed: int) -> dict:
        """The executor's parameters for sample `sample` of n."""
        seed = (self.seed if self.seed is not None else base_seed) + sample
        return {
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "top_k": int(self.top_k),
            "min_p": float(self.min_p),
            "presence_penalty": float(self.presence_penalty),
            "frequency_penalty": float(self.frequency_penalty),
            "repetition_penalty": float(self.repetition_penalty),
            "seed": seed & 0xFFFFFFFFFFFFFFFF,
            "max_tokens": int(self.max_tokens),
            "stop": self.stops(),
            "stop_token_ids": [int(t) for t in self.stop_token_ids],
            "ignore_eos": bool(self.ignore_eos),
            "logprobs": int(self.logprobs or 0),
        }

    def replace(self, **changes) -> "SamplingParams":
        return dataclasses.replace(self, **changes)

    @staticmethod
    def random_seed() -> int:
        return random.getrandbits(63)
