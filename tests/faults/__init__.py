"""Fault tests: real nodes, with crashes, pauses and broken links between them."""
