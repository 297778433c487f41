"""What ``serve`` refuses for given settings, for tests that check a configuration passes."""

from __future__ import annotations

from llm_optimizer_service.safety import review
from llm_optimizer_service.settings import Settings


def production_problems(settings: Settings) -> list[str]:
    """What production refuses (``serve`` and ``config validate`` exit 1 listing these), each
    naming the setting to fix; empty outside production, where the same findings only warn."""
    return review(settings).refused(production=True) if settings.is_production else []
