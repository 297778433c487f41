"""cosign key pairs for tests (``cosign generate-key-pair``, password in COSIGN_PASSWORD)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ops.release import sign

PASSWORD = "correct horse battery staple"  # the test key pairs' password (COSIGN_PASSWORD)


def generate_key_pair(directory: Path, cosign: Path) -> tuple[Path, Path]:
    """(private key, public key) of a new key pair in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(cosign), "generate-key-pair"],
        cwd=directory,
        env={**os.environ, sign.PASSWORD_ENV: PASSWORD},
        check=True,
        capture_output=True,
    )
    return directory / "cosign.key", directory / "cosign.pub"
