"""No product code reads the wall clock except clock.py: every instant comes from the injected Clock.

A read of the real time anywhere else is a time bomb: the program judges by the wall clock while tests (and the
fakes) use the clock pinned to 2026-11-24, so a test passes until the real date goes past a fake token's expiry.
Elapsed-time sources (time.monotonic, time.perf_counter, anyio.current_time) measure durations, not dates, and
are allowed. CI also runs the clock-sensitive suites with the process clock moved a year ahead (scripts/test.sh).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "omnipost"
ALLOWED = {PACKAGE / "clock.py"}

# Functions that return the current calendar time (or format it).
WALL_FUNCTIONS = {
    "time": {"time", "time_ns", "localtime", "gmtime", "ctime", "asctime", "strftime", "clock_gettime", "clock_gettime_ns"},
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
}


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def wall_clock_reads(source: str) -> list[tuple[int, str]]:
    """(line, what) for every wall-clock read in `source`: calls like time.time() or datetime.now(), a bare
    reference such as `clock=time.time` (a default argument), and `from time import time`-style imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            for alias in node.names:
                if node.module == "time" and alias.name in WALL_FUNCTIONS["time"]:
                    found.append((node.lineno, f"from time import {alias.name}"))
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name is None:
                continue
            parts = name.split(".")
            owner, attr = (parts[-2] if len(parts) > 1 else ""), parts[-1]
            if attr in WALL_FUNCTIONS.get(owner, ()):
                found.append((node.lineno, name))
    return found


def product_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p not in ALLOWED)


@pytest.mark.parametrize("source, expected", [
    ("import time\nx = time.time()", ["time.time"]),
    ("import time\ndef f(clock=time.time): ...", ["time.time"]),
    ("from time import time\n", ["from time import time"]),
    ("from datetime import datetime, timezone\nx = datetime.now(timezone.utc)", ["datetime.now"]),
    ("import datetime\nx = datetime.datetime.utcnow()", ["datetime.datetime.utcnow"]),
    ("from datetime import date\nx = date.today()", ["date.today"]),
    ("import time\nx = time.monotonic()", []),
    ("x = self.clock.now()", []),
    ("x = clock.now().timestamp()", []),
])
def test_the_detector_finds_wall_clock_reads_and_only_those(source: str, expected: list[str]) -> None:
    assert [what for _, what in wall_clock_reads(source)] == expected


def test_no_product_code_reads_the_wall_clock_outside_clock_py() -> None:
    files = product_files()
    assert len(files) > 50  # the scan really walks the package
    offenders = [f"{path.relative_to(PACKAGE)}:{line}: {what}"
                 for path in files for line, what in wall_clock_reads(path.read_text(encoding="utf-8"))]
    assert offenders == [], "read the injected Clock instead:\n" + "\n".join(offenders)
