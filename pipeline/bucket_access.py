"""A bucket the pipeline reads but does not own (a source's export), reached with boto3.

Its keys are its own, apart from the lake's (``AWS_*``), so an export bucket and an ``s3://`` lake
can live on different accounts or clouds; with none given, boto3's own chain applies (the
``AWS_*`` variables, a profile, an instance role). Errors say what to check by the names of the
variables (``variables``), never their values, and the keys stay out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# botocore's DEBUG records carry each request's Authorization header, the access key id in it:
# whatever logging a deployment configures, they are never emitted.
_CHATTY = ("botocore", "boto3", "s3transfer", "urllib3")

# A call that neither connects nor answers in this long is retried by botocore (standard mode).
CONNECT_SECONDS = 10
READ_SECONDS = 120
ATTEMPTS = 5


class BucketError(RuntimeError):
    """The bucket cannot be read at all: every object would meet it."""


@dataclass(frozen=True)
class BucketAccess:
    endpoint_url: str | None = None  # None: AWS itself (or AWS_ENDPOINT_URL, read by boto3)
    region: str = "us-east-1"
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    variables: str = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"  # how errors name the keys

    def client(self) -> Any:
        """A boto3 S3 client: path-style addressing for S3-compatible servers (SeaweedFS, MinIO,
        GCS's XML API), checksums only where S3 requires them (GCS rejects the others)."""
        import logging

        import boto3
        from botocore.config import Config

        for name in _CHATTY:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.INFO:
                logger.setLevel(logging.INFO)

        keys = ({"aws_access_key_id": self.key_id, "aws_secret_access_key": self.secret}
                if self.key_id else {})
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=Config(
                s3={"addressing_style": "path"} if self.endpoint_url else {},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=CONNECT_SECONDS, read_timeout=READ_SECONDS,
                retries={"max_attempts": ATTEMPTS, "mode": "standard"}),
            **keys)

    @contextmanager
    def explained(self, what: str) -> Iterator[None]:
        """botocore's errors about reaching the bucket, as a :class:`BucketError` naming ``what``
        and what to check."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            hint = _HINTS.get(code)
            if hint is None:
                raise
            raise BucketError(f"{what}: {code}: {hint.format(keys=self.variables)}") from None
        except NoCredentialsError:
            raise BucketError(f"{what}: no keys: set {self.variables}") from None
        except EndpointConnectionError as error:
            raise BucketError(f"{what}: the storage did not answer ({error}): check the "
                              "endpoint URL and that the server runs") from None
        except BotoCoreError as error:
            raise BucketError(f"{what}: {error}") from None


_HINTS = {
    "AccessDenied": "the keys may not read it: check {keys} and the bucket's policy",
    "InvalidAccessKeyId": "the key id is unknown there: check {keys}",
    "SignatureDoesNotMatch": "the secret does not match the key id: check {keys}",
    "NoSuchBucket": "the bucket does not exist: check the URL",
    "PermanentRedirect": "the bucket is in another region: set the region",
    "AuthorizationHeaderMalformed": "the region is wrong for this bucket: set the region",
}
