"""The start-up checks: what production refuses and development only warns about.

One function, :func:`review`, for both ``serve`` and ``config validate``, so the two always report
the same problems. It lives here, not in settings.py, because it parses the API keys (auth.py
imports settings.py). Each problem names the setting (its environment variable) and the fix.

Refused in every environment (``errors``): an API keys file that cannot be used (missing, a
directory, unreadable, not UTF-8, holding no key, an unknown scope).

Refused in production, loudly warned about in development (``unsafe``):

- no API keys at all (authentication would be off);
- a key shorter than :data:`MIN_KEY_LENGTH` characters, or a well-known value (:data:`WEAK_VALUES`,
  compared case-insensitively without punctuation; a ``sha256:<hex>`` entry is refused when it
  is the digest of one of them);
- an API keys file that every user may read or write (``mode & 0o006``);
- a well-known password in ``database.url`` or ``redis.url``, however it is encoded
  (percent-encoding, case, punctuation), in the URL's user info or a ``password=`` parameter;
- ``database.auto_migrate`` switched on (production migrates in a separate step).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from llm_optimizer_service.auth import (
    KEYS_FILE_ENV,
    KEYS_LIST_ENV,
    ApiKeyError,
    KeyEntry,
    key_entries,
)
from llm_optimizer_service.settings import Settings, env_name_for

MIN_KEY_LENGTH = 32
GENERATE_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"

# Values that appear in examples (ours and everyone's) and must never guard production: the
# defaults of compose.yml (dev-key-change-me), docs/systemd.md (your-key), the usual suspects.
WEAK_SPELLINGS = (
    "changeme",
    "change-me",
    "change_me",
    "changeit",
    "replace-me",
    "password",
    "passw0rd",
    "secret",
    "not-a-secret",
    "admin",
    "root",
    "test",
    "example",
    "default",
    "insecure",
    "postgres",
    "redis",
    "letmein",
    "qwerty",
    "123456",
    "12345678",
    "key",
    "token",
    "api-key",
    "apikey",
    "my-key",
    "your-key",
    "your-api-key",
    "dev-key",
    "dev-key-change-me",
)


def _normalised(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


WEAK_VALUES = frozenset(_normalised(value) for value in WEAK_SPELLINGS)
_WEAK_DIGESTS = frozenset(
    hashlib.sha256(variant.encode()).hexdigest()
    for value in WEAK_SPELLINGS
    for variant in (value, value.upper(), value.capitalize())
)


def is_weak(value: str) -> bool:
    """A well-known value, whatever its case and punctuation (``Change_Me`` is ``changeme``)."""
    return _normalised(value) in WEAK_VALUES


@dataclass(frozen=True)
class Review:
    """What the start-up checks found."""

    errors: tuple[str, ...]
    unsafe: tuple[str, ...]
    keys: int

    def refused(self, production: bool) -> list[str]:
        """The problems that stop ``serve`` and fail ``config validate``."""
        return [*self.errors, *self.unsafe] if production else list(self.errors)


def review(settings: Settings) -> Review:
    """Run every start-up check (in any environment; see :meth:`Review.refused`)."""
    errors: list[str] = []
    unsafe: list[str] = []
    try:
        entries = key_entries(settings.auth)
    except ApiKeyError as exc:
        errors.append(str(exc))
        entries = []
    else:
        unsafe.extend(_key_problems(settings, entries))
        unsafe.extend(_keys_file_mode(settings.auth.api_keys_file))
    unsafe.extend(_url_problems(settings))
    if settings.database.auto_migrate:
        unsafe.append(
            "database.auto_migrate: production never migrates inside serve; unset "
            "LLM_OPTIMIZER_DATABASE__AUTO_MIGRATE and run `llm-optimizer-service db upgrade`"
        )
    return Review(tuple(errors), tuple(unsafe), len(entries))


def _key_problems(settings: Settings, entries: list[KeyEntry]) -> list[str]:
    if not entries:
        blank = f" ({KEYS_LIST_ENV} is set but holds no key)" if settings.auth.api_keys else ""
        return [
            f"auth: no API keys, so authentication is off{blank}; set {KEYS_FILE_ENV} to a "
            f"keys file (one key of at least {MIN_KEY_LENGTH} characters per line) or "
            f"{KEYS_LIST_ENV}"
        ]
    problems: list[str] = []
    for entry in entries:
        if entry.hashed:
            if entry.token.split(":", 1)[1].lower() in _WEAK_DIGESTS:
                problems.append(
                    f"{entry.where}: the sha256 digest is that of a well-known example value "
                    f"(changeme, password, ...); replace the key with a random one ({GENERATE_KEY})"
                )
        elif is_weak(entry.token):
            problems.append(
                f"{entry.where}: the key is a well-known example value (changeme, password, "
                f"...); replace it with a random one ({GENERATE_KEY})"
            )
        elif len(entry.token) < MIN_KEY_LENGTH:
            problems.append(
                f"{entry.where}: the key is too short ({len(entry.token)} of at least "
                f"{MIN_KEY_LENGTH} characters); replace it with a random one ({GENERATE_KEY})"
            )
    return problems


def _keys_file_mode(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        mode = os.stat(path).st_mode
    except OSError:  # pragma: no cover - key_entries has just read it
        return []
    if not mode & 0o006:
        return []
    return [
        f"{KEYS_FILE_ENV}={path}: every user of the host may read it (mode "
        f"{stat.S_IMODE(mode):04o}); chmod 600 {path} (or chmod 640 with the service's group)"
    ]


def _url_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    for key, secret in (("database.url", settings.database.url), ("redis.url", settings.redis.url)):
        if secret is None:
            continue
        parts = urlsplit(secret.get_secret_value())
        passwords = parse_qs(parts.query).get("password", [])
        if parts.password is not None:
            passwords.append(unquote(parts.password))
        if any(is_weak(password) for password in passwords):
            variable = env_name_for(key)
            problems.append(
                f"{key}: the password is a well-known default; set {variable} (or "
                f"{variable}_FILE) to a URL with a real secret"
            )
    return problems
