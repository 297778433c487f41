"""``python -m {{ cookiecutter.package }}`` = the ``{{ cookiecutter.name }}`` command."""

from {{ cookiecutter.package }}.cli import main

main()
