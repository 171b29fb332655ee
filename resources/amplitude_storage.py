"""Amplitude's storage export, and the organization's merged-ID files, as a Dagster resource.

The bucket's keys arrive through ``EnvVar`` only (the project's own variables, else the standard
``AWS_*`` ones); with none, boto3's own chain applies (a profile, an instance role).
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from pipeline.amplitude.bucket_reader import StorageLocation
from pipeline.amplitude.storage_export import StorageExport
from pipeline.bucket_access import BucketAccess


class AmplitudeStorageResource(dg.ConfigurableResource):
    url: str | None = Field(None, description="s3://BUCKET/PREFIX of the export (storage_url)")
    merge_ids_url: str | None = Field(None, description="s3://BUCKET/PREFIX of the merged-ID "
                                      "files (merge_ids_url, else storage_url)")
    project_id: int | None = None
    access_key_id: str | None = Field(None, repr=False, description="pass dg.EnvVar(<variable>)")
    secret_access_key: str | None = Field(None, repr=False,
                                          description="pass dg.EnvVar(<variable>)")
    key_variables: str = Field("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                               description="how errors name the keys")
    endpoint_url: str | None = None
    region: str = "us-east-1"
    markers: bool = True
    ready_after_hours: int = 3

    def access(self) -> BucketAccess:
        return BucketAccess(self.endpoint_url, self.region, self.access_key_id,
                            self.secret_access_key, self.key_variables)

    def export(self) -> StorageExport:
        if self.url is None or self.project_id is None:
            raise dg.DagsterInvariantViolationError(
                "the storage export needs storage_url and project_id")
        return StorageExport(access=self.access(), location=StorageLocation.parse(self.url),
                             project_id=self.project_id, markers=self.markers,
                             ready_after=timedelta(hours=self.ready_after_hours))

    def merge_ids_location(self) -> StorageLocation:
        url = self.merge_ids_url or self.url
        if url is None:
            raise dg.DagsterInvariantViolationError("merged ids need merge_ids_url or storage_url")
        return StorageLocation.parse(url)
