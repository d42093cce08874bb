"""Language models for agents: the metering proxy, its price table, and a scripted test server."""
