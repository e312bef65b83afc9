"""Benchmark clients (vector databases now; LLM servers and IO500 follow) and their shared result format."""
