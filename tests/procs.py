"""omnipost (or its sandbox) as a real subprocess in tests: stderr collected by a thread, and for `serve` on
stdio (stdin=PIPE) a minimal JSON-RPC client."""

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Proc:
    """A subprocess whose stderr is collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: Any = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(args, env=env, stdin=stdin, stdout=subprocess.PIPE if stdin is subprocess.PIPE else subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One JSON-RPC request over the process's stdio (started with stdin=PIPE); its response."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._ids = getattr(self, "_ids", 0) + 1
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("id") == self._ids:
                return msg
        raise AssertionError("server closed stdout:\n" + "".join(self.lines[-40:]))

    def initialize(self) -> None:
        """The MCP handshake: initialize, then the initialized notification."""
        assert self.proc.stdin is not None
        self.rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        self.proc.stdin.flush()

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """tools/call; the structured content of a success (fails the test on an error)."""
        msg = self.rpc("tools/call", {"name": name, "arguments": arguments})
        assert "result" in msg and not msg["result"].get("isError"), msg
        result: dict[str, Any] = msg["result"]["structuredContent"]
        return result

    def wait_for(self, marker: str, timeout: float) -> None:
        """Until a stderr line contains `marker` (fails if the process exits or the time runs out first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(marker in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no '{marker}' in time; stderr:\n" + "".join(self.lines[-40:]))

    @contextmanager
    def watchdog(self, seconds: float) -> Iterator["Proc"]:
        """Kill the process if the block takes longer than `seconds` (so no test hangs), and on leaving the block."""
        timer = threading.Timer(seconds, self.proc.kill)
        timer.start()
        try:
            yield self
        finally:
            timer.cancel()
            self.kill()

    def terminate(self) -> None:
        """SIGTERM, and assert the process stops cleanly (exit 0) within 30 s."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, "".join(self.lines[-40:])

    def kill(self) -> None:
        """SIGKILL, if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
