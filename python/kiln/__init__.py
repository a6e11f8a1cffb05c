"""kiln: build LLM checkpoints into inference engines and run them (CPU or NVIDIA GPUs).

    import kiln
    kiln.build("path/to/hf-checkpoint", "engines/model", dtype="f16")
    llm = kiln.LLM("engines/model", max_batch_size=64)
    for out in llm.generate(["Once upon a time"], kiln.SamplingParams(max_tokens=32, temperature=0)):
        print(out.outputs[0].text)
"""

from ._kiln import __version__
from ._kiln import Tokenizer
from .builder import build
from .llm import LLM
from .outputs import CompletionOutput, RequestOutput, StreamDelta, TokenLogprob
from .sampling_params import SamplingParams

__all__ = [
    "__version__",
    "build",
    "LLM",
    "SamplingParams",
    "RequestOutput",
    "CompletionOutput",
    "StreamDelta",
    "TokenLogprob",
    "Tokenizer",
]
