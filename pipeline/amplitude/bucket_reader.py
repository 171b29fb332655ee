"""Reading the objects Amplitude writes into a bucket, without trusting them to stay put.

Amplitude rewrites what it exported by deleting objects and writing new ones (a backfill), at
any time. So an object is read only if it is still the one listed (``If-Match`` on the listed
ETag, and the length listed), and its gzip head and trailer are checked on the way to disk as an
archive member's are (``archive.check_gzip``). What moved is :class:`ObjectChanged`; what is
not gzip or looks like a bomb is ``MemberRefused``; both refuse what they belong to (an hour),
while a bucket that cannot be read at all (``BucketError``) stops the run.

boto3 rather than pyarrow's S3 file system, which the lake uses: only boto3 gives listings with
ETags and conditional reads. Its own retries (standard mode) and timeouts bound every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.amplitude.archive import (
    COPY_BUFFER,
    MAX_INFLATION,
    ArchiveError,
    MemberRefused,
    check_gzip,
)
from pipeline.bucket_access import BucketAccess, BucketError


class ObjectChanged(ArchiveError):
    """An object, or a listing, moved while it was read: Amplitude is rewriting it."""


@dataclass(frozen=True)
class StorageLocation:
    """``s3://bucket/prefix``: where Amplitude's export (or its merged-ID files) is written."""

    bucket: str
    prefix: str  # without slashes at the ends; "" for the bucket's root

    @classmethod
    def parse(cls, url: str) -> StorageLocation:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise BucketError(f"{url!r} is not of the form s3://BUCKET/PREFIX")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class StoredObject:
    key: str  # the whole key in the bucket
    etag: str
    bytes: int


@dataclass
class Requests:
    """Requests made to the bucket, for the figures a run reports."""

    lists: int = 0
    reads: int = 0

    @property
    def total(self) -> int:
        return self.lists + self.reads


@dataclass(kw_only=True)
class BucketReader:
    access: BucketAccess
    location: StorageLocation
    requests: Requests = field(default_factory=Requests)

    @cached_property
    def client(self) -> Any:
        return self.access.client()

    @property
    def what(self) -> str:
        return f"the bucket {self.location}"

    def list_keys(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``, page by page."""
        token: dict[str, str] = {}
        while True:
            self.requests.lists += 1
            with self.access.explained(self.what):
                page = self.client.list_objects_v2(Bucket=self.location.bucket, Prefix=prefix,
                                                   **token)
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], str(item.get("ETag", "")).strip(),
                                   int(item.get("Size", 0)))
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def copy_object(self, stored: StoredObject, dest: Path, *, label: str,
                    limit: int = MAX_INFLATION) -> None:
        """Stream ``stored`` to ``dest`` if it is still the object listed; ``label`` names what
        it belongs to in messages (``upload hour 2026-03-01T07``). A refused object leaves no
        file."""
        head = tail = b""
        size = 0
        try:
            body = self._get(stored, label)
            with body, open(dest, "wb") as out:
                while chunk := body.read(COPY_BUFFER):
                    out.write(chunk)
                    if len(head) < 16:
                        head += chunk[:16 - len(head)]
                    tail = (tail + chunk[-8:])[-8:]
                    size += len(chunk)
            if size != stored.bytes:
                raise ObjectChanged(f"{label}: object {stored.key!r} was {stored.bytes:,} bytes "
                                    f"when listed and {size:,} when read", member=stored.key)
            problem = check_gzip(head, tail, size, limit)
            if problem:
                raise MemberRefused(f"{label}: object {stored.key!r} {problem}",
                                    member=stored.key)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _get(self, stored: StoredObject, label: str) -> Any:
        from botocore.exceptions import ClientError

        self.requests.reads += 1
        try:
            with self.access.explained(self.what):
                answer = self.client.get_object(Bucket=self.location.bucket, Key=stored.key,
                                                IfMatch=stored.etag)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise ObjectChanged(f"{label}: object {stored.key!r} changed or went away after "
                                    f"it was listed ({code}): Amplitude is rewriting it",
                                    member=stored.key) from None
            raise
        return answer["Body"]
