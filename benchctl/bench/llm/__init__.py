"""The LLM benchmark: backends (wire protocols), the load generator and its HTTP transport, stream parsers,
prompts, the server's metrics, and the ``llm`` bench kind."""
