"""Which obstore store an output URL names, configured from the environment.

``s3://bucket/prefix`` (also ``s3a``), ``gs://bucket/prefix``, ``az://container/prefix``
(also ``azure``, ``abfs``, ``abfss``): obstore's ``from_url`` builds the store and reads
each store's standard environment (credentials, region, endpoint). The URL itself may
carry no credentials and no query: such a URL is refused without being echoed.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import obstore.store
from obstore.exceptions import BaseError

from pipeline._home import OBJECT_SCHEMES
from pipeline.errors import UsageError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

SCHEMES = OBJECT_SCHEMES
# obstore's own retries of throttled, 5xx and dropped requests, before an error reaches
# the pipeline (whose download retries then start over): a few, quickly.
RETRY: RetryConfig = {
    "max_retries": 3,
    "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=5)},
    "retry_timeout": timedelta(seconds=60),
}
_S3_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")


def open_store(url: str, *, retry_config: RetryConfig | None = None) -> tuple[ObjectStore, str]:
    """The store for ``url`` and its location for messages (the URL without a trailing
    slash). Raises ``UsageError`` for a URL that is not an object store's, or one with
    credentials or a query in it.

    An S3 endpoint from the environment that is ``http://`` (a local MinIO, say) is
    allowed: it was asked for explicitly (obstore refuses plain HTTP by default)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise UsageError("an object store output is s3://bucket/prefix, gs://... or az://...")
    if parts.username is not None or parts.password is not None or parts.query:
        raise UsageError(
            f"{scheme}:// output URLs take no credentials or query; use the environment"
        )
    location = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    options: ClientConfig = {}
    if scheme in ("s3", "s3a") and _endpoint_is_http():
        options["allow_http"] = True
    try:
        store = obstore.store.from_url(
            url, client_options=options, retry_config=retry_config or RETRY
        )
    except (BaseError, ValueError) as exc:
        raise UsageError(f"cannot open {location}: {type(exc).__name__}") from None
    return store, location


def _endpoint_is_http() -> bool:
    for name in _S3_ENDPOINT_VARS:
        value = os.environ.get(name)
        if value:
            return value.lower().startswith("http://")
    return False
