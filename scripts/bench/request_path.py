"""The whole request path against the peer a user would run instead: tokens/s and time to first
token of `agora dev` (gateway -> overlay -> provider -> llama.cpp, paid per token) beside
llama.cpp's own `llama-server`, on the same GGUF, same thread count, same slots, with the same
client (the official `openai` package), at several numbers of concurrent streams.

    python3 scripts/bench/request_path.py --agora target/release/agora \
        --llama-server "$(scripts/bench/llama-server.sh)" --model models/SmolLM2-135M-Instruct.Q4_1.gguf

Both servers stay up; each round runs every concurrency against one, then the other, and the
order alternates between rounds, so slow drift of the machine hits both alike. Prints each
round's figures and then the medians with our ratio (ours / peer's).
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import openai

PROMPT = "Write a long story about a lighthouse keeper and a storm."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drain(proc, lines):
    for line in proc.stdout:
        lines.append(line)


def start_agora(binary, workdir, threads, slots):
    rpc, gw, p2p = free_port(), free_port(), free_port()
    cmd = [binary, "dev", "--dir", os.path.join(workdir, "dev"), "--reset",
           "--rpc", f"127.0.0.1:{rpc}", "--gateway-listen", f"127.0.0.1:{gw}",
           "--p2p-listen", f"/ip4/127.0.0.1/tcp/{p2p}",
           "--serve-model", "smollm2-135m-instruct",
           "--threads", str(threads), "--slots", str(slots),
           # Audits run on validators' machines, not beside the provider being measured.
           "--no-audit"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    info, lines = {}, []
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                sys.exit("agora dev exited:\n" + "".join(lines))
            continue
        lines.append(line)
        if m := re.search(r"OpenAI API\s+(\S+)", line):
            info["base_url"] = m.group(1)
        if m := re.search(r"API key\s+(\S+)", line):
            info["key"] = m.group(1)
        if "Press Ctrl-C" in line:
            break
    if len(info) != 2:
        proc.kill()
        sys.exit("agora dev printed no gateway:\n" + "".join(lines))
    threading.Thread(target=drain, args=(proc, lines), daemon=True).start()
    return proc, info["base_url"], info["key"]


def start_llama_server(binary, model, threads, slots, ctx_per_slot):
    port = free_port()
    cmd = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port),
           "-t", str(threads), "-tb", str(threads), "-np", str(slots),
           "-c", str(slots * ctx_per_slot), "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    threading.Thread(target=drain, args=(proc, lines), daemon=True).start()
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("llama-server exited:\n" + "".join(lines))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, f"http://127.0.0.1:{port}/v1", "none"
        except Exception:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit("llama-server not healthy:\n" + "".join(lines))


def one_stream(client, model, tokens, out):
    start = time.perf_counter()
    first = None
    n = 0
    usage = None
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=tokens,
        temperature=0, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        for c in chunk.choices:
            if c.delta and c.delta.content:
                if first is None:
                    first = time.perf_counter()
                n += 1
    end = time.perf_counter()
    out.append({"ttft": (first or end) - start, "tokens": usage if usage is not None else n,
                "wall": end - start})


def run_load(base_url, key, model, concurrency, tokens):
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=300)
    results = []
    threads = [threading.Thread(target=one_stream, args=(client, model, tokens, results))
               for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if len(results) != concurrency:
        sys.exit(f"{base_url}: {concurrency - len(results)} streams failed")
    total = sum(r["tokens"] for r in results)
    return {"tok_s": total / wall, "ttft_ms": 1000 * statistics.median(r["ttft"] for r in results),
            "tokens": total}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agora", required=True)
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,8,16")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    work = tempfile.mkdtemp(prefix="agora-bench-")
    ours = start_agora(args.agora, work, args.threads, args.slots)
    peer = start_llama_server(args.llama_server, args.model, args.threads, args.slots, 4096)
    sides = {"agora": (ours, "smollm2-135m-instruct"), "llama-server": (peer, "smollm2")}
    figures = {(s, c): [] for s in sides for c in levels}
    try:
        for name, ((_, url, key), model) in sides.items():  # warm-up: weights paged in
            run_load(url, key, model, 1, 16)
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                (_, url, key), model = sides[name]
                for c in levels:
                    f = run_load(url, key, model, c, args.tokens)
                    figures[(name, c)].append(f)
                    print(f"round {r + 1} {name:12} {c:>2} streams: {f['tok_s']:7.1f} tok/s, "
                          f"ttft p50 {f['ttft_ms']:6.1f} ms ({f['tokens']} tokens)", flush=True)
    finally:
        for (proc, _, _), _ in sides.values():
            os.killpg(proc.pid, signal.SIGINT)
        for (proc, _, _), _ in sides.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    print(f"\nmedians over {args.rounds} rounds, {args.tokens}-token streams, "
          f"{args.threads} threads, {args.slots} slots, {os.cpu_count()} cores")
    print("streams  agora tok/s  llama-server tok/s  ratio  agora ttft ms  llama-server ttft ms")
    for c in levels:
        a = statistics.median(f["tok_s"] for f in figures[("agora", c)])
        p = statistics.median(f["tok_s"] for f in figures[("llama-server", c)])
        at = statistics.median(f["ttft_ms"] for f in figures[("agora", c)])
        pt = statistics.median(f["ttft_ms"] for f in figures[("llama-server", c)])
        print(f"{c:>7}  {a:11.1f}  {p:18.1f}  {a / p:5.2f}x  {at:13.1f}  {pt:19.1f}")


if __name__ == "__main__":
    main()
