"""Generated gRPC stubs (ops/proto.py)."""
