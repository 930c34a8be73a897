"""Locations on object storage: `s3://bucket/prefix` (or any fsspec URL) read and written through fsspec.

A location setting (`[offline] path`, `[models] path`, `[monitoring] log_path`) is either a local
folder (a `Path`, used exactly as before) or a URL with a scheme, which this module handles: an
`ObjectStore` wraps the fsspec file system of the URL's scheme (s3fs for `s3://`), built once from
`[offline] storage_options` (e.g. `endpoint_url`; credentials come from the standard AWS
variables, which s3fs reads itself), and offers the few operations the store needs: whole-object
reads and writes, uploads and downloads, listing, deleting, and registering the file system with a
DuckDB connection so `read_parquet('s3://...')` reads through it.

Object storage has no rename: a writer that must replace something atomically writes a new object
under a unique name and then overwrites one small pointer object (`featurestore.offline.object_storage`
does this with a manifest per view). S3 gives strong read-after-write consistency for every PUT and
DELETE, so a reader sees a pointer's newest version as soon as its PUT returned.

>>> store = ObjectStore("s3://bucket/offline", {"endpoint_url": "http://127.0.0.1:9000"})
>>> store.write_bytes(store.url("a/b.json"), b"{}")
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, FeatureStoreError, ObjectStorageError

if TYPE_CHECKING:
    import duckdb
    from fsspec import AbstractFileSystem

#: the environment variable that sets `endpoint_url` in every location's storage options
ENDPOINT_ENV = "FS_S3_ENDPOINT_URL"


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether a location setting names object storage (`s3://...`) rather than a local folder."""
    text = os.fspath(location)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalnum() and scheme != "file"


def url_of(location: str, setting: str, where: str) -> str | None:
    """The URL a location setting names, or None for a local folder; ConfigError for a URL with no
    bucket (`s3://` or `s3:///prefix`), which would otherwise fail only at the first write."""
    if not is_url(location):
        return None
    if not location.split("://", 1)[1].split("/", 1)[0]:
        raise ConfigError(
            f"{where}: {setting} {location!r} names no bucket (expected e.g. s3://bucket/prefix)"
        )
    return location


def join(url: str, *parts: str) -> str:
    """`url` with path parts appended, one '/' between each."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts if p)])


class WriteConflict(FeatureStoreError):
    """A conditional write was refused: the object is no longer the version the writer read."""


@cache
def _storage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a file system operation raises when storage, not the caller, is at fault: the
    OSErrors s3fs translates S3 errors into, and botocore's own (no credentials, no connection)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


def _s3_status(e: BaseException) -> tuple[str, int | None]:
    """The S3 error code and HTTP status behind an s3fs OSError (botocore's ClientError is its cause)."""
    for cause in (e, e.__cause__):
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code, status if isinstance(status, int) else None
    return "", None


def _is_conflict(e: BaseException) -> bool:
    """Whether a conditional PUT failed its condition: 412 PreconditionFailed (s3fs: FileExistsError
    for If-None-Match, OSError EINVAL for If-Match) or 409 ConditionalRequestConflict (a concurrent
    conditional write to the same key)."""
    code, status = _s3_status(e)
    if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
        return True
    return isinstance(e, FileExistsError) or (isinstance(e, OSError) and e.errno == errno.EINVAL)


class ObjectStore:
    """One object-storage location: its root URL and the fsspec file system that reaches it.

    Objects are named by full URLs (`s3://bucket/prefix/...`); the file system is made on first
    use (importing s3fs only then), so a store that never touches object storage never imports it.
    A failure of storage itself (no such bucket, the endpoint unreachable, no credentials, access
    denied) raises `ObjectStorageError` naming the URL and `setting`, the configuration line the
    location comes from; a missing object stays a FileNotFoundError (callers expect it)."""

    def __init__(
        self, root: str, storage_options: Mapping[str, Any] | None = None, setting: str = "[offline] path"
    ):
        if not is_url(root):
            raise ValueError(f"not an object storage URL: {root!r} (expected e.g. s3://bucket/prefix)")
        self.root = root.rstrip("/")
        self.protocol = root.split("://", 1)[0]
        self.storage_options = dict(storage_options or {})
        self.setting = setting

    def __repr__(self) -> str:
        return f"ObjectStore({self.root!r})"

    @cached_property
    def fs(self) -> AbstractFileSystem:
        """The fsspec file system of this location (s3fs for s3://), with the storage options."""
        import fsspec

        try:
            return fsspec.filesystem(self.protocol, **self.storage_options)
        except ImportError as e:
            raise ImportError(
                f"{self.root}: object storage needs the file system package of {self.protocol}:// "
                f"(for s3://: pip install 'featurestore[s3]'): {e}"
            ) from e

    @contextmanager
    def _reporting(self, action: str, url: str) -> Iterator[None]:
        """Turn a storage failure of `action` on `url` into an ObjectStorageError saying what to check."""
        try:
            yield
        except FileNotFoundError as e:
            if _s3_status(e)[0] != "NoSuchBucket":
                raise
            raise self.error(action, url, e) from None
        except _storage_errors() as e:
            raise self.error(action, url, e) from None

    def error(self, action: str, url: str, e: BaseException) -> ObjectStorageError:
        """The ObjectStorageError for a failed `action` on `url`: the cause and the settings behind it
        (never their values: storage_options may hold a secret)."""
        code, status = _s3_status(e)
        detail = f"{type(e).__name__}: {e}".strip().rstrip(":")
        if code and code not in detail:
            detail += f" ({code}{f', HTTP {status}' if status else ''})"
        return ObjectStorageError(
            f"object storage: cannot {action} {url}: {detail}. Check {self.setting} (its bucket must "
            f"exist), [offline] storage_options endpoint_url (or {ENDPOINT_ENV}), and the credentials "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or storage_options key and secret)"
        )

    def url(self, *parts: str) -> str:
        """The URL of a path under this location's root."""
        return join(self.root, *parts)

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let `con` read and write this location's URLs (`read_parquet('s3://...')`, COPY TO)."""
        if not con.filesystem_is_registered(self.protocol):
            con.register_filesystem(self.fs)

    def exists(self, url: str) -> bool:
        self.fs.invalidate_cache(
            url
        )  # fsspec answers from cached listings; another writer may have changed it
        with self._reporting("check", url):
            return bool(self.fs.exists(url))

    def etag(self, url: str) -> str | None:
        """The object's ETag now (FileNotFoundError when there is none; None: the server gives none)."""
        self.fs.invalidate_cache(url)
        with self._reporting("read", url):
            return str(self.fs.info(url).get("ETag") or "") or None

    def read_bytes(self, url: str) -> bytes:
        """The whole object; FileNotFoundError when there is none."""
        with self._reporting("read", url):
            data = self.fs.cat_file(url)
        assert isinstance(data, bytes)
        return data

    def write_bytes(self, url: str, data: bytes) -> None:
        """Create or replace one object (a single PUT: readers see all of it or none of it)."""
        with self._reporting("write", url):
            self.fs.pipe_file(url, data)

    def write_if(self, url: str, data: bytes, etag: str | None) -> None:
        """Replace the object only if it is still the version with ETag `etag` (None: only if there is
        no object), in one conditional PUT; WriteConflict when the server refuses the condition.

        A refusal is not proof the object changed: a PUT whose answer was lost and which botocore
        retried fails its own condition. The caller re-reads the object to tell (see
        object_storage.ObjectOfflineStorage._put_manifest). File systems without conditional writes
        (not s3://) write unconditionally: there the writer lock alone keeps writers apart."""
        condition: dict[str, str] = {}
        if self.protocol in ("s3", "s3a"):
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.fs.pipe_file(url, data, **condition)
        except _storage_errors() as e:
            if condition and _is_conflict(e):
                raise WriteConflict(f"{url} is no longer the version {etag or '(none)'}") from e
            raise self.error("write", url, e) from None

    def upload(self, local: Path, url: str) -> None:
        with self._reporting("upload to", url):
            self.fs.put_file(str(local), url)

    def copy(self, source: str, dest: str) -> None:
        with self._reporting("copy to", dest):
            self.fs.copy(source, dest)

    def delete(self, url: str) -> None:
        """Delete one object; one already gone is not an error."""
        try:
            with self._reporting("delete", url):
                self.fs.rm_file(url)
        except FileNotFoundError:
            pass

    def delete_tree(self, url: str) -> None:
        """Delete every object under `url/`."""
        self._forget(url)
        try:
            with self._reporting("delete", url + "/"):
                self.fs.rm(url, recursive=True)
        except FileNotFoundError:
            pass

    def glob(self, pattern: str) -> list[str]:
        """URLs of the objects matching a glob (`s3://b/p/*/date=*/*.parquet`), sorted; listed now."""
        self._forget(pattern.split("*", 1)[0].rsplit("/", 1)[0])  # the folder above the first wildcard
        with self._reporting("list", pattern):
            found = self.fs.glob(pattern)
        return sorted(f"{self.protocol}://{p}" for p in found)

    def version(self, url: str) -> str:
        """The object's ETag as the file system knows it: from a cached listing when one holds the
        object (no request), else asked (a HEAD); FileNotFoundError when there is no object."""
        with self._reporting("read", url):
            return str(self.fs.info(url).get("ETag") or "")

    def cache_listing(self, folder: str, urls: Iterable[str]) -> None:
        """Make fsspec's cached listings under `folder` hold each of `urls` (objects a manifest names,
        which are immutable: a new version is a new name), relisting the folder (one LIST request per
        1000 objects) when one is missing: otherwise a listing cached before another process wrote
        them would answer that they do not exist, and with no listing every open of a file costs a
        HEAD request."""
        cache = self.fs.dircache
        for url in urls:
            key = url.split("://", 1)[-1]
            listed = cache.get(key.rsplit("/", 1)[0])
            if listed is None or not any(entry.get("name") == key for entry in listed):
                break
        else:
            return
        self._forget(folder)
        with self._reporting("list", folder + "/"):
            self.fs.find(folder)

    def folders(self, url: str) -> list[str]:
        """The names of the folders (common prefixes) right under `url/`, listed now, sorted; none
        when there is nothing under it. One LIST request per 1000 names, whatever lies below them."""
        self._forget(url)
        try:
            with self._reporting("list", url + "/"):
                entries = self.fs.ls(url, detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"
        )

    def _forget(self, folder: str) -> None:
        """Drop fsspec's cached listings of `folder` and of everything under it (another writer may
        have changed them), keeping the rest (e.g. the listings of other views)."""
        key = folder.split("://", 1)[-1].rstrip("/")
        for cached in [p for p in self.fs.dircache if p == key or str(p).startswith(key + "/")]:
            self.fs.dircache.pop(cached, None)
        self.fs.invalidate_cache(folder)

    def modified(self, url: str) -> float:
        """When the object was last written, as a POSIX timestamp."""
        with self._reporting("read", url):
            stamp = self.fs.modified(url)
        return float(stamp.timestamp())


def storage_options(raw: Any, env: Mapping[str, str], where: str) -> dict[str, Any]:
    """`[offline] storage_options` (a table of fsspec/s3fs settings) with FS_S3_ENDPOINT_URL applied.

    Raises ValueError with a message naming the setting when `raw` is not a table of settings."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ValueError(
            f"{where}: [offline] storage_options must be a table, e.g. "
            f'{{endpoint_url = "http://127.0.0.1:9000"}}, got a {type(raw).__name__}'
            + (" with keys that are not names" if isinstance(raw, dict) else "")
            + " (its value is not shown: it may hold a secret)"
        )
    options = dict(raw)
    if env.get(ENDPOINT_ENV):
        options["endpoint_url"] = env[ENDPOINT_ENV]
    return options
