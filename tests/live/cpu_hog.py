"""A busy loop for the live CPU scenario: ``python cpu_hog.py SECONDS`` keeps one core at 100 %.

test_faults.py starts one per core; its scenario stops them (the bound is a safety net).
"""

from __future__ import annotations

import sys
import time


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


if __name__ == "__main__":
    spin(float(sys.argv[1]) if len(sys.argv) > 1 else 150.0)
