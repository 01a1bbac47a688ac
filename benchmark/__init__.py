"""Latency, size and memory benchmarks of exported artifacts (`python -m benchmark`): a later issue."""
