"""The exchange node: configuration and the process that serves the APIs."""
