"""Benchmarks of screenshare-widget, run headless against the local Live emulator.

``python -m bench`` (or ``./dev bench``) runs them and writes ``test-artifacts/bench/``: a JSON
file, a markdown table and plots; ``--update-results`` writes them over the committed
``bench/results/`` that the README quotes. Targets are reported, never asserted.
"""
