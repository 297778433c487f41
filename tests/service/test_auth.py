"""API keys: file format, hashed storage, scopes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from llm_optimizer_service.auth import ApiKeyError, KeyRing, Scope, parse_keys_file
from llm_optimizer_service.settings import AuthSettings
from pydantic import SecretStr


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
    with pytest.raises(ApiKeyError, match="unknown scope 'root'"):
        parse_keys_file("k1 root\n", "keys")
    with pytest.raises(ApiKeyError, match="cannot read"):
        KeyRing.from_settings(AuthSettings(api_keys_file=tmp_path / "missing"))
