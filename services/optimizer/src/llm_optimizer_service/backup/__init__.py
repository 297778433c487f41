"""Backups: create, verify, list and restore (``llm-optimizer-service backup …``).

See :mod:`.archive` for the format, :mod:`.database` for the all-or-nothing restore per
dialect and :mod:`.redis_state` for the Redis part.
"""

from llm_optimizer_service.backup.archive import BackupError, Manifest

__all__ = ["BackupError", "Manifest"]
