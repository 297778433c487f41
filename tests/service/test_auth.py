"""API keys: file format, hashed storage, scopes, and keys files that cannot be used."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from llm_optimizer_service.auth import ApiKeyError, KeyRing, Scope, read_keys_file
from llm_optimizer_service.cli import app
from llm_optimizer_service.settings import AuthSettings
from pydantic import SecretStr
from typer.testing import CliRunner


def test_keys_file_format(tmp_path: Path) -> None:
    hashed = hashlib.sha256(b"hashed-key").hexdigest()
    path = tmp_path / "keys"
    path.write_text(
        "# comment line\n"
        "plain-key\n"
        "reader-key   read   # trailing comment\n"
        f"sha256:{hashed} read,write\n"
        "\n"
    )
    ring = KeyRing.from_settings(AuthSettings(api_keys_file=path))
    assert len(ring) == 3
    plain = ring.authenticate("plain-key")
    assert plain is not None
    assert plain.scopes == frozenset(Scope)
    reader = ring.authenticate("reader-key")
    assert reader is not None
    assert reader.scopes == {Scope.READ}
    by_hash = ring.authenticate("hashed-key")
    assert by_hash is not None
    assert by_hash.scopes == {Scope.READ, Scope.WRITE}
    assert ring.authenticate("sha256:" + hashed) is None  # the digest is not itself a key
    assert ring.authenticate("nope") is None
    assert plain.key_id.startswith("key-")
    assert "plain" not in plain.key_id


def test_keys_are_held_as_digests_only(tmp_path: Path) -> None:
    ring = KeyRing.from_settings(AuthSettings(api_keys=SecretStr("env-key-1:read,env-key-2")))
    assert "env-key-1" not in repr(vars(ring))
    assert ring.authenticate("env-key-2") is not None
    one = ring.authenticate("env-key-1")
    assert one is not None
    assert one.scopes == {Scope.READ}


def test_bad_keys_files(tmp_path: Path) -> None:
    bad_scope = tmp_path / "keys"
    bad_scope.write_text("k1 root\n")
    with pytest.raises(ApiKeyError, match="unknown scope 'root'"):
        read_keys_file(bad_scope)
    with pytest.raises(ApiKeyError, match="cannot read"):
        KeyRing.from_settings(AuthSettings(api_keys_file=tmp_path / "missing"))


@contextmanager
def _as_nobody() -> Iterator[None]:
    """Act as an unprivileged user for a moment: root reads a chmod 000 file regardless of its
    mode, so as root the test drops its effective uid and gid (and takes them back after). Only
    around the read itself: nobody may not even enter pytest's private tmp directories."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _unusable(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "api-keys"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_text("# no keys yet\n\n")
    elif case == "not-utf8":
        path.write_bytes(b"k\xe9y-latin-1-" + b"x" * 40 + b"\n")
    else:
        path.write_text("a-key-that-no-one-may-read-0123456789\n")
        path.chmod(0o000)
    return path


UNUSABLE = {
    "directory": "is a directory; point LLM_OPTIMIZER_AUTH__API_KEYS_FILE at the keys file",
    "empty": "holds no key (the file is empty or only comments); add one key",
    "not-utf8": "not UTF-8 text (byte 0xe9 at offset 1)",
    "unreadable": "cannot read it (Permission denied)",
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_an_unusable_keys_file_is_named_with_the_fix(tmp_path: Path, case: str) -> None:
    path = _unusable(tmp_path, case)
    reader = _as_nobody() if case == "unreadable" else nullcontext()
    with reader, pytest.raises(ApiKeyError) as raised:
        KeyRing.from_settings(AuthSettings(api_keys_file=path))
    assert str(raised.value).startswith(f"LLM_OPTIMIZER_AUTH__API_KEYS_FILE={path}: ")
    assert UNUSABLE[case] in str(raised.value)


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("case", ["directory", "empty", "not-utf8"])
def test_serve_and_validate_refuse_an_unusable_keys_file(
    tmp_path: Path, case: str, environment: str
) -> None:
    """In every environment: a keys file that is configured but unusable is a mistake, never a
    silent "authentication off". (Unreadable is proven above: the CLI runs as root here.)"""
    path = _unusable(tmp_path, case)
    env = {
        "LLM_OPTIMIZER_ENVIRONMENT": environment,
        "LLM_OPTIMIZER_DATA_DIR": str(tmp_path / "data"),
        "LLM_OPTIMIZER_AUTH__API_KEYS_FILE": str(path),
    }
    for command in (["config", "validate"], ["serve"]):
        result = CliRunner().invoke(app, command, env=env, catch_exceptions=False)
        assert result.exit_code == 1, result.output
        assert UNUSABLE[case] in result.stderr
        assert f"LLM_OPTIMIZER_AUTH__API_KEYS_FILE={path}" in result.stderr
    assert not (tmp_path / "data").exists()
