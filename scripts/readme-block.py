"""Replaces the README's block between `<!-- NAME:start` and `<!-- NAME:end -->` with a file's
text (which holds the two markers itself): python3 scripts/readme-block.py NAME FILE."""
import re
import sys

name, path = sys.argv[1], sys.argv[2]
block = open(path).read().rstrip("\n")
readme = open("README.md").read()
pattern = re.compile(rf"<!-- {re.escape(name)}:start.*?<!-- {re.escape(name)}:end -->", re.S)
if not pattern.search(readme):
    sys.exit(f"README.md has no {name} block")
open("README.md", "w").write(pattern.sub(lambda _: block, readme, count=1))
