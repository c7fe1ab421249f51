"""A job's blobs: download its input file or folder, check its output is free, upload its outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from localdev.batch_endpoint.errors import JobFailedError
from localdev.batch_endpoint.store import JobRecord

_DOWNLOAD_THREADS = 4


class JobFiles:
    def __init__(self, connection_string: str) -> None:
        self._blobs = BlobServiceClient.from_connection_string(connection_string)

    def _container(self, name: str) -> ContainerClient:
        return self._blobs.get_container_client(name)

    def download_inputs(self, record: JobRecord, folder: Path) -> list[str]:
        """The local paths of the job's input files, in the order the folder lists them (by name)."""
        folder.mkdir(parents=True)
        container = self._container(record.input_container)
        not_found = JobFailedError(
            f"The input path '{record.input_uri}' does not exist or is not accessible "
            "(ScriptExecution.StreamAccess.NotFound)."
        )
        if record.input_type == "UriFile":
            names = [record.input_path]
        else:
            prefix = record.input_path.rstrip("/") + "/" if record.input_path.strip("/") else ""
            try:
                # Batch endpoints do not explore nested folders, so list one level only.
                names = [
                    item.name
                    for item in container.walk_blobs(name_starts_with=prefix, delimiter="/")
                    if not item.name.endswith("/")
                ]
            except ResourceNotFoundError:
                raise not_found from None
            if not names:
                raise JobFailedError(f"The input folder '{record.input_uri}' contains no files.")
        targets = [folder / name.rsplit("/", 1)[-1] for name in names]

        def fetch(pair: tuple[str, Path]) -> None:
            with pair[1].open("wb") as out:
                container.download_blob(pair[0], max_concurrency=2).readinto(out)

        try:
            with ThreadPoolExecutor(_DOWNLOAD_THREADS) as threads:
                list(threads.map(fetch, zip(names, targets, strict=True)))
        except ResourceNotFoundError:
            raise not_found from None
        return [str(path) for path in targets]

    def check_output_free(self, record: JobRecord) -> None:
        if record.settings["output_action"] != "append_row":
            return
        blob = self._container(record.output_container).get_blob_client(record.output_path)
        if blob.exists():
            raise JobFailedError(
                f"The output file '{record.output_uri}' already exists (the path already exists); "
                "a batch scoring job cannot overwrite an existing output file."
            )

    def upload_outputs(
        self, record: JobRecord, merged: Path | None, extra: Path, on_uploaded: Callable[[], None]
    ) -> None:
        """Sidecar files first, then the merged file (never overwriting); `on_uploaded` once it is there."""
        container = self._container(record.output_container)
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        folder = record.output_path.rsplit("/", 1)[0] if "/" in record.output_path else ""
        # Files a scoring script wrote to AZUREML_BI_OUTPUT_PATH land next to the output file.
        for path in sorted(p for p in extra.rglob("*") if p.is_file()):
            name = "/".join(filter(None, [folder, path.relative_to(extra).as_posix()]))
            with path.open("rb") as data:
                container.upload_blob(name, data, overwrite=True)
        if merged is None:
            return
        try:
            with merged.open("rb") as data:
                container.upload_blob(record.output_path, data, overwrite=False, max_concurrency=4)
        except ResourceExistsError:
            # A retry of our own upload whose first answer was lost (storage restarting mid-request) finds the
            # file it wrote: that is our output, not someone else's.
            if not same_content(container, record.output_path, merged):
                raise JobFailedError(
                    f"The output file '{record.output_uri}' already exists (the path already exists)."
                ) from None
        on_uploaded()


def same_content(container: ContainerClient, name: str, local: Path) -> bool:
    """The blob holds exactly the bytes of `local` (compared in chunks: an output can be large)."""
    blob = container.get_blob_client(name)
    if blob.get_blob_properties().size != local.stat().st_size:
        return False
    with local.open("rb") as mine:
        for chunk in blob.download_blob().chunks():
            if mine.read(len(chunk)) != chunk:
                return False
    return True
