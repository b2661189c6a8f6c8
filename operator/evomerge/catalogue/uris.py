"""Model URIs: the schemes evomerge reads models from, and the shape of a URI the API server can check."""

from __future__ import annotations

SCHEMES: tuple[str, ...] = ("file", "hf", "pvc", "s3")

# One of the schemes, or a plain path (no "://" anywhere). The API server's regular expressions (RE2) have no
# lookahead, so a plain path is spelt as characters where ':' is not followed by '//'.
URI_PATTERN = rf"^(({'|'.join(SCHEMES)})://.+|([^:]|:[^/]|:/[^/])*(:|:/)?)$"
URI_FIX = f"use {', '.join(s + '://' for s in SCHEMES)} or a plain path"
