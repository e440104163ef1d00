"""Presentation of results for people: terminal rendering of traces (and, later, plots and pages)."""
