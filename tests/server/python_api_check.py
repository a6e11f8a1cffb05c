"""The Python API checks, run by test_python_wheel.py inside a fresh venv holding only the
installed kiln wheel (so this file imports nothing but kiln and the standard library).

usage: python python_api_check.py CHECKPOINT TOKENIZER WORKDIR EXPECTED_GREEDY_TEXT_FILE
"""

import os
import shutil
import subprocess
import sys


def main() -> None:
    checkpoint, tokenizer, work, expected_file = sys.argv[1:5]
    with open(expected_file, encoding="utf-8") as f:
        expected = f.read()
    import kiln

    assert kiln.__file__.startswith(sys.prefix), (kiln.__file__, sys.prefix)  # the installed copy
    out = kiln.build(checkpoint, os.path.join(work, "engine"), dtype="f32", tokenizer=tokenizer)
    assert os.path.exists(os.path.join(out, "config.json"))
    try:
        kiln.build(os.path.join(work, "missing"), os.path.join(work, "e2"))
        raise AssertionError("building a missing checkpoint must raise")
    except (RuntimeError, ValueError) as e:
        assert "missing" in str(e), e

    llm = kiln.LLM(out, max_batch_size=16, block_size=16)
    assert llm.max_seq_len > 0 and llm.device
    greedy = kiln.SamplingParams(max_tokens=48, temperature=0)

    # generate: text, token ids, finish reason; equals `kiln run` (greedy)
    [res] = llm.generate("Once upon a time", greedy)
    c = res.outputs[0]
    assert c.text == expected, (c.text, expected)
    assert c.finish_reason in ("length", "stop") and len(c.token_ids) > 0
    assert llm.tokenizer.decode(c.token_ids).strip() == c.text.strip()
    assert res.prompt_token_ids == llm.tokenizer.encode("Once upon a time")

    # batches of text and token-id prompts, n samples, seeds, logprobs
    outs = llm.generate(["Once upon a time", res.prompt_token_ids],
                        kiln.SamplingParams(max_tokens=16, temperature=0.9, seed=5, n=2, logprobs=2))
    assert len(outs) == 2 and all(len(o.outputs) == 2 for o in outs)
    assert outs[0].outputs[0].text == outs[1].outputs[0].text  # same prompt, same seed
    for o in outs[0].outputs:
        assert len(o.logprobs) == len(o.token_ids)
        for lp in o.logprobs:
            assert lp.logprob <= 0 and 1 <= len(lp.top) <= 2
    again = llm.generate("Once upon a time", kiln.SamplingParams(max_tokens=16, temperature=0.9, seed=5))
    assert again[0].outputs[0].text == outs[0].outputs[0].text

    # streaming deltas concatenate to the full text; closing the stream early is fine
    deltas = list(llm.generate_stream("Once upon a time", greedy))
    assert "".join(d.text for d in deltas) == expected
    assert deltas[-1].finished and deltas[-1].finish_reason == c.finish_reason
    it = llm.generate_stream("Once upon a time", kiln.SamplingParams(max_tokens=200, temperature=0, ignore_eos=True))
    next(it)
    it.close()

    # stop strings
    word = [w for w in expected.split() if len(w) > 3][2]
    [stopped] = llm.generate("Once upon a time", greedy.replace(stop=[word]))
    assert stopped.outputs[0].text == expected[: expected.index(word)]
    assert stopped.outputs[0].finish_reason == "stop"

    # chat
    msgs = [{"role": "user", "content": "Once upon a time"}]
    chat = llm.chat(msgs, kiln.SamplingParams(max_tokens=16, temperature=0))
    assert chat.outputs[0].text
    assert "".join(d.text for d in llm.chat_stream(msgs, kiln.SamplingParams(max_tokens=16, temperature=0))) == \
        chat.outputs[0].text

    # the tokenizer, from the engine and stand-alone
    ids = llm.tokenizer.encode("Hello world")
    assert llm.tokenizer.decode(ids) == "Hello world"
    tok = kiln.Tokenizer(out)
    assert tok.encode("Hello world") == ids and tok.vocab_size == 512

    try:
        kiln.SamplingParams(max_tokens=0)
        raise AssertionError("max_tokens=0 must raise")
    except ValueError:
        pass
    try:
        kiln.LLM(out, no_such_knob=1)
        raise AssertionError("unknown knob must raise")
    except TypeError:
        pass
    import time

    for _ in range(50):  # the gauges are refreshed by the step loop
        m = llm.metrics()
        if m["running"] == 0:
            break
        time.sleep(0.1)
    assert m["requests_finished"] >= 8 and m["running"] == 0 and m["kv_blocks_used"] == 0, m
    llm.shutdown()

    # the wheel installs the kiln CLI
    exe = shutil.which("kiln", path=os.path.dirname(sys.executable))
    assert exe, "kiln CLI not installed beside the interpreter"
    r = subprocess.run([exe, "run", "--engine", out, "--temperature", "0", "--max-tokens", "48", "--prompt",
                        "Once upon a time"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout[:-1] == expected, r.stderr
    print("python API checks passed")


if __name__ == "__main__":
    main()
