"""The REST client keeps a connection per poll thread: POLL_CONCURRENCY status calls in flight reuse their
connections tick after tick instead of opening (in Azure: a TLS handshake) a new one per call."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.adapters.azureml import AzureMLBatchEndpoint
from shared.adapters.rest import RestClient, retrying_session
from tests.fakes import make_world

THREADS = 24


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), KeepAliveHandler)
        self.connections = 0
        self.lock = threading.Lock()
        self.gate = threading.Barrier(THREADS, timeout=10)


class KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Azure ML's front end

    def setup(self) -> None:
        super().setup()
        server = self.server
        assert isinstance(server, CountingServer)
        with server.lock:
            server.connections += 1

    def do_GET(self) -> None:  # http.server names its handlers so
        server = self.server
        assert isinstance(server, CountingServer)
        server.gate.wait()  # every thread's call is in flight at once, as in a tick
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # the base class names it so
        pass


@pytest.fixture
def server() -> Iterator[CountingServer]:
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def connections_for_three_ticks(server: CountingServer, client: RestClient) -> int:
    url = f"http://127.0.0.1:{server.server_address[1]}/jobs/x"
    for _ in range(3):
        with ThreadPoolExecutor(THREADS) as pool:
            replies = list(pool.map(lambda _: client.send("GET", url, headers={}), range(THREADS)))
        assert {reply.status for reply in replies} == {200}
    return server.connections


def test_a_pool_as_big_as_the_threads_reuses_every_connection(server: CountingServer) -> None:
    client = RestClient(retrying_session(0, pool_size=THREADS), timeout=10)
    assert connections_for_three_ticks(server, client) == THREADS


def test_a_smaller_pool_opens_connections_again_every_tick(server: CountingServer) -> None:
    client = RestClient(retrying_session(0, pool_size=8), timeout=10)
    assert connections_for_three_ticks(server, client) > THREADS + 8


def test_the_azure_ml_client_is_built_with_a_pool_for_poll_concurrency() -> None:
    settings = make_world(POLL_CONCURRENCY="48").settings
    endpoint = AzureMLBatchEndpoint.from_settings(settings)
    session = endpoint._rest._session  # the pool size is what this test is about
    assert session.get_adapter("https://x").poolmanager.connection_pool_kw["maxsize"] == 48
