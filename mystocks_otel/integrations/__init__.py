"""Instrumentors for the libraries MyStocks uses, and the periodic probes."""
