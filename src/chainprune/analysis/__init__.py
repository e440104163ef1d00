"""Analyses over traces: pure functions of arrays (orders, values), no files and no models."""
