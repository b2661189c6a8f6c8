"""Model URIs: hf://org/name, file:///abs/path or a plain path, pvc://claim/sub/path, s3://bucket/key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..catalogue.uris import SCHEMES

PVC_MOUNT_ROOT_ENV = "EVOMERGE_PVC_ROOT"


class UriError(ValueError):
    """A model URI that cannot be used here."""


@dataclass(frozen=True)
class ModelUri:
    scheme: str
    location: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.location}"


def parse_uri(uri: str) -> ModelUri:
    if "://" not in uri:
        return ModelUri("file", str(Path(uri).expanduser().absolute()))
    scheme, _, rest = uri.partition("://")
    if scheme not in SCHEMES:
        raise UriError(f"{uri!r}: unknown scheme {scheme!r} — use one of {', '.join(s + '://' for s in SCHEMES)}")
    if not rest.strip("/"):
        raise UriError(f"{uri!r}: nothing after {scheme}://")
    return ModelUri(scheme, rest)


def local_path(uri: str) -> Path:
    """The directory holding a model's files on this machine.

    pvc:// paths resolve under EVOMERGE_PVC_ROOT (where the evaluation pod mounts claims, one folder per
    claim); hf:// resolves through the Hugging Face cache without touching the network (HF_HUB_OFFLINE
    semantics), because downloads belong to the prefetch step, not to merging.
    """
    parsed = parse_uri(uri)
    path = _mounted(parsed)
    if path is None and parsed.scheme == "hf":
        path = _hf_cached(parsed.location)
    elif path is None:
        raise UriError(f"{uri!r}: s3:// models are fetched by the prefetch step; point at the model cache instead")
    if not path.is_dir():
        raise UriError(f"{uri!r}: {path} is not a directory with a checkpoint — check the path")
    return path


def local_file(uri: str) -> Path:
    """A single file (a mergekit YAML, say) on this machine: a plain path, file:// or pvc:// as for models.

    Only models are fetched (by the prefetch step), so hf:// and s3:// files are refused rather than downloaded.
    """
    parsed = parse_uri(uri)
    path = _mounted(parsed)
    if path is None:
        raise UriError(
            f"{uri!r}: {parsed.scheme}:// files are not fetched — copy the file onto a volume claim "
            "(pvc://claim/path) or give a path on this machine"
        )
    if not path.is_file():
        raise UriError(f"{uri!r}: {path} is not a file — check the path")
    return path


def _mounted(parsed: ModelUri) -> Path | None:
    """Where a file:// or pvc:// location lies on this machine (claims mounted under EVOMERGE_PVC_ROOT); None
    for the remote schemes."""
    if parsed.scheme == "file":
        return Path(parsed.location if parsed.location.startswith("/") else "/" + parsed.location)
    if parsed.scheme == "pvc":
        return Path(os.environ.get(PVC_MOUNT_ROOT_ENV, "/mnt/pvc")) / parsed.location.strip("/")
    return None


def _hf_cached(repo: str) -> Path:
    repo_id, _, revision = repo.partition("@")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision or None, local_files_only=True))
    except Exception as exc:  # the hub client raises several unrelated types for "not cached"
        raise UriError(
            f"hf://{repo}: not in the local Hugging Face cache ({type(exc).__name__}) — "
            "download it first (huggingface-cli download) or use a model-cache PVC"
        ) from None
