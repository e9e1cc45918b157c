"""Clients of a Kaifang node: the ``kaifang`` command line."""
