"""The official `openai` package against Tandem's /v1/embeddings, unchanged: run by
tests/embeddings.rs with OPENAI_BASE_URL and OPENAI_API_KEY set. Prints the vectors it received
as JSON, so the Rust side can compare them with the embedder's own."""

import json

import openai

client = openai.OpenAI()
texts = ["The cat sat on the mat.", "Stock markets fell sharply on Monday."]

# With no encoding_format the client asks for base64 and decodes it itself.
default = client.embeddings.create(model="minilm", input=texts)
floats = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
single = client.embeddings.create(model="minilm", input=texts[0], dimensions=384)
assert [d.index for d in default.data] == [0, 1], default.data
assert default.usage.prompt_tokens == floats.usage.prompt_tokens > 0, default.usage
assert default.usage.total_tokens == default.usage.prompt_tokens, default.usage
assert len(single.data) == 1 and default.model == "minilm"

try:
    client.embeddings.create(model="minilm", input=texts, dimensions=64)
    raise AssertionError("dimensions=64 was accepted")
except openai.BadRequestError as error:
    assert error.body["param"] == "dimensions", error.body

print(json.dumps({
    "texts": texts,
    "default": [d.embedding for d in default.data],
    "float": [d.embedding for d in floats.data],
    "single": single.data[0].embedding,
}))
