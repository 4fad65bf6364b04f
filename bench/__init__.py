"""Benchmarks of screenshare-widget, run headless against the local Live emulator.

``python -m bench`` (or ``./dev bench``) runs them and writes ``bench/results/``: a JSON file,
a markdown table (quoted in the README) and a plot. Targets are reported, never asserted.
"""
