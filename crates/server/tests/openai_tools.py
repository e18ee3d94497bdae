"""Tools and structured outputs through the official `openai` package, unchanged, against a Tandem
server serving Qwen2.5-Coder-0.5B as `qwen` and SmolLM2-135M as `smollm2` (OPENAI_BASE_URL and
OPENAI_API_KEY point it there). Exits non-zero on the first failed check."""

import json

import openai
from openai import OpenAI
from pydantic import BaseModel, Field
from typing import Annotated

client = OpenAI()

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city. Only this tool knows the weather.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris right now?"}]
TOOL_RESULT = "Paris: 23 degrees Celsius, light rain."


def answer_with(messages, call_id, call_name, arguments):
    """The chat after the model's call and the tool's result."""
    return messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call_name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT},
    ]


# A round trip, not streamed: the model calls the tool, reads its result and answers from it.
reply = client.chat.completions.create(
    model="qwen", messages=QUESTION, tools=[WEATHER], temperature=0, max_tokens=60
)
choice = reply.choices[0]
assert choice.finish_reason == "tool_calls", reply
assert choice.message.content is None, reply
call = choice.message.tool_calls[0]
assert call.type == "function" and call.id.startswith("call_"), call
assert call.function.name == "get_weather", call
assert json.loads(call.function.arguments)["city"] == "Paris", call
# With the result in hand the answer needs no more calls. Left free, the 0.5B model writes its call
# again; `none` and an answer schema make it answer from the result.
ANSWER = {
    "type": "json_schema",
    "json_schema": {
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
    },
}
final = client.chat.completions.create(
    model="qwen",
    messages=answer_with(QUESTION, call.id, call.function.name, call.function.arguments),
    tools=[WEATHER],
    tool_choice="none",
    response_format=ANSWER,
    temperature=0,
    max_tokens=60,
)
assert final.choices[0].finish_reason == "stop", final
assert json.loads(final.choices[0].message.content)["temperature_celsius"] == 23, final
assert not final.choices[0].message.tool_calls, final

# The same round trip streamed: the call arrives as `delta.tool_calls` pieces by index.
stream = client.chat.completions.create(
    model="qwen", messages=QUESTION, tools=[WEATHER], temperature=0, max_tokens=60, stream=True
)
calls, finish, text = {}, None, ""
for chunk in stream:
    delta = chunk.choices[0].delta
    text += delta.content or ""
    for piece in delta.tool_calls or []:
        entry = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
        if piece.id:
            entry["id"] = piece.id
        if piece.function and piece.function.name:
            entry["name"] += piece.function.name
        if piece.function and piece.function.arguments:
            entry["arguments"] += piece.function.arguments
    finish = chunk.choices[0].finish_reason or finish
assert finish == "tool_calls", finish
assert text == "", text
assert list(calls) == [0], calls
assert calls[0]["name"] == "get_weather", calls
assert json.loads(calls[0]["arguments"]) == json.loads(call.function.arguments), calls
stream = client.chat.completions.create(
    model="qwen",
    messages=answer_with(QUESTION, calls[0]["id"], calls[0]["name"], calls[0]["arguments"]),
    tools=[WEATHER],
    tool_choice="none",
    response_format=ANSWER,
    temperature=0,
    max_tokens=60,
    stream=True,
)
streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
assert streamed == final.choices[0].message.content, (streamed, final)

# `required` makes even an unrelated prompt a well-formed call.
forced = client.chat.completions.create(
    model="qwen",
    messages=[{"role": "user", "content": "Write a haiku about the sea."}],
    tools=[WEATHER],
    tool_choice="required",
    temperature=0,
    max_tokens=40,
)
forced_call = forced.choices[0].message.tool_calls[0]
assert forced_call.function.name == "get_weather", forced
assert isinstance(json.loads(forced_call.function.arguments)["city"], str), forced


# Structured outputs: `parse` with a Pydantic model, from the smallest model, over many prompts.
class Person(BaseModel):
    name: Annotated[str, Field(max_length=40)]
    age: int
    hobbies: Annotated[list[Annotated[str, Field(max_length=30)]], Field(max_length=3)]


prompts = [
    "Invent a person.",
    "Describe Ada Lovelace.",
    "Tell me about a retired sailor.",
    "Who is your favourite scientist?",
    "Make up a character for a children's book.",
    "Hello!",
    "Describe a chess player.",
    "A person who loves gardening.",
    "Describe a nurse who works night shifts.",
    "Invent a pirate captain.",
    "Tell me about a young programmer.",
    "Describe your neighbour.",
    "Who would be a good astronaut?",
    "Make up a famous chef.",
    "A teenager who skateboards.",
    "Describe a grandmother who bakes.",
    "Invent a detective for a mystery novel.",
    "Tell me about a marathon runner.",
    "Describe a musician in a jazz band.",
    "Create a profile for a librarian.",
    "Who is a typical mountain climber?",
    "Make up a person from the year 1900.",
    "Describe a painter.",
    "Tell me about someone who collects stamps.",
]
parsed = 0
for prompt in prompts:
    completion = client.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": prompt}],
        response_format=Person,
        temperature=0,
        max_tokens=120,
    )
    person = completion.choices[0].message.parsed
    if isinstance(person, Person):
        parsed += 1
print(f"parse: {parsed}/{len(prompts)} answers parsed")
assert parsed == len(prompts), parsed

json_object = client.chat.completions.create(
    model="qwen",
    messages=[{"role": "user", "content": "Describe a cat as a JSON object with its name and age."}],
    response_format={"type": "json_object"},
    temperature=0,
    max_tokens=120,
)
assert isinstance(json.loads(json_object.choices[0].message.content), dict), json_object


# n = 3 choices, decoded together; a seed makes each choice reproducible.
def three(seed):
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name an animal."}],
        n=3,
        seed=seed,
        temperature=1.0,
        max_tokens=12,
    )
    assert [c.index for c in reply.choices] == [0, 1, 2], reply
    return [c.message.content for c in reply.choices], reply.usage


first, usage = three(11)
again, _ = three(11)
assert first == again, (first, again)
assert len(set(first)) > 1, first
assert usage.completion_tokens <= 36 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

# Penalties, logit_bias and min_p are honoured rather than refused.
client.chat.completions.create(
    model="smollm2",
    messages=QUESTION,
    max_tokens=5,
    presence_penalty=0.5,
    frequency_penalty=0.5,
    logit_bias={"42": -100},
    extra_body={"min_p": 0.05},
)


def refused(param, **kwargs):
    """The request is answered with a 400 naming `param`."""
    body = {"model": "smollm2", "messages": QUESTION, "max_tokens": 5, **kwargs}
    try:
        client.chat.completions.create(**body)
    except openai.BadRequestError as e:
        assert e.body["param"] == param, (param, e.body)
        return
    raise AssertionError(f"accepted: {kwargs}")


refused("tools", tools=[WEATHER])  # SmolLM2's template has no tools
refused("tool_choice", model="qwen", tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_news"}})
refused("tool_choice", tool_choice="required")
refused("parallel_tool_calls", parallel_tool_calls=False)
refused("response_format", model="qwen", tools=[WEATHER], response_format={"type": "json_object"})
refused(
    "response_format.json_schema.schema.properties.code.pattern",
    response_format={
        "type": "json_schema",
        "json_schema": {
            "name": "code",
            "schema": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}},
        },
    },
)
refused("tools[0].function.parameters.properties.n.minimum", model="qwen", tool_choice="required", tools=[
    {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}}}])
refused("n", n=2, stream=True)
refused("n", n=100)
refused("functions", extra_body={"functions": [WEATHER["function"]]})
refused("messages[1].tool_call_id", messages=[QUESTION[0], {"role": "tool", "content": "x"}])

print("all checks passed")
