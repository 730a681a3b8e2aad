"""A source or a target named by a string: a local folder or s3://bucket/prefix. The one place that picks an
implementation by URL, above both (S3 imports the local modules' types, so they cannot import it back)."""

from __future__ import annotations

import os

from servicelogs.errors import UsageError
from servicelogs.sources import LocalSource, Source
from servicelogs.storage import LocalStore, Store


def open_source(location: str, endpoint_url: str | None = None) -> Source:
    if location.startswith("s3://"):
        from servicelogs.s3 import S3Source

        return S3Source(location, endpoint_url)
    if "://" in location:
        raise UsageError(f"source {location!r}: only local folders and s3:// are supported")
    return LocalSource(location)


def open_store(location: str | os.PathLike[str], endpoint_url: str | None = None) -> Store:
    """A folder or s3://bucket/prefix; `endpoint_url` is the S3 endpoint (default: AWS's)."""
    location = os.fspath(location)
    if location.startswith("s3://"):
        from servicelogs.s3 import S3Store

        return S3Store.from_url(location, endpoint_url)
    if "://" in location:
        raise UsageError(f"target {location!r}: only local folders and s3:// are supported")
    return LocalStore(location)
