"""Azurite (Blob, Queue, Table) from node_modules on free ports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localdev.procs import REPO_ROOT, Service, ServiceStartError, free_port, start_service

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key: public, documented, and accepted only by Azurite on loopback.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"


def connection_string(blob_port: int, queue_port: int, table_port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{ACCOUNT};"
    )


@dataclass
class Azurite:
    service: Service
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{ACCOUNT}"

    def stop(self) -> None:
        self.service.stop()


def start_azurite(
    log_path: Path,
    data_dir: Path | None = None,
    timeout: float = 60.0,
    *,
    ports: tuple[int, int, int] | None = None,
) -> Azurite:
    """Start Azurite on free ports (or on `ports`: blob, queue, table, to bring a stopped one back where
    its clients expect it): in memory, or persisted under `data_dir`."""
    if not AZURITE_BIN.exists():
        raise ServiceStartError(f"azurite: {AZURITE_BIN} is missing; run `npm ci` in {REPO_ROOT}")
    ports = ports or (free_port(), free_port(), free_port())
    argv = [str(AZURITE_BIN), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--loose"]
    argv += ["--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1"]
    argv += ["--blobPort", str(ports[0]), "--queuePort", str(ports[1]), "--tablePort", str(ports[2])]
    if data_dir is None:
        argv.append("--inMemoryPersistence")
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--location", str(data_dir)]
    service = start_service("azurite", argv, log_path)
    try:
        for port in ports:
            service.wait_ready(f"http://127.0.0.1:{port}/{ACCOUNT}?comp=list", timeout)
    except ServiceStartError:
        service.stop()
        raise
    return Azurite(service, *ports)
