"""Latency gating: is a candidate slower than a baseline? (``seaformer-deploy gate``)."""
