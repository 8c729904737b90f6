"""Datasets from the SDK: create, list, upload a folder, download one.

::

    data = client.data
    dataset = data.create("inputs")         # the id exists before any byte is sent
    data.upload(Path("inputs"), dataset=dataset)
    data.download(dataset.id, Path("copy"))

JSON calls go through :class:`~nerd.client.http.Api`; pack bytes go through urllib3,
which moves large bodies much faster here, with the same endpoint and token.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from nerd import errors
from nerd.client.http import API_PREFIX, Api
from nerd.ids import check_id
from nerd.models import (
    ChunkLocation,
    ChunkLocations,
    ChunkQuery,
    Dataset,
    DatasetCreate,
    DatasetStatus,
    Manifest,
    MissingChunks,
)
from nerd.transfer.cache import ChunkCache, open_cache
from nerd.transfer.download import RemoteChunkSource
from nerd.transfer.manifest import chunk_sizes
from nerd.transfer.pack import Pack
from nerd.transfer.unpack import unpack
from nerd.transfer.upload import UploadedFolder, upload_folder
from nerd.transfer.walk import WalkedFolder, walk_folder

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

DEFAULT_THREADS = 4
NAMES_PER_QUERY = 10_000
BULK_TIMEOUT_S = 300.0

# The class below has a method named ``list``; these keep the builtin in reach.
_Names = list[str]
_Locations = list[ChunkLocation]


class DataClient:
    """The datasets of ``project``."""

    def __init__(
        self, api: Api, project: str, *, threads: int = DEFAULT_THREADS
    ) -> None:
        self.api = api
        self.project = project
        self.threads = threads
        self._prefix = f"/projects/{quote(project, safe='')}"
        self._bulk = _BulkHttp(api, threads)

    def create(self, name: str | None = None) -> Dataset:
        """A new, empty dataset in status ``uploading``."""
        body = DatasetCreate(name=name)
        return self.api.call("POST", self._path("datasets"), Dataset, json=body)

    def list(self) -> list[Dataset]:
        return self.api.call("GET", self._path("datasets"), list[Dataset])

    def describe(self, dataset_id: str) -> Dataset:
        return self.api.call("GET", self._dataset_path(dataset_id), Dataset)

    def delete(self, dataset_id: str) -> None:
        self.api.request("DELETE", self._dataset_path(dataset_id))

    def manifest(self, dataset_id: str) -> Manifest:
        return self.api.call(
            "GET", self._dataset_path(dataset_id, "manifest"), Manifest
        )

    def upload(
        self,
        path: Path,
        *,
        dataset: Dataset | str | None = None,
        progress: Progress | None = None,
        cache: Path | None = None,
        skip_bad_links: bool = False,
        walked: WalkedFolder | None = None,
    ) -> Dataset:
        """Upload the folder into ``dataset`` (a new one if None) and commit it.

        Create the dataset first to learn its id before any byte is sent; upload into
        an ``uploading`` dataset again to resume: chunks already sent are skipped.
        With ``cache`` (a file, see :func:`default_cache_path`), files unchanged since
        an earlier upload are not read again. ``skip_bad_links`` leaves out links
        that dangle, loop or leave the folder instead of refusing the upload.

        The folder is walked and checked before anything is created, so a folder
        that cannot be uploaded leaves no empty dataset behind; pass ``walked``
        (from :meth:`check_folder`) if it has been checked already.
        """
        if walked is None:
            walked = self.check_folder(Path(path), skip_bad_links=skip_bad_links)
        target = self._uploading(dataset)
        log.info("dataset.uploading dataset=%s path=%s", target.id, path)
        chunk_cache = open_cache(cache) if cache is not None else None
        try:
            committed = self._upload_and_commit(
                Path(path), target.id, progress, chunk_cache, walked
            )
        finally:
            if chunk_cache is not None:
                chunk_cache.close()
        log.info("dataset.uploaded dataset=%s", committed.id)
        return committed

    def check_folder(self, path: Path, *, skip_bad_links: bool = False) -> WalkedFolder:
        """Walk the folder and refuse what cannot be uploaded; nothing is sent."""
        return walk_folder(Path(path), skip_bad_links=skip_bad_links)

    def _upload_and_commit(
        self,
        path: Path,
        dataset_id: str,
        progress: Progress | None,
        cache: ChunkCache | None,
        walked: WalkedFolder,
    ) -> Dataset:
        def send(cache: ChunkCache | None) -> UploadedFolder:
            return upload_folder(
                path,
                _Sink(self),
                progress=progress,
                threads=self.threads,
                cache=cache,
                walked=walked,
            )

        try:
            return self._commit(dataset_id, send(cache).manifest)
        except errors.ChunksMissingError:
            pass
        # The server lacks chunks that the cache vouched for, or that it held when
        # asked and collected since (another server, or `nerd admin gc`).
        log.info("dataset.chunks_missed dataset=%s", dataset_id)
        return self._commit(dataset_id, send(None).manifest)

    def _commit(self, dataset_id: str, manifest: Manifest) -> Dataset:
        # Compressed: a re-upload of an unchanged folder sends only this.
        body = gzip.compress(manifest.model_dump_json().encode(), compresslevel=1)
        return self.api.call(
            "POST",
            self._dataset_path(dataset_id, "commit"),
            Dataset,
            content=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout_s=BULK_TIMEOUT_S,
        )

    def download(
        self,
        dataset_id: str,
        dest: Path,
        *,
        progress: Progress | None = None,
        no_clobber: bool = False,
    ) -> Dataset:
        """Write the dataset's files into ``dest``; taken names get ``name_(1).ext``."""
        dataset = self.describe(dataset_id)
        manifest = self.manifest(dataset.id)
        locations = self._locate_all(dataset.id, list(chunk_sizes(manifest)))
        source = RemoteChunkSource(locations, self._read_range, threads=self.threads)
        unpack(
            manifest,
            Path(dest),
            source,
            dataset_id=dataset.id,
            no_clobber=no_clobber,
            progress=progress,
        )
        return dataset

    # --- chunks and packs -------------------------------------------------------------

    def missing(self, names: _Names) -> _Names:
        """Those of the chunks ``names`` the project does not hold."""
        missing: _Names = []
        for start in range(0, len(names), NAMES_PER_QUERY):
            query = ChunkQuery(chunks=names[start : start + NAMES_PER_QUERY])
            answer: MissingChunks = self.api.call(
                "POST", self._path("chunks", "missing"), MissingChunks, json=query
            )
            missing.extend(answer.missing)
        return missing

    def locate(self, names: _Names) -> _Locations:
        """Where the project's chunks sit; chunks it does not hold are left out."""
        found: _Locations = []
        for start in range(0, len(names), NAMES_PER_QUERY):
            query = ChunkQuery(chunks=names[start : start + NAMES_PER_QUERY])
            answer: ChunkLocations = self.api.call(
                "POST", self._path("chunks", "locate"), ChunkLocations, json=query
            )
            found.extend(answer.locations)
        return found

    def put_pack(self, pack: Pack) -> None:
        """Send one pack; returns once the server has stored it durably."""
        self._bulk.send(
            "PUT",
            self._path("packs", pack.name),
            body=list(pack.pieces),
            headers={"Content-Length": str(pack.size_bytes)},
        )

    def _read_range(self, pack: str, start: int, length: int) -> bytes:
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        data = self._bulk.send("GET", self._path("packs", pack), headers=headers)
        if len(data) != length:
            raise errors.IntegrityError(
                f"pack {pack}: asked for {length} bytes at {start}, got {len(data)}"
            )
        return data

    def _locate_all(self, dataset_id: str, names: _Names) -> dict[str, ChunkLocation]:
        locations = {loc.sha256: loc for loc in self.locate(names)}
        lost = len(names) - len(locations)
        if lost:
            raise errors.NotFoundError(
                f"dataset {dataset_id}: {lost} of its {len(names)} chunks are no "
                f"longer stored in project '{self.project}'"
            )
        return locations

    def _uploading(self, dataset: Dataset | str | None) -> Dataset:
        if dataset is None:
            return self.create()
        found = self.describe(dataset if isinstance(dataset, str) else dataset.id)
        if found.status != DatasetStatus.UPLOADING:
            raise errors.ConflictError(
                f"dataset {found.id} is already committed; datasets are immutable",
                hint="upload into a new dataset",
            )
        return found

    def _dataset_path(self, dataset_id: str, *rest: str) -> str:
        return self._path("datasets", check_id(dataset_id, "d"), *rest)

    def _path(self, *parts: str) -> str:
        return "/".join([self._prefix, *(quote(p, safe="") for p in parts)])


def default_cache_path() -> Path:
    """Where the CLI keeps its chunk cache: ``$NERD_CACHE_DIR`` or ``~/.nerd/cache``."""
    folder = os.environ.get("NERD_CACHE_DIR") or Path.home() / ".nerd" / "cache"
    return Path(folder) / "chunks.sqlite"


class _Sink:
    """The data client as the uploader's ChunkSink."""

    def __init__(self, client: DataClient) -> None:
        self._client = client

    def missing(self, names: list[str]) -> list[str]:
        return self._client.missing(names)

    def put_pack(self, pack: Pack) -> None:
        self._client.put_pack(pack)


class _BulkHttp:
    """Raw request bodies and answers, with the Api's endpoint, token and errors."""

    def __init__(self, api: Api, threads: int) -> None:
        self._api = api
        self._threads = threads
        self._lock = threading.Lock()
        self._manager: urllib3.PoolManager | None = None

    def _pool(self) -> urllib3.PoolManager:
        with self._lock:
            if self._manager is None:
                self._manager = self._new_pool()
            return self._manager

    def _new_pool(self) -> urllib3.PoolManager:
        # Imported here: an upload with nothing to send never needs it.
        import urllib3

        retries = urllib3.Retry(
            total=3,
            connect=1,
            backoff_factor=0.5,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "PUT"}),
            raise_on_status=False,
        )
        return urllib3.PoolManager(
            maxsize=self._threads + 2,
            retries=retries,
            timeout=urllib3.Timeout(connect=10.0, read=BULK_TIMEOUT_S),
        )

    def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | list[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        url = f"{self._api.endpoint}{API_PREFIX}{path}"
        all_headers = {**(headers or {}), **self._api.auth_headers()}
        pool = self._pool()
        import urllib3

        try:
            response = pool.request(
                method, url, body=body, headers=all_headers, preload_content=True
            )
        except urllib3.exceptions.HTTPError as exc:
            raise errors.ServerUnreachableError(
                f"cannot reach the nerd server at {self._api.endpoint}: {exc}"
            ) from exc
        log.debug("%s %s -> %s", method, path, response.status)
        if response.status >= 400:
            raise errors.from_body(response.status, _json_or_none(response.data))
        return bytes(response.data)


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
