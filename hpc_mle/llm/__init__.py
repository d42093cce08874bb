"""Language models for agents: the metering proxy, its price table, model servers (vLLM) and a scripted test server."""
