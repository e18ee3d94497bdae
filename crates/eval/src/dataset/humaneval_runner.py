"""Runs the task's tests against the candidate, which lives in a process of its own.

No line of the model's code ever runs in this process: the tests call the candidate's functions
(the names in `entry_point`, one a line) through a pipe, and the values going both ways are Python literals (repr, then ast.literal_eval), so the
candidate can send back data but never code or objects. The per-run secret is read, and its
file removed, before the candidate process exists; it is printed only after check() returned.
"""
import ast
import builtins
import os
import subprocess
import sys


def read(name):
    with open(name, encoding='utf-8') as f:
        return f.read()


SECRET = read('secret').strip()
os.unlink('secret')
NAMES = read('entry_point').split()
PROMPT = read('prompt.py')
TESTS = read('tests.py')

candidate = subprocess.Popen(
    [sys.executable, '-I', '-B', 'candidate.py', *NAMES],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)


def remote_exception(name, message):
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        return kind(message)
    return RuntimeError(f'{name}: {message}')


def caller(name):
    """The stub that stands for the candidate's function `name` in the tests."""
    def call(*args, **kwargs):
        candidate.stdin.write(repr((name, args, kwargs)).encode() + b'\n')
        candidate.stdin.flush()
        line = candidate.stdout.readline()
        if not line:
            raise RuntimeError('the candidate process ended without answering')
        reply = ast.literal_eval(line.decode('utf-8'))
        if reply[0] == 'ok' and len(reply) == 2:
            return reply[1]
        if reply[0] == 'raise' and len(reply) == 3:
            raise remote_exception(str(reply[1]), str(reply[2]))
        raise RuntimeError('the candidate process answered out of protocol')
    return call


namespace = {'__name__': '__tests__'}
exec(compile(PROMPT, 'prompt.py', 'exec'), namespace)
for name in NAMES:
    namespace[name] = caller(name)
exec(compile(TESTS, 'tests.py', 'exec'), namespace)
candidate.kill()
candidate.wait()
sys.stdout.flush()
print(SECRET, flush=True)
