"""The local monitoring stack: ``mystocks-otel stack up|down|status`` (see ``runner``).

``configs`` renders the stack's configs from the files compose mounts, ``sink`` records
what every Alertmanager receiver would have been sent, ``runner`` starts and stops it all.
"""
