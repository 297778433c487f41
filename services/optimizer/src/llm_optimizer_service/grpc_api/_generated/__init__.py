"""Generated gRPC stubs (ops/build/proto.py)."""
