"""Test agent: says something, then fails."""

import sys

print("loading data ... this agent is about to fail", flush=True)
print("Traceback (most recent call last): ValueError: model exploded", file=sys.stderr, flush=True)
sys.exit(3)
