"""Where a batch keeps what is local to it: its folder, or for an object-store output a
folder of its own on this machine.

A local output folder holds everything: images, ledger.json, and the run's own files
(``state.db`` by default, ``run.log``, the contact sheet). An object-store output
(``s3://bucket/prefix``, ``gs://``, ``az://``) holds the images and ledger.json; the
run's own files go to ``$PIPELINE_HOME/<scheme>/<bucket>/<prefix>/`` on the machine that
runs it (``PIPELINE_HOME`` defaults to ``$XDG_STATE_HOME/pipeline``, that is
``~/.local/state/pipeline``). Runs on several hosts share a batch through ``--state
postgresql://...``, not through this folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

OBJECT_SCHEMES = frozenset({"s3", "s3a", "gs", "az", "azure", "abfs", "abfss"})
HOME_ENV = "PIPELINE_HOME"


def is_object_url(out: str) -> bool:
    """Whether ``out`` names an object store (``s3://...``) rather than a folder."""
    scheme, sep, _ = out.partition("://")
    return bool(sep) and scheme.lower() in OBJECT_SCHEMES


def local_home(out: str) -> Path:
    """The folder of the batch's local files (see the module note)."""
    if not is_object_url(out):
        return Path(out)
    parts = urlsplit(out)
    base = os.environ.get(HOME_ENV)
    if not base:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join("~", ".local", "state")
        base = os.path.join(os.path.expanduser(state), "pipeline")
    # Host and path only (a URL with credentials is refused before anything is written).
    inner = [p for p in (parts.hostname or "", *parts.path.split("/")) if p not in ("", ".", "..")]
    return Path(base, parts.scheme.lower(), *inner)
