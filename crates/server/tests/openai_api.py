"""The legacy completions endpoint and the Responses API through the official `openai` package,
unchanged, against a Tandem server serving Qwen2.5-Coder-0.5B as `qwen` and SmolLM2-135M as
`smollm2` (OPENAI_BASE_URL and OPENAI_API_KEY point it there). Exits non-zero on the first failed
check."""

import json

import openai
from openai import OpenAI
from openai.types import Completion
from openai.types.responses import Response

client = OpenAI()
PROMPT = "The capital of France is"

# /v1/completions: raw text, no chat template.
plain = client.completions.create(model="smollm2", prompt=PROMPT, temperature=0, max_tokens=12)
assert plain.object == "text_completion", plain
assert plain.choices[0].text and plain.choices[0].finish_reason == "length", plain
assert plain.usage.completion_tokens == 12, plain

streamed = client.completions.create(
    model="smollm2", prompt=PROMPT, temperature=0, max_tokens=12, stream=True
)
text = "".join(chunk.choices[0].text for chunk in streamed if chunk.choices)
assert text == plain.choices[0].text, (text, plain)

echoed = client.completions.create(
    model="smollm2", prompt=PROMPT, temperature=0, max_tokens=12, echo=True
)
assert echoed.choices[0].text == PROMPT + plain.choices[0].text, echoed

with_logprobs = client.completions.create(
    model="smollm2", prompt=PROMPT, temperature=0, max_tokens=12, logprobs=2
)
logprobs = with_logprobs.choices[0].logprobs
assert "".join(logprobs.tokens) == plain.choices[0].text, logprobs
assert len(logprobs.token_logprobs) == 12 and all(lp <= 0 for lp in logprobs.token_logprobs)
assert all(1 <= len(top) <= 2 for top in logprobs.top_logprobs), logprobs
assert logprobs.text_offset[0] == 0 and logprobs.text_offset == sorted(logprobs.text_offset)

# The raw bodies validate strictly against the SDK's own models, not only its lenient parsing.
raw = client.completions.with_raw_response.create(model="smollm2", prompt=PROMPT, max_tokens=3)
Completion.model_validate(raw.http_response.json())

several = client.completions.create(
    model="smollm2", prompt=["One, two,", "Red, green,"], n=2, max_tokens=4, seed=3
)
assert [c.index for c in several.choices] == [0, 1, 2, 3], several


def refused(create, param, **kwargs):
    try:
        create(**kwargs)
    except openai.BadRequestError as e:
        assert e.body["param"] == param, (param, e.body)
        return
    raise AssertionError(f"accepted: {kwargs}")


refused(client.completions.create, "suffix", model="smollm2", prompt=PROMPT, suffix="!")
refused(client.completions.create, "best_of", model="smollm2", prompt=PROMPT, best_of=2)
refused(client.completions.create, "prompt", model="smollm2", prompt=[1, 2, 3])

# /v1/responses, text: not streamed, then streamed with its typed events.
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city. Only this tool knows the weather.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city's name"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
QUESTION = "What is the weather in Paris right now?"
TOOL_RESULT = "Paris: 23 degrees Celsius, light rain."

response = client.responses.create(
    model="qwen",
    instructions="Answer in one short sentence.",
    input="What is the capital of France?",
    temperature=0,
    max_output_tokens=30,
)
assert response.object == "response" and response.status == "completed", response
assert "Paris" in response.output_text, response
assert response.usage.output_tokens > 0 and response.usage.input_tokens > 0, response

raw = client.responses.with_raw_response.create(model="qwen", input="Hi", max_output_tokens=3)
Response.model_validate(raw.http_response.json())

events = list(
    client.responses.create(
        model="qwen",
        instructions="Answer in one short sentence.",
        input="What is the capital of France?",
        temperature=0,
        max_output_tokens=30,
        stream=True,
    )
)
kinds = [e.type for e in events]
assert kinds[:2] == ["response.created", "response.in_progress"], kinds
assert kinds[-1] == "response.completed", kinds
for expected in [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_item.done",
]:
    assert expected in kinds, (expected, kinds)
assert [e.sequence_number for e in events] == list(range(len(events))), events
# The streamed text is compared with the stream's own final object, not with the request above:
# other tests share this server's engine, and a greedy answer can change with what it is batched
# with.
deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
final = events[-1].response
assert deltas and deltas == final.output_text, (deltas, final.output_text)
done = [e.text for e in events if e.type == "response.output_text.done"]
assert done == [deltas], (done, deltas)
assert final.usage.output_tokens > 0, final.usage

# A function tool round trip, not streamed: the call, its output, the answer from it.
first = client.responses.create(
    model="qwen", input=QUESTION, tools=[WEATHER], temperature=0, max_output_tokens=60
)
calls = [item for item in first.output if item.type == "function_call"]
assert len(calls) == 1 and calls[0].name == "get_weather", first
assert json.loads(calls[0].arguments)["city"] == "Paris", calls
ANSWER = {
    "type": "json_schema",
    "name": "answer",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "temperature_celsius": {"type": "integer"},
            "conditions": {"type": "string", "maxLength": 40},
        },
        "required": ["temperature_celsius", "conditions"],
        "additionalProperties": False,
    },
}


def answer(call_id, name, arguments, stream=False):
    history = [
        {"role": "user", "content": QUESTION},
        {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments},
        {"type": "function_call_output", "call_id": call_id, "output": TOOL_RESULT},
    ]
    return client.responses.create(
        model="qwen",
        input=history,
        tools=[WEATHER],
        tool_choice="none",
        text={"format": ANSWER},
        temperature=0,
        max_output_tokens=60,
        stream=stream,
    )


final = answer(calls[0].call_id, calls[0].name, calls[0].arguments)
assert json.loads(final.output_text)["temperature_celsius"] == 23, final
# The SDK's own output items go back in as input unchanged.
again = client.responses.create(
    model="qwen",
    input=[{"role": "user", "content": QUESTION}]
    + first.output
    + [{"type": "function_call_output", "call_id": calls[0].call_id, "output": TOOL_RESULT}],
    tools=[WEATHER],
    tool_choice="none",
    text={"format": ANSWER},
    temperature=0,
    max_output_tokens=60,
)
assert again.output_text == final.output_text, (again, final)

# The same round trip streamed: arguments arrive as `function_call_arguments.delta` events.
events = list(
    client.responses.create(
        model="qwen", input=QUESTION, tools=[WEATHER], temperature=0, max_output_tokens=60,
        stream=True,
    )
)
kinds = [e.type for e in events]
added = [e.item for e in events if e.type == "response.output_item.added"]
assert [item.type for item in added] == ["function_call"], kinds
arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
done = [e for e in events if e.type == "response.function_call_arguments.done"]
assert len(done) == 1 and done[0].arguments == arguments == calls[0].arguments, (arguments, done)
completed = events[-1].response
assert completed.output[0].type == "function_call" and completed.output[0].name == "get_weather"
assert [e.sequence_number for e in events] == list(range(len(events)))
streamed_answer = "".join(
    e.delta
    for e in answer(completed.output[0].call_id, "get_weather", arguments, stream=True)
    if e.type == "response.output_text.delta"
)
assert streamed_answer == final.output_text, (streamed_answer, final.output_text)

refused(client.responses.create, "previous_response_id", model="qwen", input="hi",
        previous_response_id=first.id)
refused(client.responses.create, "store", model="qwen", input="hi", store=True)
refused(client.responses.create, "tools[0].type", model="qwen", input="hi",
        tools=[{"type": "web_search"}])

print("all checks passed")
