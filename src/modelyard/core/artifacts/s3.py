"""The S3-compatible artifact backend (AWS S3, SeaweedFS, MinIO…) through s3fs."""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Self
from urllib.parse import unquote, urlsplit

from fsspec import AbstractFileSystem

from modelyard.core.artifacts.base import (
    OBJECTS,
    STALE_TEMP_AGE_S,
    ArtifactStore,
    create_exclusive,
    manifest_relpath,
    object_relpath,
    quarantine_name,
    quarantine_reldir,
    remove_stale_temp_files,
    validate_digest,
)
from modelyard.core.artifacts.hashing import (
    Manifest,
    ObjectInfo,
    ReadableStream,
    copy_hashing,
    is_digest,
)
from modelyard.errors import ConfigurationError

# User metadata written with every object. The size lets a read detect a truncated or
# replaced object before streaming it; the digest guards against an object copied under
# the wrong key.
_META_SIZE = "modelyard-size"
_META_DIGEST = "modelyard-sha256"
_MAX_PARTS = 10_000  # S3's limit on parts in one multipart upload
_MIN_PART = 5 << 20  # S3's minimum size of every part but the last
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_SPOOL_PREFIX = "modelyard-s3-spool-"


class S3ArtifactStore(ArtifactStore):
    """Objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO…) through s3fs.

    URL ``s3://bucket/optional/prefix``. Configuration comes from the environment:
    endpoint ``MODELYARD_S3_ENDPOINT_URL`` (else ``AWS_ENDPOINT_URL``, else AWS), and
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` (else the
    usual botocore credential chain). The bucket is created on the first put if missing.
    Keys mirror the local layout under the prefix: ``objects/…``, ``manifests/…``,
    ``quarantine/…``.

    A put spools the stream to a local temp file while hashing, then uploads
    it to its final key, so a reader never sees a partial object; uploads above
    ``2 * part_size`` go multipart with at most ``upload_concurrency`` parts in memory.
    The spool lives in :func:`tempfile.gettempdir` (``TMPDIR``): where ``/tmp`` is a RAM
    disk, point ``TMPDIR`` at real disk or multi-GB puts will use memory after all. Spools
    of killed puts are removed when a store opens, once ``stale_temp_age_s`` old.

    Deduplication verifies the stored object, which means downloading it: putting bytes
    that are already stored costs a read of them.
    """

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        key: str | None = None,
        secret: str | None = None,
        token: str | None = None,
        part_size: int = 8 << 20,
        upload_concurrency: int = 4,
        stale_temp_age_s: float = STALE_TEMP_AGE_S,
    ) -> None:
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ConfigurationError(
                f"invalid S3 bucket name {bucket!r}: 3-63 characters of a-z, 0-9, '.', '-'"
            )
        if part_size < _MIN_PART:
            raise ConfigurationError(f"part_size must be at least {_MIN_PART} bytes")
        try:
            import s3fs  # an optional dependency: only S3 users install it
        except ImportError as exc:
            raise ConfigurationError(
                "s3:// artifact stores need s3fs: pip install 'modelyard[s3]'"
            ) from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.part_size = part_size
        self.upload_concurrency = max(1, upload_concurrency)
        self._key_prefix = f"{self.prefix}/" if self.prefix else ""
        self._bucket_ready = False
        # No listings cache: existence checks must see objects written by other processes.
        self._fs: Any = s3fs.S3FileSystem(
            key=key,
            secret=secret,
            token=token,
            endpoint_url=endpoint_url,
            use_listings_cache=False,
        )
        remove_stale_temp_files(Path(tempfile.gettempdir()), _SPOOL_PREFIX, stale_temp_age_s)

    @classmethod
    def from_url(cls, url: str) -> Self:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigurationError(
                f"artifact store URL {url!r} has no bucket; expected s3://bucket/prefix"
            )
        if parts.query or parts.fragment:
            raise ConfigurationError(f"artifact store URL {url!r} must not have ? or #")
        env = os.environ
        return cls(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=env.get("MODELYARD_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL"),
            key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret=env.get("AWS_SECRET_ACCESS_KEY") or None,
            token=env.get("AWS_SESSION_TOKEN") or None,
        )

    def _key(self, digest: str) -> str:
        return self._key_prefix + object_relpath(validate_digest(digest))

    def _access_denied(self, exc: PermissionError) -> ConfigurationError:
        return ConfigurationError(
            f"access to {self.url} was denied ({exc}); check AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and MODELYARD_S3_ENDPOINT_URL"
        )

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return self._fs.call_s3(method, Bucket=self.bucket, **kwargs)
        except PermissionError as exc:
            raise self._access_denied(exc) from exc

    def _head(self, digest: str) -> dict[str, Any] | None:
        """HEAD the object: its response, or ``None`` if it (or the bucket) is absent."""
        try:
            response: dict[str, Any] = self._call("head_object", Key=self._key(digest))
        except FileNotFoundError:
            return None
        return response

    def _checked_size(self, digest: str, head: dict[str, Any]) -> int:
        """The object's length, after checking it against the metadata written with it."""
        size = int(head["ContentLength"])
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        recorded = meta.get(_META_SIZE)
        if recorded is not None and recorded != str(size):
            raise self._damaged(digest, f"it is {size} bytes long but was written with {recorded}")
        recorded_digest = meta.get(_META_DIGEST)
        if recorded_digest is not None and recorded_digest != digest:
            raise self._damaged(digest, f"it was written as the object {recorded_digest}")
        return size

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self._call("head_bucket")
        except FileNotFoundError:
            # FileExistsError: another process created it in between, which is fine.
            with contextlib.suppress(FileExistsError):
                self._call("create_bucket")
        self._bucket_ready = True

    def put_stream(self, stream: ReadableStream) -> ObjectInfo:
        fd, spool_path = create_exclusive(Path(tempfile.gettempdir()), _SPOOL_PREFIX)
        try:
            try:
                # No flush-behind: the spool is read back at once and then deleted.
                hashed = copy_hashing(stream, fd, flush_behind=False)
                if not self._holds_intact(hashed.info.digest):
                    manifest = hashed.manifest()
                    if manifest is not None:
                        self._write_manifest(manifest)
                    self._upload(spool_path, hashed.info)
            finally:
                os.close(fd)  # held open (and locked) until the upload is done
        finally:
            spool_path.unlink(missing_ok=True)
        return hashed.info

    def _upload(self, spool: Path, info: ObjectInfo) -> None:
        self._ensure_bucket()
        # Parts must be large enough that any object fits in S3's 10,000-part limit.
        part = max(self.part_size, math.ceil(info.size / _MAX_PARTS))
        try:
            self._fs.put_file(
                str(spool),
                f"{self.bucket}/{self._key(info.digest)}",
                chunksize=part,
                max_concurrency=self.upload_concurrency,
                ContentType="application/octet-stream",
                Metadata={_META_SIZE: str(info.size), _META_DIGEST: info.digest},
            )
        except PermissionError as exc:
            raise self._access_denied(exc) from exc

    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def stat(self, digest: str) -> ObjectInfo:
        head = self._head(digest)
        if head is None:
            raise self._absent(digest)
        return ObjectInfo(digest, self._checked_size(digest, head))

    def list_objects(self, after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        prefix = f"{self._key_prefix}{OBJECTS}/"
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": max(1, min(limit, 1000))}
        if after:
            kwargs["StartAfter"] = self._key(after)
        found: list[ObjectInfo] = []
        while len(found) < limit:
            try:
                page = self._call("list_objects_v2", **kwargs)
            except FileNotFoundError:
                return found  # no bucket yet
            for item in page.get("Contents") or []:
                name = str(item["Key"]).rsplit("/", 1)[-1]
                if is_digest(name) and self._key(name) == item["Key"]:
                    found.append(ObjectInfo(name, int(item["Size"])))
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return found[:limit]

    def _open_object(self, digest: str, chunk_size: int) -> tuple[BinaryIO, int]:
        head = self._head(digest)
        if head is None:
            raise self._absent(digest)
        size = self._checked_size(digest, head)
        try:
            # Read-ahead blocks of at least 8 MiB keep the number of ranged GETs low while
            # memory stays at one block; passing the size avoids a second HEAD.
            reader: BinaryIO = self._fs.open(
                f"{self.bucket}/{self._key(digest)}",
                "rb",
                block_size=max(chunk_size, 8 << 20),
                cache_type="readahead",
                size=size,
            )
        except FileNotFoundError:
            raise self._absent(digest) from None
        except PermissionError as exc:
            raise self._access_denied(exc) from exc
        return reader, size

    def _manifest_path(self, digest: str) -> str:
        return f"{self.bucket}/{self._key_prefix}{manifest_relpath(digest)}"

    def _read_manifest(self, digest: str) -> bytes | None:
        try:
            data: bytes = self._fs.cat_file(self._manifest_path(digest))
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise self._access_denied(exc) from exc
        return data

    def _write_manifest(self, manifest: Manifest) -> None:
        self._ensure_bucket()
        try:
            self._fs.pipe_file(
                self._manifest_path(manifest.digest),
                manifest.encode(),
                ContentType="application/json",
            )
        except PermissionError as exc:
            raise self._access_denied(exc) from exc

    def _move_to_quarantine(self, digest: str) -> None:
        source = self._key(digest)
        target = f"{self._key_prefix}{quarantine_reldir(digest)}/{quarantine_name()}"
        try:
            self._call("copy_object", Key=target, CopySource={"Bucket": self.bucket, "Key": source})
        except FileNotFoundError:
            return  # already moved by a concurrent reader
        self._call("delete_object", Key=source)

    def _quarantined(self, digest: str) -> bool:
        try:
            page = self._call(
                "list_objects_v2",
                Prefix=f"{self._key_prefix}{quarantine_reldir(digest)}/",
                MaxKeys=1,
            )
        except FileNotFoundError:
            return False
        return bool(page.get("Contents"))

    @property
    def filesystem(self) -> AbstractFileSystem:
        return self._fs

    def _root_location(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def object_url(self, digest: str) -> str:
        return f"s3://{self.object_location(digest)}"
