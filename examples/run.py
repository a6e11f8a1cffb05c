#!/usr/bin/env python3
"""Run an engine with the kiln Python package: one-shot generation, streaming, or chat.

    python examples/run.py --engine /tmp/engines/stories260K --prompt "Once upon a time" --temperature 0
    python examples/run.py --engine /tmp/engines/stories260K --prompt "Once upon a time" --stream
    python examples/run.py --engine /tmp/engines/stories260K --chat        # interactive, streamed
"""

import argparse
import sys

import kiln


def sampling(a) -> kiln.SamplingParams:
    return kiln.SamplingParams(max_tokens=a.max_tokens, temperature=a.temperature, top_p=a.top_p, top_k=a.top_k,
                               seed=a.seed, n=a.n, stop=a.stop or None)


def chat(llm: kiln.LLM, a) -> None:
    history = [{"role": "system", "content": a.system}] if a.system else []
    print(f"kiln chat on {llm.device}: type a message, Ctrl-D to quit.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        reply = ""
        for d in llm.chat_stream(history, sampling(a).replace(n=1)):
            print(d.text, end="", flush=True)
            reply += d.text
        print()
        history.append({"role": "assistant", "content": reply})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", required=True)
    ap.add_argument("--prompt", action="append", help="prompt (repeatable: a batch)")
    ap.add_argument("--stream", action="store_true", help="print text as it is produced")
    ap.add_argument("--chat", action="store_true", help="interactive multi-turn chat")
    ap.add_argument("--system", default="", help="chat: system prompt")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--n", type=int, default=1, help="samples per prompt")
    ap.add_argument("--stop", action="append")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-batch-size", type=int, default=64)
    a = ap.parse_args()

    llm = kiln.LLM(a.engine, device=a.device, max_batch_size=a.max_batch_size)
    if a.chat:
        chat(llm, a)
        return
    prompts = a.prompt or ["Once upon a time"]
    if a.stream:
        if len(prompts) > 1 or a.n > 1:
            ap.error("--stream takes one prompt and n = 1")
        for d in llm.generate_stream(prompts[0], sampling(a)):
            print(d.text, end="", flush=True)
        print()
        return
    for out in llm.generate(prompts, sampling(a)):
        for c in out.outputs:
            print(f"--- prompt {out.prompt!r}, sample {c.index} ({c.finish_reason}, {len(c.token_ids)} tokens)")
            print(out.prompt + c.text)


if __name__ == "__main__":
    main()
