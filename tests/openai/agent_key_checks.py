"""An agent's own API key at the gateway, against `agora dev`: called by test_openai.py.

`agora agent new --gateway` makes an account, funds it from the dev wallet, asks the gateway for
a key with the agent's signature (POST /v1/keys, with the agent's per-request cap and an expiry)
and deposits the budget to the gateway's account from the agent's own account. The stock SDK then
uses that key: refused (429) until the deposit is final and credited, served after it, and a
request whose worst case is over the cap is refused (400 request_over_cap) before any work.
"""

import json
import os
import subprocess
import tempfile
import time

import openai


def run(binary, info, check, chat_model):
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, AGORA_HOME=home, AGORA_KEYSTORE=info["keystore"],
                   AGORA_PASSWORD="dev")
        out = subprocess.run(
            [binary, "agent", "new", "--json", "--rpc", info["rpc"], "--name", "keyed",
             "--budget", "0.01", "--per-request-cap", "0.0001", "--gateway", info["base_url"]],
            capture_output=True, text=True, timeout=120, env=env)
        check("agora agent new --gateway succeeds", out.returncode == 0, out.stderr[-2000:])
        made = json.loads(out.stdout.strip().splitlines()[-1])
        key = made["api_key"]
        check("the key is kept beside the agent, owner-only",
              open(os.path.join(home, "agents", "keyed", "api-key.txt")).read() == key
              and os.stat(os.path.join(home, "agents", "keyed", "api-key.txt")).st_mode & 0o077 == 0)
        client = openai.OpenAI(base_url=info["base_url"], api_key=key, max_retries=0, timeout=120)
        ask = lambda n: client.chat.completions.create(
            model=chat_model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=n,
            temperature=0)
        deadline = time.time() + 60
        while True:
            try:
                r = ask(8)
                break
            except openai.RateLimitError as e:
                # Before the deposit is final and scanned, the key has no credit.
                check("an unfunded key is refused for its quota",
                      e.body and e.body.get("code") == "insufficient_quota", e.body)
                if time.time() > deadline:
                    raise AssertionError("the agent's deposit was not credited within 60 s")
                time.sleep(0.5)
        check("the agent's key is served once its deposit is credited",
              r.usage.completion_tokens >= 1, r)
        print(f"    agent key served after its deposit: {r.usage.completion_tokens} tokens")
        try:
            ask(4000)
            raise AssertionError("a request over the per-request cap was served")
        except openai.BadRequestError as e:
            check("a request over the agent's per-request cap is refused before any work",
                  e.body.get("code") == "request_over_cap", e.body)
