"""Smoke check of the AIDE environment: the modules the agent loop imports load, at the pinned versions."""

import importlib.metadata as md

import aide.agent  # noqa: F401
import aide.interpreter  # noqa: F401
import aide.utils.config  # noqa: F401

PINS = {"aideml": "0.2.2", "numpy": "1.26.2", "pandas": "2.1.4", "scikit-learn": "1.5.0"}
wrong = {name: md.version(name) for name, want in PINS.items() if md.version(name) != want}
if wrong:
    raise SystemExit(f"unexpected versions in the AIDE environment: {wrong}")
print("aide environment ok:", ", ".join(f"{k}=={v}" for k, v in PINS.items()))
