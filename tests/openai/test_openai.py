"""The official `openai` Python package against a network started here by `agora dev`.

Run by scripts/test.sh after the Rust tests:
    AGORA_BIN=target/debug/agora python3 tests/openai/test_openai.py
Starts `agora dev` (validator + provider serving SmolLM2 and MiniLM + gateway) in a temporary
directory on free loopback ports, then checks chat (plain and streamed), completions,
embeddings, the models list and the error cases through the SDK, then function calling
(tools_checks.py), the Responses API (responses_checks.py), an agent's own key at the gateway
(agent_key_checks.py) and `agora ask` (ask_checks.py).
"""

import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import openai

import agent_key_checks
import ask_checks
import responses_checks
import tools_checks


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_network(binary, workdir):
    rpc, gw, p2p = free_port(), free_port(), free_port()
    cmd = [
        binary, "dev", "--dir", os.path.join(workdir, "dev"), "--reset",
        "--rpc", f"127.0.0.1:{rpc}",
        "--gateway-listen", f"127.0.0.1:{gw}",
        "--p2p-listen", f"/ip4/127.0.0.1/tcp/{p2p}",
        "--threads", "2", "--slots", "4",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    info = {}
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError("agora dev exited:\n" + "".join(lines))
            continue
        lines.append(line)
        m = re.search(r"OpenAI API\s+(\S+)", line)
        if m:
            info["base_url"] = m.group(1)
        m = re.search(r"^\s*RPC\s+(\S+)", line)
        if m:
            info["rpc"] = m.group(1)
        m = re.search(r"keystore\s+(\S+) \(password", line)
        if m:
            info["keystore"] = m.group(1)
        m = re.search(r"API key\s+(\S+)", line)
        if m:
            info["key"] = m.group(1)
        if "Press Ctrl-C" in line:
            break
    if "base_url" not in info or "key" not in info:
        proc.kill()
        raise RuntimeError("agora dev did not print the gateway:\n" + "".join(lines))
    # Keep draining the output so the child never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, info


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok  {name}")


def wait_for_models(client, want, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ids = [m.id for m in client.models.list().data]
        if all(w in ids for w in want):
            return ids
        time.sleep(0.5)
    raise AssertionError(f"models {want} not listed; got {ids}")


def main():
    binary = os.environ.get("AGORA_BIN", "target/debug/agora")
    with tempfile.TemporaryDirectory() as workdir:
        proc, info = start_network(binary, workdir)
        try:
            run_checks(info)
            agent_key_checks.run(binary, info, check, "smollm2-135m-instruct")
            ask_checks.run(binary, info, check)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print("openai SDK checks passed")


def run_checks(info):
    client = openai.OpenAI(base_url=info["base_url"], api_key=info["key"], max_retries=0, timeout=120)
    chat_model, embed_model = "smollm2-135m-instruct", "all-minilm-l6-v2"

    ids = wait_for_models(client, [chat_model, embed_model])
    check("models list", chat_model in ids and embed_model in ids, ids)

    r = client.chat.completions.create(
        model=chat_model,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=24, temperature=0, seed=1)
    text = r.choices[0].message.content
    check("chat non-stream", r.object == "chat.completion" and len(text) > 0 and r.usage.completion_tokens > 0, r)
    check("chat answer is coherent", "paris" in text.lower(), text)

    chunks = list(client.chat.completions.create(
        model=chat_model,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=24, temperature=0, seed=1, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage]
    check("chat stream equals non-stream (greedy)", streamed == text, (streamed, text))
    check("stream usage chunk", usage and usage[-1].completion_tokens == r.usage.completion_tokens, usage)

    c = client.completions.create(model=chat_model, prompt="The sky is", max_tokens=8, temperature=0)
    check("completions", c.object == "text_completion" and len(c.choices[0].text) > 0, c)

    e = client.embeddings.create(model=embed_model, input=["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."])
    v = [d.embedding for d in e.data]
    check("embeddings shape", len(v) == 3 and len(v[0]) == 384, [len(x) for x in v])
    cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    check("paraphrases closer than unrelated", cos(v[0], v[1]) > cos(v[0], v[2]), (cos(v[0], v[1]), cos(v[0], v[2])))

    bad = openai.OpenAI(base_url=info["base_url"], api_key="sk-not-a-key", max_retries=0)
    try:
        bad.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("bad key accepted")
    except openai.AuthenticationError as err:
        check("bad key is 401", err.status_code == 401 and err.code == "invalid_api_key", err)

    try:
        client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "hi"}], temperature=5)
        raise AssertionError("bad request accepted")
    except openai.BadRequestError as err:
        body = err.body or {}
        check("bad request is 400 with an OpenAI error body",
              err.status_code == 400 and body.get("param") == "temperature" and body.get("type") == "invalid_request_error", body)

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as err:
        check("unknown model is 404", err.status_code == 404 and err.code == "model_not_found", err)

    tools_checks.run(client, chat_model, check)
    responses_checks.run(client, chat_model, check)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - report and fail
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
