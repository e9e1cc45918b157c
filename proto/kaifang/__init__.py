"""Kaifang: generated protobuf and gRPC code (kaifang.*.v1)."""
