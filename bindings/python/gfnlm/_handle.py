"""What every handle class shares: close(), use as a context manager, `closed`."""
from __future__ import annotations


class Closeable:
    """A wrapper around a library handle (`_h`). `with X(...) as x:` closes it on exit; close() is idempotent and
    the object refuses further use once closed (InvalidArgumentError, a ValueError)."""

    _h = None
    #: What the handle is, for the error after close() ("model is closed").
    _kind = "handle"

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        """Frees the handle."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once close() has run."""
        return not self._h

    def _handle(self):
        """The live handle; InvalidArgumentError once closed."""
        if not self._h:
            from . import _lib
            raise _lib.GfnError(-1, f"{self._kind} is closed")
        return self._h
