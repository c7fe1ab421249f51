"""Cached storage clients per connection string, message encoding, and blob URL parsing."""

from __future__ import annotations

import base64
import binascii
import functools
from urllib.parse import unquote, urlparse

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

HOSTS_CONTAINER = "azure-webjobs-hosts"
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"


#: Threads the host runs storage calls on (its event loop's default executor) and connections per client
#: to match: with requests' default pool of 10, a burst would open and drop a connection per extra call.
STORAGE_THREADS = 32


def _transport() -> RequestsTransport:
    session = requests.Session()
    # Retries are the storage pipeline's own (as in azure-core's default transport), never urllib3's.
    adapter = HTTPAdapter(pool_maxsize=STORAGE_THREADS, max_retries=Retry(total=False, redirect=False))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=False)


@functools.cache
def blob_service(connection_string: str) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(connection_string, transport=_transport())


@functools.cache
def queue_service(connection_string: str) -> QueueServiceClient:
    """Queue clients without encode/decode policies: the host does (and checks) base64 itself."""
    return QueueServiceClient.from_connection_string(connection_string, transport=_transport())


def encode_message(text: str | bytes, encoding: str) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8")


def decode_message(content: str, encoding: str) -> bytes:
    """The message body as the function sees it; invalid base64 raises ValueError like the host's binder."""
    if encoding != "base64":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"message content is not valid base64 (messageEncoding=base64): {exc}") from exc


def split_blob_url(url: str, account_name: str) -> tuple[str, str]:
    """(container, blob name) from an Event Grid `data.url`.

    Azure URLs are host-style (`https://acct.blob.core.windows.net/c/b`); Azurite and other emulators
    are path-style (`http://127.0.0.1:10000/devstoreaccount1/c/b`), so a leading account segment is dropped.
    """
    parts = [unquote(p) for p in urlparse(url).path.lstrip("/").split("/")]
    if len(parts) >= 3 and parts[0] == account_name:
        parts = parts[1:]
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        raise ValueError(f"not a blob URL: {url}")
    return parts[0], "/".join(parts[1:])
