"""Peak memory while ingesting a large file: from a local path, and from a loopback URL.

Run: .venv/bin/python bench/upload.py [--mb 200]
Each scenario runs in a fresh child process. Before the ingest the child records VmRSS and
resets its peak (VmHWM, via /proc/self/clear_refs); after it, the new VmHWM minus that VmRSS is
the growth the ingest caused. Target: at most 30 MB for a 200 MB file, whatever the source.
The URL scenario serves the file from a loopback server inside the same process (its buffers
count too) and reaches it through a fake name mapped to 127.0.0.1 (allow_loopback, test-only).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MB = 30.0
SERVE_CHUNK = 256 * 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def child(scenario: str, mb: int) -> dict[str, object]:
    """Run one ingest and report its memory and time (called in a fresh process)."""
    import anyio
    from anyio.abc import ByteStream, SocketAttribute

    from omnipost.media.storage import MediaStore

    size = mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="omnipost-bench-") as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        source = root / "src" / "big.bin"
        _make_file(source, size)
        store = MediaStore(root / "data", [root / "src"], max_bytes=size + 1)

        class Resolver:
            async def resolve(self, host: str, port: int) -> list[str]:
                return ["127.0.0.1"]

        async def serve_file(stream: ByteStream) -> None:
            async with stream:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += await stream.receive()
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n" \
                       "Connection: close\r\n\r\n"
                await stream.send(head.encode())
                with open(source, "rb") as f:
                    while chunk := f.read(SERVE_CHUNK):
                        await stream.send(chunk)

        async def run() -> dict[str, object]:
            async with anyio.create_task_group() as tg:
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
                port = listener.extra(SocketAttribute.local_port)
                tg.start_soon(listener.serve, serve_file)
                # Warm up: first use of threads, the client and the store, with a tiny file.
                (root / "src" / "tiny.bin").write_bytes(b"warm")
                await store.ingest_path(str(root / "src" / "tiny.bin"))
                rss_before = _status_kb("VmRSS")
                reset = _reset_peak()
                started = time.perf_counter()
                if scenario == "path":
                    stored = await store.ingest_path(str(source))
                else:
                    stored = await store.ingest_url(f"http://bench.example:{port}/big.bin", resolver=Resolver(),
                                                    timeout=600, allow_loopback=True)
                elapsed = time.perf_counter() - started
                peak = _status_kb("VmHWM")
                tg.cancel_scope.cancel()
            assert stored.size == size
            return {
                "scenario": scenario,
                "mb": mb,
                "seconds": round(elapsed, 2),
                "rss_before_mb": round(rss_before / 1024, 1),
                "peak_mb": round(peak / 1024, 1),
                "growth_mb": round((peak - rss_before) / 1024, 1),
                "peak_reset": reset,
                "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }

        return anyio.run(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="file size in MiB (default 200)")
    parser.add_argument("--one", choices=["path", "url"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(child(args.one, args.mb)))
        return
    failed = False
    for scenario in ("path", "url"):
        out = subprocess.run([sys.executable, __file__, "--one", scenario, "--mb", str(args.mb)],
                             check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        ok = result["growth_mb"] <= TARGET_MB
        failed |= not ok
        rate = args.mb / result["seconds"] if result["seconds"] else float("inf")
        print(f"{scenario:>4}: {args.mb} MiB in {result['seconds']:.2f} s ({rate:.0f} MiB/s); "
              f"RSS before {result['rss_before_mb']} MiB, peak {result['peak_mb']} MiB, "
              f"growth {result['growth_mb']} MiB (target <= {TARGET_MB:.0f}) {'OK' if ok else 'OVER'}"
              + ("" if result["peak_reset"] else " [peak not reset: growth includes setup]"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
