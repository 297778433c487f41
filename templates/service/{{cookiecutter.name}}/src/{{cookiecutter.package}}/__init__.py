"""The {{ cookiecutter.name }} service (see its README)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("{{ cookiecutter.name }}")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
