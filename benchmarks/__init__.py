"""Benchmarks of the acquisition path; run with ``python -m benchmarks`` (``make bench``)."""
