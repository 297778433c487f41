"""One Kafka ApiVersions (v0) round trip: exit 0 when the broker at HOST:PORT answers without error.

usage: python3 api_versions.py HOST:PORT
"""

import socket
import struct
import sys

API_VERSIONS, CORRELATION, CLIENT = 18, 7, b"healthcheck"


def main(bootstrap: str) -> int:
    host, _, port = bootstrap.rpartition(":")
    body = struct.pack(">hhih", API_VERSIONS, 0, CORRELATION, len(CLIENT)) + CLIENT
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        header = b""
        while len(header) < 10:
            chunk = sock.recv(10 - len(header))
            if not chunk:
                print("the broker closed the connection", file=sys.stderr)
                return 1
            header += chunk
    _, correlation, error = struct.unpack(">iih", header)
    if correlation != CORRELATION or error != 0:
        print(f"ApiVersions answered correlation {correlation}, error {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except OSError as exc:
        print(f"no broker at {sys.argv[1]}: {exc}", file=sys.stderr)
        sys.exit(1)
