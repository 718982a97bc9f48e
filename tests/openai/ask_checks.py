"""`agora ask` against `agora dev`: called by test_openai.py.

Three questions whose answers this script reads from the node's RPC directly: the chain's
height, the richest account, the number of providers. For each, `agora ask --json` must show the
tool call it made and the node's data that call returned (checked against the RPC); whether
the answer states the ledger's value is checked too (3/3 with the default route: the tool and the
answer's fact ranked by the network's embedding model, chosen under a schema by SmolLM2-135M).
"""

import json
import re
import subprocess
import urllib.request

QUESTIONS = [
    ("What is the current height of the chain?", "chain_status"),
    ("Which account is the richest?", "top_accounts"),
    ("How many providers are registered?", "list_providers"),
]


def rpc(url, path):
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=30) as r:
        return json.load(r)


def run(binary, info, check):
    truth_before = {
        "height": rpc(info["rpc"], "/v1/status")["height"],
        "richest": rpc(info["rpc"], "/v1/accounts?top=1")["accounts"][0]["address"],
        "providers": rpc(info["rpc"], "/v1/providers")["total"],
    }
    right = 0
    for question, tool in QUESTIONS:
        out = subprocess.run(
            [binary, "ask", "--json", "--rpc", info["rpc"], "--gateway", info["base_url"],
             "--api-key", info["key"], question],
            capture_output=True, text=True, timeout=600)
        if out.returncode != 0 and not out.stdout.strip():
            raise AssertionError(f"agora ask failed: {out.stderr[-2000:]}")
        got = json.loads(out.stdout.strip().splitlines()[-1])
        calls = got["tool_calls"]
        print(f"    ask {question!r}: calls {[(c['tool'], c['arguments']) for c in calls]}, "
              f"answer {got['answer']!r}")
        check(f"agora ask shows its tool calls ({question})", calls and all("result" in c for c in calls), got)
        # What a call returned is the node's data, whichever tool the model chose.
        last = calls[-1]
        if last["tool"] == "chain_status":
            check("chain_status reads the node's height",
                  last["result"]["height"] >= truth_before["height"], last)
        if last["tool"] == "top_accounts":
            check("top_accounts reads the node's richest account",
                  last["result"]["richest_accounts"][0]["address"] == truth_before["richest"], last)
        if last["tool"] == "list_providers":
            check("list_providers reads the node's provider count",
                  last["result"]["number_of_providers"] == truth_before["providers"], last)
        answer = got["answer"] or ""
        numbers = [int(n) for n in re.findall(r"\d+", answer)]
        h = truth_before["height"]
        ok = last["tool"] == tool and {
            # The chain grows while the question runs: a height from then on is right.
            "chain_status": any(h <= n <= h + 400 for n in numbers),
            "top_accounts": truth_before["richest"] in answer,
            "list_providers": truth_before["providers"] in numbers,
        }[tool]
        right += ok
        print(f"    {'right' if ok else 'wrong'} (expected the tool {tool} and the ledger's value)")
    print(f"    agora ask answered {right}/{len(QUESTIONS)} questions right on SmolLM2-135M")
    check("agora ask answers the three questions right", right == len(QUESTIONS), right)
