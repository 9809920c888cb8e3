"""Half-open HTTP connections for the transport guard tests: request headers begun and never finished."""

import socket

import anyio

PARTIAL = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl"


def stalled(port: int) -> socket.socket:
    """A loopback connection that sent part of its request headers and then nothing (non-blocking)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(PARTIAL)
    s.setblocking(False)
    return s


def is_open(s: socket.socket) -> bool:
    """Whether the server still holds the connection (nothing to read, no EOF, no reset)."""
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False


async def closed(s: socket.socket) -> None:
    """Until the server has closed the connection (EOF or reset); bound it with fail_after."""
    while is_open(s):
        await anyio.wait_readable(s)
