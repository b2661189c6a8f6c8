"""Memory a caller lends to a merge: the exporter's reused buffers, passed as the `workspace` option."""

from __future__ import annotations

from typing import Protocol

import torch


class Workspace(Protocol):
    def scratch(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A flat tensor the merge may write its result or temporaries into, valid until the caller settles it."""

    def release(self, tensor: torch.Tensor) -> None:
        """The merge is done reading this input: the caller may give its memory back before the merge ends."""
