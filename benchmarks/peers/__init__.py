"""Benchmarks against peers (Procrastinate) and at scale, run by ``make bench-peers`` in a
virtualenv of their own (``benchmarks/.venv-peers``), so that the peers never become
dependencies of tasktrail. See ``benchmarks/README.md``."""
