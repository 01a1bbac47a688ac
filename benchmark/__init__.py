"""Latency, size and memory of exported artifacts against PyTorch eager: `python -m benchmark`
(see `python -m benchmark --help`)."""
