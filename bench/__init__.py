"""maild benchmarks: ingest throughput, memory, auto-reply latency, SLA/KPI queries.

Run them from the repository root as modules, e.g. `.venv/bin/python -m bench.ingest`;
see bench/README.md.
"""
