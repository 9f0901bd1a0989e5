"""constraints.txt must resolve from PyPI alone: no local build labels such as ``+cpu``."""

from __future__ import annotations

import re
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"


def test_constraints_pin_no_local_build_labels():
    pins = [line for line in CONSTRAINTS.read_text().splitlines()
            if line and not line.startswith("#")]
    assert pins, "constraints.txt pins nothing"
    local = [pin for pin in pins if re.match(r"^[A-Za-z0-9_.-]+==[^#\s]*\+", pin)]
    assert not local, f"local build labels PyPI does not serve: {local}"
