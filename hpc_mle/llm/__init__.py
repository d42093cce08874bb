"""Language models for agents: the metering proxy, its price table, model servers (vLLM) and a scripted test server."""

# Kept here, not in proxy.py: every attempt asks, and most have no model (importing aiohttp costs 0.3 s).
NO_LLM = (None, "", "none", "null")


def has_llm(model_config: dict | None) -> bool:
    """Whether an attempt's model config names a language model (and so needs a metering proxy)."""
    return bool(model_config) and model_config.get("provider") not in NO_LLM
