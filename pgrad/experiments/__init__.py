"""Experiment tooling: multi-seed runs, statistics across seeds, reports."""
