"""One demo worker opening its database, as ``uvicorn --workers N`` does at start-up.

``python open_database.py DATABASE_URL``: prints ``ready``, waits for one byte on stdin (the
test releases every worker at once: a start barrier), then opens the database, which creates
and seeds the schema if nobody has.
"""

from __future__ import annotations

import sys

from mystocks_otel_dev.demo.db import Database
from mystocks_otel_dev.demo.faults import Faults


def main(url: str) -> None:
    print("ready", flush=True)
    sys.stdin.read(1)
    Database(url, Faults()).open()


if __name__ == "__main__":
    main(sys.argv[1])
