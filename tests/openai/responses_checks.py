"""The Responses API through the stock `openai` SDK: called by test_openai.py against `agora dev`.

Checks create, stream (the typed events, text deltas adding up to the final text),
`previous_response_id` (the second turn sees the first), retrieval, a function tool round trip
and structured output.
"""

import json

import jsonschema

from tools_checks import WEATHER


def flat(tool):
    """A chat-completions tool in the Responses API's flat form."""
    return {"type": "function", **tool["function"]}


def run(client, model, check):
    r = client.responses.create(model=model, input="What is the capital of France? Answer in one word.",
                                instructions="Answer briefly.", temperature=0, max_output_tokens=24)
    check("responses.create", r.object == "response" and r.status == "completed" and r.output_text
          and r.usage.output_tokens > 0 and r.id.startswith("resp_"), r)
    check("responses answer is coherent", "paris" in r.output_text.lower(), r.output_text)

    got = client.responses.retrieve(r.id)
    check("responses.retrieve", got.id == r.id and got.output_text == r.output_text, got)

    events = list(client.responses.create(model=model, input="Name a colour.", temperature=0,
                                          max_output_tokens=16, stream=True))
    kinds = [e.type for e in events]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type in ("response.completed", "response.incomplete")]
    check("responses stream: typed events, deltas add up to the final text",
          kinds[0] == "response.created" and done and deltas == done[-1].response.output_text
          and [e.sequence_number for e in events] == list(range(len(events))), kinds)

    second = client.responses.create(model=model, previous_response_id=r.id, temperature=0,
                                     max_output_tokens=24, input="Repeat your last answer exactly.")
    check("previous_response_id continues the conversation",
          second.previous_response_id == r.id and second.usage.input_tokens > r.usage.input_tokens
          and second.output_text, second)

    tools = [flat(WEATHER)]
    first = client.responses.create(model=model, input="What is the weather in Paris?", tools=tools,
                                    tool_choice="required", temperature=0, max_output_tokens=128)
    calls = [o for o in first.output if o.type == "function_call"]
    ok = len(calls) == 1 and calls[0].name == "get_weather"
    if ok:
        jsonschema.validate(json.loads(calls[0].arguments), WEATHER["function"]["parameters"])
    check("responses function tool: a valid function_call", ok, first)
    follow = client.responses.create(
        model=model, previous_response_id=first.id, tools=tools, tool_choice="none", temperature=0,
        max_output_tokens=48,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                "output": json.dumps({"temperature_celsius": 18, "sky": "sunny"})}])
    print(f"    responses tool round trip, final answer: {follow.output_text!r}")
    check("responses function_call_output continues the response",
          follow.status in ("completed", "incomplete") and follow.output_text, follow)

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                               "population_millions": {"type": "integer"}},
              "required": ["city", "population_millions"], "additionalProperties": False}
    s = client.responses.create(model=model, input="Give the largest city of France as JSON.",
                                temperature=0, max_output_tokens=64,
                                text={"format": {"type": "json_schema", "name": "city", "schema": schema}})
    value = json.loads(s.output_text)
    jsonschema.validate(value, schema)
    check("responses structured output follows the schema", s.status == "completed", s)
