"""Lightweight client CLI for the LLM Auto Optimizer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llm-optimizer-cli")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
