"""The demo's routers, one module per area of the API."""
