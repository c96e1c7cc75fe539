"""mystocks-otel (work in progress)."""
