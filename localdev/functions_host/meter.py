"""A byte-counting TCP forwarder: put it between the dev host and Azurite to measure what the host reads.

Used by the dev host's tests and by bench/intake.py: point a connection string's `BlobEndpoint` at
`meter.port` (`with_blob_endpoint`) and every byte each way is counted, whatever the client does.
"""

from __future__ import annotations

import contextlib
import re
import socket
import socketserver
import threading
from typing import Any


class ByteMeter:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>; `received` counts bytes from the target."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self.received = 0  # target -> clients (responses: what a client downloads)
        self.sent = 0  # clients -> target (requests)
        meter = self

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                meter._pipe(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Pipe)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="byte-meter", daemon=True)

    def __enter__(self) -> ByteMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> tuple[int, int]:
        """(received, sent) so far, and start counting from zero."""
        with self._lock:
            counts = (self.received, self.sent)
            self.received = self.sent = 0
        return counts

    def _count(self, *, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            self.received += received
            self.sent += sent

    def _pipe(self, client: socket.socket) -> None:
        with socket.create_connection(("127.0.0.1", self.target_port)) as target:
            upstream = threading.Thread(target=self._copy, args=(client, target, "sent"), daemon=True)
            upstream.start()
            self._copy(target, client, "received")
            with contextlib.suppress(OSError):  # the target is done: end the client's side too
                client.shutdown(socket.SHUT_RDWR)
            upstream.join()

    def _copy(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while chunk := source.recv(256 * 1024):
                sink.sendall(chunk)
                self._count(**{direction: len(chunk)})
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):  # pass the end of the stream on
                sink.shutdown(socket.SHUT_WR)


def with_blob_endpoint(connection_string: str, port: int) -> str:
    """The connection string with its BlobEndpoint on 127.0.0.1:<port> (the rest untouched)."""
    replaced, count = re.subn(r"(BlobEndpoint=https?://)[^/;]+", rf"\g<1>127.0.0.1:{port}", connection_string)
    if count != 1:
        raise ValueError("the connection string has no BlobEndpoint to redirect")
    return replaced
