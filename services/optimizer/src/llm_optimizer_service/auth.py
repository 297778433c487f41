"""API keys: parsed from a file (and/or a comma-separated secret), held only as SHA-256 digests,
compared in constant time, each with scopes ``read``, ``write`` and ``admin``.

File format (the contract's): one key per line, either the key itself or ``sha256:<hex digest>``,
optionally followed by whitespace and comma-separated scopes (all scopes when omitted); ``#``
starts a comment. The raw key never leaves this module: logs and audit entries name a key by
``key-<first 8 hex of its digest>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from llm_optimizer_service.settings import AuthSettings


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)
_DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


class ApiKeyError(ValueError):
    """A malformed keys file or key list; the message names the source and the line."""


@dataclass(frozen=True)
class ApiKey:
    digest: bytes
    scopes: frozenset[Scope]

    @property
    def key_id(self) -> str:
        """A stable, non-secret name for logs and the audit trail."""
        return f"key-{self.digest.hex()[:8]}"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and what it may do."""

    key_id: str
    scopes: frozenset[Scope]


ANONYMOUS = Principal("anonymous", ALL_SCOPES)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _parse_scopes(text: str, where: str) -> frozenset[Scope]:
    if not text:
        return ALL_SCOPES
    scopes: set[Scope] = set()
    for raw in re.split(r"[,+]", text):
        name = raw.strip().lower()
        if not name:
            continue
        try:
            scopes.add(Scope(name))
        except ValueError:
            raise ApiKeyError(
                f"{where}: unknown scope {name!r}; use read, write or admin"
            ) from None
    return frozenset(scopes) or ALL_SCOPES


def _parse_entry(token: str, scopes_text: str, where: str) -> ApiKey:
    match = _DIGEST.match(token)
    value = bytes.fromhex(match.group(1)) if match else digest(token)
    return ApiKey(value, _parse_scopes(scopes_text, where))


def parse_keys_file(text: str, source: str) -> list[ApiKey]:
    keys: list[ApiKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        token, _, scopes_text = content.partition(" ")
        if "\t" in token:
            token, _, scopes_text = content.partition("\t")
        keys.append(_parse_entry(token.strip(), scopes_text.strip(), f"{source}:{number}"))
    return keys


def parse_keys_list(text: str) -> list[ApiKey]:
    """``LLM_OPTIMIZER_AUTH__API_KEYS``: comma-separated ``key`` or ``key:read+write``."""
    keys: list[ApiKey] = []
    for number, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        if _DIGEST.match(item):
            token, scopes_text = item, ""
        else:
            token, _, scopes_text = item.partition(":")
        keys.append(_parse_entry(token, scopes_text, f"LLM_OPTIMIZER_AUTH__API_KEYS item {number}"))
    return keys


class KeyRing:
    """The accepted keys. Empty means authentication is off (development only)."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyRing:
        keys: list[ApiKey] = []
        if settings.api_keys_file is not None:
            path = Path(settings.api_keys_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ApiKeyError(
                    f"LLM_OPTIMIZER_AUTH__API_KEYS_FILE={path}: cannot read it ({exc.strerror})"
                ) from exc
            keys.extend(parse_keys_file(text, str(path)))
        if settings.api_keys is not None:
            keys.extend(parse_keys_list(settings.api_keys.get_secret_value()))
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal for a presented key, or None. Every stored digest is compared (in
        constant time) so the time taken does not say which key nearly matched."""
        candidate = digest(presented)
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(candidate, key.digest) and found is None:
                found = key
        return Principal(found.key_id, found.scopes) if found else None
