"""Function calling through the stock `openai` SDK: called by test_openai.py against `agora dev`.

Checks tool calls whole and streamed, a two-step tool loop, each kind of `tool_choice`,
`parallel_tool_calls`, and that arguments validate against their JSON Schema (the `jsonschema`
package, not Agora's own validator) in every one of N seeded generations on SmolLM2.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import jsonschema

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
BOOK = {
    "type": "function",
    "function": {
        "name": "book_table",
        "description": "Book a table at a restaurant.",
        "parameters": {
            "type": "object",
            "properties": {
                "restaurant": {"type": "string", "maxLength": 40},
                "people": {"type": "integer"},
                "when": {
                    "type": "object",
                    "properties": {"day": {"enum": ["mon", "tue", "wed"]}, "hour": {"type": "integer"}},
                    "required": ["day", "hour"],
                },
                "notes": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3},
                "outdoor": {"type": "boolean"},
            },
            "required": ["restaurant", "people", "when"],
        },
    },
}
TOOLS = [WEATHER, BOOK]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def valid_calls(calls):
    """Every call names an offered function and its arguments validate; returns the names."""
    names = []
    for c in calls:
        schema = SCHEMAS[c.function.name]
        jsonschema.validate(json.loads(c.function.arguments), schema)
        names.append(c.function.name)
    return names


def streamed_calls(stream):
    """Tool calls put together from chunk deltas, as SDK users do; and the finish reason."""
    calls, finish = {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for d in choice.delta.tool_calls or []:
            c = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
            c["id"] = d.id or c["id"]
            if d.function is not None:
                c["name"] = d.function.name or c["name"]
                c["arguments"] += d.function.arguments or ""
        finish = choice.finish_reason or finish
    return [calls[i] for i in sorted(calls)], finish


def run(client, model, check):
    create = client.chat.completions.create

    r = create(model=model, messages=ASK, tools=TOOLS, tool_choice="required", temperature=0, seed=1)
    msg = r.choices[0].message
    check("tool call (non-streaming)", r.choices[0].finish_reason == "tool_calls" and msg.tool_calls
          and valid_calls(msg.tool_calls) and msg.tool_calls[0].id.startswith("call_"), r)

    # Not compared with the call above token for token: the second run reuses the first one's
    # cached prompt, and a prefill in other batch shapes can tip a near tie of this small model.
    calls, finish = streamed_calls(create(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                                          temperature=0, seed=1, stream=True))
    for c in calls:
        jsonschema.validate(json.loads(c["arguments"]), SCHEMAS[c["name"]])
    check("tool call (streaming): deltas add up to valid calls",
          finish == "tool_calls" and len(calls) == 1 and all(c["id"].startswith("call_") for c in calls), calls)

    # The loop: the call, our tool's result, the model's answer in text. The answer is asked for
    # with tool_choice "none": under "auto" SmolLM2-135M copies its call again instead of
    # answering (printed below, not asserted; docs/design/gateway.md, "Function calling").
    history = ASK + [msg.model_dump(exclude_none=True)]
    for c in msg.tool_calls:
        history.append({"role": "tool", "tool_call_id": c.id,
                        "content": json.dumps({"city": "Paris", "temperature_celsius": 18, "sky": "sunny"})})
    again = create(model=model, messages=history, tools=TOOLS, temperature=0, seed=1, max_tokens=256)
    print(f"    two-step loop under auto: {len(again.choices[0].message.tool_calls or [])} further calls, "
          f"content {again.choices[0].message.content!r}")
    check("two-step loop under auto: a well-formed answer", again.choices[0].finish_reason != "length" and (
          again.choices[0].message.content is not None or valid_calls(again.choices[0].message.tool_calls)), again)
    final = create(model=model, messages=history, tools=TOOLS, tool_choice="none", temperature=0, seed=1,
                   max_tokens=64)
    answer = final.choices[0].message
    print(f"    two-step loop, final answer: {answer.content!r}")
    check("two-step tool loop ends in a text answer", answer.content and not answer.tool_calls, final)

    none = create(model=model, messages=ASK, tools=TOOLS, tool_choice="none", temperature=0, seed=1, max_tokens=32)
    check("tool_choice none answers in text", none.choices[0].message.tool_calls is None
          and none.choices[0].message.content, none)
    auto = create(model=model, messages=ASK, tools=TOOLS, tool_choice="auto", temperature=0, seed=1, max_tokens=256)
    m = auto.choices[0].message
    print(f"    auto: {auto.choices[0].finish_reason}, {len(m.tool_calls or [])} calls, content {m.content!r}")
    check("tool_choice auto: a valid call or a text answer", auto.choices[0].finish_reason != "length" and (
          (m.tool_calls and valid_calls(m.tool_calls)) or (m.content and not m.tool_calls)), auto)
    named = create(model=model, messages=ASK, tools=TOOLS, temperature=0, seed=1, max_tokens=256,
                   tool_choice={"type": "function", "function": {"name": "book_table"}})
    calls = named.choices[0].message.tool_calls
    print(f"    named: {named.choices[0].finish_reason} {[(c.function.name, c.function.arguments) for c in calls or []]}")
    check("tool_choice naming a function calls exactly it", calls and valid_calls(calls) == ["book_table"], named)

    single = create(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                    parallel_tool_calls=False, temperature=1.0, seed=3)
    check("parallel_tool_calls false: one call", len(single.choices[0].message.tool_calls) == 1, single)
    both = [{"role": "user", "content": "Weather in Paris and in Rome, in celsius?"}]
    many = create(model=model, messages=both, tools=[WEATHER], tool_choice="required",
                  parallel_tool_calls=True, temperature=0, seed=1, max_tokens=96)
    calls, finish = many.choices[0].message.tool_calls or [], many.choices[0].finish_reason
    # Cut by max_tokens, the last call may be incomplete (as with OpenAI); the rest are whole.
    complete = calls if finish == "tool_calls" else calls[:-1]
    print(f"    parallel_tool_calls true: {len(calls)} calls for two cities, finish_reason {finish}")
    check("parallel_tool_calls true: more than one call allowed, each valid",
          len(calls) >= 2 and valid_calls(complete) and finish in ("tool_calls", "length"), many)

    # Arguments validate in every one of N seeded generations (sampled, not greedy).
    n = int(os.environ.get("AGORA_TOOL_GENERATIONS", "100"))
    prompts = ["What is the weather in Paris?", "Book a table for four at Chez Marie on Tuesday at 8.",
               "Is it raining in Oslo?", "Reserve dinner for two, Monday 19h, outside please."]

    def one(seed):
        r = create(model=model, messages=[{"role": "user", "content": prompts[seed % len(prompts)]}],
                   tools=TOOLS, tool_choice="required", temperature=0.8, seed=seed, max_tokens=256)
        c = r.choices[0]
        if c.finish_reason != "tool_calls":
            return ("cut", seed, c.finish_reason)
        try:
            valid_calls(c.message.tool_calls)
            return ("valid", seed, None)
        except (jsonschema.ValidationError, KeyError, json.JSONDecodeError) as e:
            return ("invalid", seed, str(e))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(n)))
    valid = sum(1 for r in results if r[0] == "valid")
    cut = [r for r in results if r[0] == "cut"]
    print(f"    {valid}/{n} seeded generations gave arguments that validate; others: "
          f"{[r for r in results if r[0] != 'valid'][:5]}")
    # A generation cut by max_tokens has no arguments to judge (as with OpenAI). Which seed runs
    # long depends on how the provider batched it (batch shapes move logits slightly): on one
    # machine seed 58 ran past 256 tokens in the 4-at-a-time run and finished in 139 alone. So
    # every finished call must validate, and at most 2 in 100 may run out of tokens. (Asked for
    # 512 tokens instead, one generation went 10 s without a token and the gateway gave up on
    # it: noted, not fixed.)
    check(f"arguments validate in every finished generation ({valid} of {n}; {len(cut)} cut by max_tokens)",
          valid + len(cut) == n and len(cut) * 50 <= n, results)
