#!/usr/bin/env python3
"""Time from `agora dev` to the first answer, on a warm machine (binary built, models present).

    python3 scripts/time-to-first-answer.py [--bin target/release/agora] [--runs 3] [--providers 1]
    python3 scripts/time-to-first-answer.py --launcher scripts/dev.sh --runs 1   # the cold first run

`--launcher` runs that command (given `agora dev`'s flags) instead of `BIN dev`: with
`scripts/dev.sh` on a fresh clone, an empty CARGO_TARGET_DIR and an empty AGORA_MODELS_DIR, the
first run's times include the prerequisite check, the model download and the release build.

Each run starts `agora dev` on free loopback ports, then sends the banner's chat request until
one answers. Printed per run: seconds to the banner, and to the first answer (both from the
process start). The first run of each kind starts a new chain (`--reset`); the others resume it,
as a second `agora dev` does. Only the standard library is used.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(base, key, model):
    body = json.dumps({"model": model, "max_tokens": 8,
                       "messages": [{"role": "user", "content": "Hello!"}]}).encode()
    req = urllib.request.Request(f"{base}/chat/completions", data=body, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["choices"][0]["message"]["content"]


def one_run(launcher, workdir, providers, reset):
    rpc, gw, p2p = free_port(), free_port(), free_port()
    cmd = launcher + ["--dir", workdir, "--providers", str(providers),
           "--rpc", f"127.0.0.1:{rpc}", "--gateway-listen", f"127.0.0.1:{gw}",
           "--p2p-listen", f"/ip4/127.0.0.1/tcp/{p2p}"]
    if reset:
        cmd.append("--reset")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    out, banner = "", None
    try:
        while "Press Ctrl-C" not in out:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"agora dev exited:\n{out}")
            out += line
        banner = time.monotonic() - t0
        base = re.search(r"OpenAI API\s+(\S+)", out).group(1)
        key = re.search(r"API key\s+(\S+)", out).group(1)
        model = re.search(r"model\s+(\S+)", out).group(1)
        while True:
            try:
                ask(base, key, model)
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() - t0 > banner + 120:
                    raise
                time.sleep(0.05)
        return banner, time.monotonic() - t0
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/agora")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--providers", type=int, default=1)
    ap.add_argument("--launcher", help="command that runs `agora dev` with the flags after it")
    a = ap.parse_args()
    launcher = shlex.split(a.launcher) if a.launcher else [a.bin, "dev"]
    workdir = tempfile.mkdtemp(prefix="agora-ttfa-")
    try:
        print(f"agora dev --providers {a.providers} ({' '.join(launcher)})")
        print("| run | chain | banner (s) | first answer (s) |")
        print("|---|---|---|---|")
        for i in range(a.runs):
            reset = i == 0
            banner, answer = one_run(launcher, os.path.join(workdir, "dev"), a.providers, reset)
            print(f"| {i + 1} | {'new' if reset else 'resumed'} | {banner:.2f} | {answer:.2f} |",
                  flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
