"""Benchmarks that measure Sightline against minimal reference servers (see `bench/fanout.py`)."""
