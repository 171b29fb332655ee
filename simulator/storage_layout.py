"""Where Amplitude's storage export puts things: the bucket, and the keys of every object kind
(shared/reference: amplitude-storage-export.md). ``storage_export`` writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulator.generator import utc_hour


@dataclass(frozen=True)
class S3Bucket:
    """Where the export goes: a bucket on an S3 endpoint, and the keys to write it."""

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def client(self) -> Any:
        """A boto3 S3 client for the endpoint (path-style; checksums only where required, as
        S3-compatible servers need)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )


@dataclass(frozen=True)
class StorageLayout:
    """The keys of project ``app_id`` (organization ``org_id``) under ``prefix`` ("": none).
    ``H`` is the UTC hour, not zero-padded."""

    app_id: int
    org_id: int
    prefix: str = ""

    def key(self, path: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{path}" if prefix else path

    def _stem(self, hour: datetime) -> str:
        app, hour = self.app_id, utc_hour(hour)
        return f"{app}/{app}_{hour:%Y-%m-%d}_{hour.hour}"

    def part_key(self, hour: datetime, number: int) -> str:
        """``{prefix}/{app}/{app}_{yyyy-MM-dd}_{H}#{n}.json.gz``"""
        return self.key(f"{self._stem(hour)}#{number}.json.gz")

    def marker_key(self, hour: datetime) -> str:
        """``{prefix}/{app}/{app}_{yyyy-MM-dd}_{H}_complete``"""
        return self.key(f"{self._stem(hour)}_complete")

    def merged_ids_key(self, hour: datetime) -> str:
        """``{prefix}/-{org}/-{org}_{yyyy-MM-dd}_{H}.json.gz``"""
        org, hour = self.org_id, utc_hour(hour)
        return self.key(f"-{org}/-{org}_{hour:%Y-%m-%d}_{hour.hour}.json.gz")

    def legacy_merged_ids_key(self, hour: datetime) -> str:
        """A legacy organization's merged ids, beside the parts:
        ``{prefix}/{app}/{app}_{yyyy-MM-dd}_{H}.json.gz`` (no ``#n``: not a part)."""
        return self.key(f"{self._stem(hour)}.json.gz")

    def manifest_key(self, hour: datetime) -> str:
        """The simulator's metadata file: ``{prefix}/{app}/manifest_{yyyy-MM-dd}_{H}.json``."""
        hour = utc_hour(hour)
        return self.key(f"{self.app_id}/manifest_{hour:%Y-%m-%d}_{hour.hour}.json")
