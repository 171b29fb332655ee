"""Where an ``s3://bucket/prefix`` lake lives, and how pyarrow and DuckDB reach it.

The standard AWS variables configure it (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, and ``AWS_ENDPOINT_URL`` for an S3-compatible server such as SeaweedFS or MinIO).
The keys are read here, at run time, and handed only to the two clients: they are kept out of
``repr`` and never put in a message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from duckdb import DuckDBPyConnection as Connection

from pipeline import engine, sql

if TYPE_CHECKING:  # pydantic and its settings load only where a setting is read
    from pydantic import SecretStr

SCHEME = "s3://"


class ObjectStorageError(RuntimeError):
    pass


def _value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def is_remote(root: str | os.PathLike[str]) -> bool:
    return str(root).startswith(SCHEME)


@dataclass(frozen=True)
class ObjectStorage:
    bucket: str
    prefix: str  # without leading or trailing slash; "" for the bucket's root
    region: str = "us-east-1"
    endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333; None: AWS itself
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_root(cls, root: str, env: Mapping[str, str] | None = None) -> ObjectStorage:
        """The lake's bucket, with the credentials of the standard AWS variables
        (``SharedSettings``) in ``env`` (default: the process's)."""
        from pipeline.settings import SharedSettings  # ~20 MB of imports a local lake skips

        aws = SharedSettings.from_env(env)
        parts = urlsplit(root)
        if parts.scheme != "s3" or not parts.netloc:
            raise ObjectStorageError(f"LAKE_ROOT={root!r} is not of the form s3://bucket/prefix")
        endpoint = (aws.aws_endpoint_url_s3 or aws.aws_endpoint_url or "").strip()
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ObjectStorageError(
                "AWS_ENDPOINT_URL must start with http:// or https:// (for example "
                "http://127.0.0.1:8333)")
        return cls(
            bucket=parts.netloc, prefix=parts.path.strip("/"),
            region=(aws.aws_region or aws.aws_default_region or "us-east-1").strip(),
            endpoint_url=endpoint.rstrip("/") or None,
            key_id=_value(aws.aws_access_key_id), secret=_value(aws.aws_secret_access_key),
            session_token=_value(aws.aws_session_token),
        )

    @property
    def root(self) -> str:
        """``bucket/prefix``: the lake's root as pyarrow's S3 file system names paths."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def uri(self, path: str) -> str:
        """The ``s3://`` URI DuckDB reads for a pyarrow path (``bucket/prefix/...``)."""
        return SCHEME + path

    def filesystem(self) -> Any:
        from pyarrow import fs  # pyarrow only where the lake is touched (README, Performance)

        # background_writes off: a multipart upload then holds one part in memory, not several
        options: dict[str, Any] = {"region": self.region, "allow_bucket_creation": False,
                                   "background_writes": False,
                                   "connect_timeout": 10, "request_timeout": 120,
                                   "retry_strategy": fs.AwsStandardS3RetryStrategy(5)}
        if self.key_id:
            options.update(access_key=self.key_id, secret_key=self.secret,
                           session_token=self.session_token)
        if self.endpoint_url:
            endpoint = urlsplit(self.endpoint_url)
            options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme,
                           force_virtual_addressing=False)
        return fs.S3FileSystem(**options)

    def secret_options(self) -> dict[str, str]:
        """The options of a DuckDB S3 secret scoped to this bucket (also dbt's, on DuckLake)."""
        options = {"region": self.region, "scope": SCHEME + self.bucket}
        if self.key_id:
            options.update(key_id=self.key_id, secret=self.secret or "")
            if self.session_token:
                options["session_token"] = self.session_token
        if self.endpoint_url:
            endpoint = urlsplit(self.endpoint_url)
            options.update(endpoint=endpoint.netloc, url_style="path",
                           use_ssl=str(endpoint.scheme == "https").lower())
        return options

    def configure_duckdb(self, con: Connection) -> None:
        """Load httpfs from its package and give ``con`` a secret scoped to this bucket."""
        engine.load_extension(con, "httpfs")
        options = ", ".join(f"{key.upper()} {value if key == 'use_ssl' else sql.literal(value)}"
                            for key, value in self.secret_options().items())
        name = "lake_" + "".join(c if c.isalnum() else "_" for c in self.bucket)
        con.execute(f"CREATE OR REPLACE SECRET {name} (TYPE s3, {options})")


_HINTS = (
    (("SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY", "ACCESS_DENIED", "AccessDenied",
      "InvalidAccessKeyId", "SignatureDoesNotMatch"),
     "the keys were refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    (("NO_SUCH_BUCKET", "NoSuchBucket"), "the bucket does not exist: create it or fix LAKE_ROOT"),
    (("onnection refused", "ouldn't connect", "ould not connect", "NETWORK_CONNECTION",
      "imed out", "Couldn't resolve"),
     "the server did not answer: check AWS_ENDPOINT_URL (or AWS_REGION) and that it runs"),
)


@contextmanager
def explained(lake: str) -> Iterator[None]:
    """Object-storage errors, with what to check; they name variables, never their values."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        text = str(error)
        hint = next((h for needles, h in _HINTS if any(n in text for n in needles)), None)
        raise ObjectStorageError(f"the lake {lake}: {text}"
                                 + (f" ({hint})" if hint else "")) from error


class Explained:
    """pyarrow's file system, its errors passed through :func:`explained`."""

    def __init__(self, inner: Any, lake: str) -> None:
        self.inner, self._lake = inner, lake

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with explained(self._lake):
                return method(*args, **kwargs)
        return call
