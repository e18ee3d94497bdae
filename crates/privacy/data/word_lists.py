"""Writes the detector's word lists:

- english_words.txt: ordinary English words, the lower-case whole-word tokens of SmolLM2's
  vocabulary ("grace", "page", "force"): capitalised, they mostly start a sentence or a title;
- faker_given_names.txt and faker_family_names.txt: the given and family names of every locale of
  Faker's person provider, in Latin script, lower-cased, less those that the census lists already
  hold and less the English words.

    pip download faker==40.63.0 --no-deps -d /tmp/faker && unzip -q -o -d /tmp/faker /tmp/faker/faker-*.whl
    pip install gguf
    python3 word_lists.py /tmp/faker path/to/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import importlib
import pkgutil
import re
import sys
import unicodedata
from pathlib import Path

import gguf

faker_dir, smollm2 = sys.argv[1], sys.argv[2]
sys.path.insert(0, faker_dir)
import faker.providers.person as person  # noqa: E402

here = Path(__file__).parent


def latin(name):
    return len(name) > 1 and all("LATIN" in unicodedata.name(c, "") or c in "-'’" for c in name)


given, family = set(), set()
for module in pkgutil.iter_modules(person.__path__):
    provider = getattr(importlib.import_module(f"faker.providers.person.{module.name}"), "Provider", None)
    for attr in dir(provider) if module.ispkg and provider else []:
        if not re.fullmatch(r"(first|last)_(\w+_)?names(_\w+)?", attr):
            continue
        names = getattr(provider, attr)
        if isinstance(names, dict):
            names = names.keys()
        elif not isinstance(names, (list, tuple, set)):
            continue
        target = given if attr.startswith("first") else family
        target.update(n.lower() for n in names if isinstance(n, str) and latin(n))

tokens = gguf.GGUFReader(smollm2).fields["tokenizer.ggml.tokens"]
words = set()
for i in tokens.data:
    token = bytes(tokens.parts[i]).decode("utf-8", "replace")
    if token.startswith("Ġ") and token[1:].isalpha() and token[1:].islower() and len(token) > 2:
        words.add(token[1:])
(here / "english_words.txt").write_text("\n".join(sorted(words)) + "\n")
print(f"english_words.txt: {len(words)} words")

for names, census, out in [
    (given, "given_names.txt", "faker_given_names.txt"),
    (family, "family_names.txt", "faker_family_names.txt"),
]:
    known = set((here / census).read_text().split())
    kept = sorted(names - known - words)
    (here / out).write_text("\n".join(kept) + "\n")
    print(f"{out}: {len(kept)} names")
