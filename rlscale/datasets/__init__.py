"""Minari datasets: collection, loading, validation and streaming through Ray Data."""
