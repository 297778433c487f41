"""Fixtures for the host scripts' tests."""

from tests._support.service_fixtures import running_service

__all__ = ["running_service"]
