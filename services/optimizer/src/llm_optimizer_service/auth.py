"""API keys: parsed from a file (and/or a comma-separated secret), held only as SHA-256 digests,
compared in constant time, each with scopes ``read``, ``write`` and ``admin``.

File format (the contract's): one key per line, either the key itself or ``sha256:<hex digest>``,
optionally followed by whitespace and comma-separated scopes (all scopes when omitted); ``#``
starts a comment. The raw key is never logged and never kept: only the start-up checks
(:mod:`llm_optimizer_service.safety`: length, well-known values) look at it; logs and audit
entries name a key by ``key-<first 8 hex of its digest>``.
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
KEYS_FILE_ENV = "LLM_OPTIMIZER_AUTH__API_KEYS_FILE"
KEYS_LIST_ENV = "LLM_OPTIMIZER_AUTH__API_KEYS"


class UnauthenticatedError(Exception):
    """A request without a valid API key; the message says what is wrong."""


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


@dataclass(frozen=True)
class KeyEntry:
    """One key as written (a line of the keys file or an item of the list), before hashing.

    Only the start-up checks (:mod:`llm_optimizer_service.safety`) look at ``token``; the
    :class:`KeyRing` keeps the digest alone."""

    token: str
    scopes: frozenset[Scope]
    where: str

    @property
    def hashed(self) -> bool:
        """Given as ``sha256:<hex>`` (the raw key, and so its length, is unknown)."""
        return _DIGEST.match(self.token) is not None

    def to_key(self) -> ApiKey:
        match = _DIGEST.match(self.token)
        value = bytes.fromhex(match.group(1)) if match else digest(self.token)
        return ApiKey(value, self.scopes)


def _entries_of_file(text: str, source: str) -> list[KeyEntry]:
    entries: list[KeyEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        token, _, scopes_text = content.partition(" ")
        if "\t" in token:
            token, _, scopes_text = content.partition("\t")
        where = f"{source} line {number}"
        entries.append(KeyEntry(token.strip(), _parse_scopes(scopes_text.strip(), where), where))
    return entries


def _entries_of_list(text: str) -> list[KeyEntry]:
    entries: list[KeyEntry] = []
    for number, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        if _DIGEST.match(item):
            token, scopes_text = item, ""
        else:
            token, _, scopes_text = item.partition(":")
        where = f"{KEYS_LIST_ENV} item {number}"
        entries.append(KeyEntry(token, _parse_scopes(scopes_text, where), where))
    return entries


def read_keys_file(path: Path) -> list[KeyEntry]:
    """The keys file's entries; :class:`ApiKeyError` naming the file and the fix when it cannot be
    used (missing, a directory, unreadable, not UTF-8, or holding no key at all)."""
    where = f"{KEYS_FILE_ENV}={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ApiKeyError(
            f"{where}: is a directory; point {KEYS_FILE_ENV} at the keys file itself"
        ) from None
    except OSError as exc:
        raise ApiKeyError(
            f"{where}: cannot read it ({exc.strerror}); fix the path, or make the file readable "
            "by the service's user (chown root:<service group> FILE; chmod 640 FILE)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ApiKeyError(
            f"{where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); write one key (or sha256:<hex>) per line as plain text"
        ) from None
    entries = _entries_of_file(text, where)
    if not entries:
        raise ApiKeyError(
            f"{where}: holds no key (the file is empty or only comments); add one key (or "
            f"sha256:<hex>) per line, or unset {KEYS_FILE_ENV}"
        )
    return entries


def key_entries(settings: AuthSettings) -> list[KeyEntry]:
    """Every configured key, from the keys file then the list; raises :class:`ApiKeyError`."""
    entries: list[KeyEntry] = []
    if settings.api_keys_file is not None:
        entries.extend(read_keys_file(Path(settings.api_keys_file)))
    if settings.api_keys is not None:
        entries.extend(_entries_of_list(settings.api_keys.get_secret_value()))
    return entries


class KeyRing:
    """The accepted keys. Empty means authentication is off (development only)."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyRing:
        return cls(entry.to_key() for entry in key_entries(settings))

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def principal(self, authorization: str, how: str) -> Principal:
        """Who sends this ``Authorization`` value (``Bearer <key>``); :class:`UnauthenticatedError`
        naming the problem otherwise (``how`` tells the caller how to send a key). Anyone,
        with every scope, while no key is configured (development only)."""
        if not self._keys:
            return ANONYMOUS
        kind, _, presented = authorization.partition(" ")
        presented = presented.strip()
        if kind.lower() != "bearer" or not presented:
            raise UnauthenticatedError(f"missing API key; send {how}")
        principal = self.authenticate(presented)
        if principal is None:
            raise UnauthenticatedError("invalid API key")
        return principal

    def authenticate(self, presented: str) -> Principal | None:
        """The principal for a presented key, or None. Every stored digest is compared (in
        constant time) so the time taken does not say which key nearly matched."""
        candidate = digest(presented)
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(candidate, key.digest) and found is None:
                found = key
        return Principal(found.key_id, found.scopes) if found else None
