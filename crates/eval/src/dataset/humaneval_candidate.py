"""Defines the model's answer and serves calls to the functions named on its command line over
stdin and stdout (one repr'd `(name, args, kwargs)` per line in, one repr'd `('ok', value)` or `('raise', name, message)` out).
The answer is sanitised first, as EvalPlus does: only its top-level imports, definitions and
assignments are kept."""
import ast
import os
import sys

KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
        ast.Assign, ast.AnnAssign)


def definitions(source):
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, KEPT):
            first = min([node.lineno] + [d.lineno for d in getattr(node, 'decorator_list', [])])
            kept.append(''.join(lines[first - 1:node.end_lineno]).rstrip('\n') + '\n')
    return ''.join(kept)


def read(name):
    with open(name, encoding='utf-8') as f:
        return f.read()


# The answer's own prints and input() must not touch the calls' pipes: they get stderr and
# /dev/null instead.
requests = os.fdopen(os.dup(0), 'rb')
replies = os.fdopen(os.dup(1), 'wb')
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
os.dup2(2, 1)
source = read('head.py') + definitions(read('answer.py'))
namespace = {'__name__': '__candidate__'}
exec(compile(source, 'program.py', 'exec'), namespace)
# A function the answer does not define fails each call to it, not the calls to the others.
functions = {name: namespace[name] for name in sys.argv[1:] if name in namespace}
for line in requests:
    name, args, kwargs = ast.literal_eval(line.decode('utf-8'))
    try:
        if name not in functions:
            raise NameError(f'the answer does not define {name}')
        reply = ('ok', functions[name](*args, **kwargs))
    except Exception as e:
        reply = ('raise', type(e).__name__, str(e))
    replies.write(repr(reply).encode('utf-8') + b'\n')
    replies.flush()
