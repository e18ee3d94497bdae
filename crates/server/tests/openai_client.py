"""The official `openai` package against a Tandem server: OPENAI_BASE_URL and OPENAI_API_KEY
point it there. Exits non-zero on the first failed check."""

import openai
from openai import OpenAI

client = OpenAI()

models = [m.id for m in client.models.list()]
assert "smollm2" in models, models

messages = [{"role": "user", "content": "Name a fruit."}]
reply = client.chat.completions.create(
    model="smollm2", messages=messages, temperature=0, max_tokens=20, seed=7
)
text = reply.choices[0].message.content
assert text, reply
assert reply.choices[0].finish_reason in ("stop", "length"), reply
assert reply.usage.completion_tokens > 0, reply.usage
assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
# The Tandem report rides along as an extra field.
assert reply.model_extra["tandem"]["model"] == "smollm2", reply.model_extra

stream = client.chat.completions.create(
    model="smollm2",
    messages=messages,
    temperature=0,
    max_tokens=20,
    seed=7,
    stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
assert "".join(pieces) == text, ("".join(pieces), text)
assert finish == reply.choices[0].finish_reason, finish
assert usage.completion_tokens == reply.usage.completion_tokens, usage

lp = client.chat.completions.create(
    model="smollm2", messages=messages, temperature=0, max_tokens=5, logprobs=True, top_logprobs=2
)
tokens = lp.choices[0].logprobs.content
assert len(tokens) == lp.usage.completion_tokens, tokens
assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in tokens), tokens

try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body

try:
    client.chat.completions.create(model="smollm2", messages=messages, temperature=9)
    raise AssertionError("temperature 9 was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "temperature", e.body

try:
    OpenAI(api_key="wrong").models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

print("all checks passed")
