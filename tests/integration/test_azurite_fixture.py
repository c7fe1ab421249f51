"""The Azurite fixture itself: a real server on free ports that the SDKs can use."""

from __future__ import annotations

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite

pytestmark = pytest.mark.integration


def test_blob_and_table_round_trip(azurite: Azurite) -> None:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.create_container("fixturecheck")
    container.upload_blob("a.txt", b"hello")
    assert container.download_blob("a.txt").readall() == b"hello"
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    table = tables.create_table("fixturecheck")
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
    assert table.get_entity("p", "r")["v"] == 1
