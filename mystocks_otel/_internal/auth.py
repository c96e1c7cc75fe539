"""The bearer-token check every door shares: ``/metrics`` on the app's port and on the
standalone port, and the Alertmanager webhook.

The comparison runs on bytes with :func:`hmac.compare_digest` (constant time). Header
bytes come as the client sent them: ASGI servers hand over raw bytes, and ``http.server``
and Starlette decode them as latin-1, which :func:`as_bytes` reverses exactly. Malformed
input (non-ASCII, no scheme, empty, huge) simply does not match: it is a 401, never a 500.
"""

from __future__ import annotations

import hmac

MAX_HEADER_BYTES = 8192  # longer than any token we accept; longer headers cannot match


def as_bytes(value: str | bytes) -> bytes:
    """Header or token text as bytes: latin-1 when it fits (what HTTP servers decoded), else UTF-8."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def token_bytes(token: str | bytes) -> bytes:
    """A configured token as bytes (UTF-8: what a client types into its credentials file)."""
    return token if isinstance(token, bytes) else token.encode("utf-8", "surrogatepass")


def bearer_matches(header: str | bytes | None, token: str | bytes | None) -> bool:
    """True when no token is configured, or ``header`` is ``Bearer <token>`` (scheme in any case)."""
    if not token:
        return True
    if not header or len(header) > MAX_HEADER_BYTES:
        return False
    scheme, _, given = as_bytes(header).strip().partition(b" ")
    # compare_digest runs even on a wrong scheme, so the time taken never tells which part failed.
    same = hmac.compare_digest(given.strip(), token_bytes(token))
    return same and scheme.lower() == b"bearer"


def authorization(scope: dict) -> bytes | None:
    """The raw ``Authorization`` header of an ASGI scope (the first one), or None."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            return value
    return None


def challenge(realm: str) -> str:
    """The ``WWW-Authenticate`` value of a 401."""
    return f'Bearer realm="{realm}"'
