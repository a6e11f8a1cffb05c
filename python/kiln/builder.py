"""kiln.build: checkpoint -> engine directory (wraps kiln::BuildEngine)."""

from __future__ import annotations

import os
from typing import Iterable, Optional, Union

from . import _kiln

PathLike = Union[str, "os.PathLike[str]"]


def build(
    checkpoint: Optional[PathLike],
    out: PathLike,
    dtype: str = "auto",
    *,
    tokenizer: Optional[PathLike] = None,
    hf_config: Optional[PathLike] = None,
    dummy_weights: bool = False,
    dummy_seed: int = 1234,
    lora: Iterable[PathLike] = (),
) -> str:
    """Builds an engine directory and returns its path.

    checkpoint: an HF folder (config.json + *.safetensors), a llama2.c .bin or a GGUF file
    (None with dummy_weights=True and hf_config). dtype: auto | f32 | f16 | bf16.
    tokenizer: a tokenizer file or folder (default: found beside the checkpoint).
    lora: PEFT adapter folders merged into the weights.
    """
    _kiln.build(
        os.fspath(checkpoint) if checkpoint is not None else "",
        os.fspath(out),
        dtype=dtype,
        tokenizer=os.fspath(tokenizer) if tokenizer else "",
        hf_config=os.fspath(hf_config) if hf_config else "",
        dummy_weights=dummy_weights,
        dummy_seed=dummy_seed,
        lora=[os.fspath(p) for p in lora],
    )
    return os.fspath(out)
