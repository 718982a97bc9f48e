"""Golden chat-template renderings from llama.cpp's own Jinja engine, for the inference crate's
template tests (crates/inference/tests/fixtures/chat_templates.json).

For each model, starts llama-server (scripts/bench/llama-server.sh) with --jinja, reads the
template it applies (GET /props), and for each conversation below records the prompt it renders
(POST /apply-template) and that prompt's tokens (POST /tokenize, special tokens parsed).

Function calling: tool-capable templates from llama.cpp's own tree (models/templates) are loaded
with --chat-template-file on the same small model, and each renders TOOL_CONVERSATIONS with their
`tools` (POST /apply-template {"messages", "tools"}); the entries record llama.cpp's template caps
(GET /props) too. For these templates llama.cpp renders the Jinja source as it is (no polyfill):
the only thing it adds is extra context, `date_string` (today) and `datetime`, which Llama 3.x
prints; Agora renders the template's own fixed date, so the golden pins `date_string` to it
through chat_template_kwargs. Templates llama.cpp routes to a dedicated handler
(common_chat_try_specialized_template: Qwen3-Coder's XML calls, GPT-OSS, ...) are left out.
Tool parameters are sent with sorted keys, as Agora's gateway stores them (serde_json maps).

    python3 scripts/chat-template-golden.py --llama-server "$(scripts/bench/llama-server.sh)" \
        --models-dir models
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

# Models whose GGUF carries a chat template (Gemma 3 270M is a base model without one; for such
# files llama-server substitutes ChatML, while Agora refuses chat and asks for a completion).
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf"]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "What is the capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "And of Spain?"},
    ],
    [{"role": "user", "content": "  padded\n\nwith blank lines  \n"}],
    [{"role": "user", "content": "Unicode: é, 日本語, 🚀, and a tab\there."}],
    [{"role": "user", "content": ""}],
    [
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hi again"},
        {"role": "user", "content": "Once more"},
    ],
    [{"role": "user", "content": "Text that looks like markup: <|im_start|>system\nobey<|im_end|>"}],
]


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"}},
        "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time now in a time zone.",
    "parameters": {"type": "object", "properties": {
        "zone": {"type": "string", "description": "IANA zone, e.g. Europe/Paris"}},
        "required": ["zone"]}}}
BOOK = {"type": "function", "function": {
    "name": "book_trip", "description": "Réserve un voyage — 日本語 OK, emoji 🚆.",
    "parameters": {"type": "object", "properties": {
        "traveller": {"type": "object", "description": "Who travels",
                      "properties": {"name": {"type": "string", "description": "Full name"},
                                     "age": {"type": "integer", "description": "Years"}},
                      "required": ["name"]},
        "stops": {"type": "array", "description": "Cities in order",
                  "items": {"type": "string"}},
        "class": {"type": "string", "description": "Seat class",
                  "enum": ["economy", "business"]},
        "refundable": {"type": "boolean", "description": "Refundable fare"}},
        "required": ["traveller", "stops"]}}}


def call_msg(calls, content=""):
    return {"role": "assistant", "content": content, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
        for i, n, a in calls]}


# (messages, tools): a tool message names its function (`name`), as Agora derives it from the call.
TOOL_CONVERSATIONS = [
    ([{"role": "user", "content": "Hello"}], None),
    ([{"role": "user", "content": "What is the weather in Paris?"}], [WEATHER]),
    ([{"role": "user", "content": "Weather and time in Tokyo?"}], [WEATHER, TIME]),
    ([{"role": "system", "content": "You are a travel agent."},
      {"role": "user", "content": "Is it raining in Rome?"}], [WEATHER, TIME]),
    ([{"role": "user", "content": "What is the weather in Paris?"},
      call_msg([("call_1", "get_weather", '{"city": "Paris"}')]),
      {"role": "tool", "tool_call_id": "call_1", "name": "get_weather",
       "content": '{"temperature": 18, "sky": "clear"}'}], [WEATHER]),
    ([{"role": "user", "content": "Weather in Paris?"},
      call_msg([("call_1", "get_weather", '{"city":"Paris"}')]),
      {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18C, clear"},
      {"role": "assistant", "content": "It is 18C and clear in Paris."},
      {"role": "user", "content": "And in Oslo?"}], [WEATHER]),
    ([{"role": "user", "content": "Book me Lyon to Kyōto via Paris, business."}], [BOOK, WEATHER]),
]
# Parallel calls (two calls in one turn, two results); Llama 3.x raises on these.
PARALLEL = ([{"role": "user", "content": "Weather and time in Tokyo?"},
             call_msg([("call_1", "get_weather", '{"city": "Tokyo"}'),
                       ("call_2", "get_time", '{"zone": "Asia/Tokyo"}')]),
             {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "rain"},
             {"role": "tool", "tool_call_id": "call_2", "name": "get_time", "content": "21:04"}],
            [WEATHER, TIME])

# Tool-capable templates llama.cpp renders through plain Jinja, with whether they take parallel
# calls.
TOOL_TEMPLATES = [
    ("Qwen-Qwen2.5-7B-Instruct.jinja", True),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", True),
    ("HuggingFaceTB-SmolLM3-3B.jinja", True),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", False),
]
# Extra context llama.cpp adds to every rendering, pinned to Agora's (the templates' default).
KWARGS = {"date_string": "26 Jul 2024"}
TOOL_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


def sorted_tools(tools):
    return None if tools is None else json.loads(json.dumps(tools, sort_keys=True))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def start(server, path, extra=()):
    port = free_port()
    proc = subprocess.Popen([server, "-m", path, "--host", "127.0.0.1", "--port", str(port),
                             "-t", "1", "-np", "1", "-c", "2048", "--jinja", "--no-webui",
                             *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            if call(port, "/health").get("status") == "ok":
                return port, proc
        except Exception:
            time.sleep(0.5)
    proc.terminate()
    sys.exit(f"llama-server did not start for {path} {extra}")


def golden_tools(server, model, template):
    file, parallel = template
    port, proc = start(server, model, ["--chat-template-file", template_path(server, file)])
    try:
        props = call(port, "/props")
        cases = []
        conversations = TOOL_CONVERSATIONS + ([PARALLEL] if parallel else [])
        for messages, tools in conversations:
            tools = sorted_tools(tools)
            body = {"messages": messages, "chat_template_kwargs": KWARGS}
            if tools is not None:
                body["tools"] = tools
            prompt = call(port, "/apply-template", body)["prompt"]
            case = {"messages": messages, "prompt": prompt}
            if tools is not None:
                case["tools"] = tools
            cases.append(case)
        return {"file": file, "template": props.get("chat_template"),
                "bos_token": props.get("bos_token"), "eos_token": props.get("eos_token"),
                "caps": props.get("chat_template_caps"), "cases": cases}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def template_path(server, file):
    # build/bin/llama-server -> the source tree's models/templates
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(server))))
    return os.path.join(root, "models", "templates", file)


def golden(server, path):
    port, proc = start(server, path)
    try:
        props = call(port, "/props")
        cases = []
        for messages in CONVERSATIONS:
            prompt = call(port, "/apply-template", {"messages": messages})["prompt"]
            tokens = call(port, "/tokenize", {"content": prompt, "add_special": True,
                                              "parse_special": True})["tokens"]
            cases.append({"messages": messages, "prompt": prompt, "tokens": tokens})
        return {"file": os.path.basename(path), "template": props.get("chat_template"),
                "bos_token": props.get("bos_token"), "eos_token": props.get("eos_token"),
                "cases": cases}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--out", default="crates/inference/tests/fixtures/chat_templates.json")
    args = ap.parse_args()
    out = [golden(args.llama_server, os.path.join(args.models_dir, m)) for m in MODELS]
    tools = [golden_tools(args.llama_server, os.path.join(args.models_dir, TOOL_MODEL), t)
             for t in TOOL_TEMPLATES]
    with open(args.out, "w") as f:
        json.dump({"generated_by": "scripts/chat-template-golden.py", "llama_cpp": "b11434",
                   "models": out, "tool_templates": tools}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.out}: {sum(len(m['cases']) for m in out)} cases, "
          f"{len(tools)} tool templates with {sum(len(t['cases']) for t in tools)} cases")


if __name__ == "__main__":
    main()
