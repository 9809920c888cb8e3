"""Idle memory: resident set size of `omnipost serve` (stdio) after start-up and one list_accounts, beside the bare
SDK server (bench/bare_server.py) after start-up and one echo call. Target (issue 11 item 10): ratio <= 1.3.

Run: .venv/bin/python bench/idle_memory.py [--runs N]
Each run starts both servers as real stdio subprocesses through the SDK's Client, makes the one call, then reads
VmRSS (and the peak, VmHWM) of the server process from /proc. Linux only. The median of N runs is reported.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent
TARGET = 1.3
EXTRA_ENV = dict(kv.split("=", 1) for kv in os.environ.get("BENCH_ENV", "").split() if kv)


def params(kind: str, data_dir: str) -> StdioServerParameters:
    env = {"OMNIPOST_DATA_DIR": data_dir, "OMNIPOST_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin", **EXTRA_ENV}
    if kind == "omnipost":
        return StdioServerParameters(command=sys.executable, args=["-m", "omnipost", "serve"], env=env)
    return StdioServerParameters(command=sys.executable, args=[str(HERE / "bare_server.py")], env=env)


def children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.add(int(entry.name))
    return found


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def measure(kind: str) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of a fresh server after start-up and one call."""
    with tempfile.TemporaryDirectory() as data_dir:
        before = children()
        async with Client(params(kind, data_dir)) as client:
            await client.list_tools()
            if kind == "omnipost":
                result = await client.call_tool("list_accounts", {})
            else:
                result = await client.call_tool("echo", {"text": "hi"})
            assert not result.is_error, result
            (pid,) = children() - before
            return status_kb(pid, "VmRSS") / 1024, status_kb(pid, "VmHWM") / 1024


async def main(runs: int) -> int:
    rows: dict[str, list[tuple[float, float]]] = {"bare": [], "omnipost": []}
    for _ in range(runs):
        for kind in rows:  # interleaved
            rows[kind].append(await measure(kind))
    med = {k: (statistics.median(r for r, _ in v), statistics.median(h for _, h in v)) for k, v in rows.items()}
    ratio = med["omnipost"][0] / med["bare"][0]
    for kind, (rss, hwm) in med.items():
        print(f"{kind:9} RSS {rss:6.1f} MB   peak {hwm:6.1f} MB   (median of {runs})")
    print(f"ratio     {ratio:.2f} (target <= {TARGET})")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    sys.exit(anyio.run(main, parser.parse_args().runs))
