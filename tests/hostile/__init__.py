"""Hostile input: fuzzed requests, the authorisation matrix, resource limits, TLS, key hygiene."""
