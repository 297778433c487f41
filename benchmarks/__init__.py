"""Benchmarks run by ``nox -s bench`` (``python -m benchmarks``): they print figures and targets.

One module per benchmark, each with ``run(options) -> list[Target]``; ``__main__`` runs them in
order and prints every target side by side at the end. To add one, write the module and list it
in ``BENCHMARKS`` in ``benchmarks/__main__.py``.
"""
