"""Carry an exception from a worker to the parent as itself, with its traceback."""

from __future__ import annotations

import pickle
import traceback

from walg.errors import StageFailed

__all__ = ["RemoteTraceback", "pack", "unpack"]


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process; set as its ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text


def pack(exc: BaseException) -> tuple[bytes, str]:
    """Pickle ``exc`` and format its traceback. Falls back to a :class:`StageFailed`
    naming the original type when the exception does not survive a pickle round trip."""
    text = "".join(traceback.format_exception(exc))
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
    except Exception:
        substitute = StageFailed(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
        payload = pickle.dumps(substitute)
    return payload, text


def unpack(payload: bytes, text: str, where: str) -> BaseException:
    """Rebuild the exception packed by :func:`pack`, noting where it was raised."""
    try:
        exc: BaseException = pickle.loads(payload)
    except Exception as err:  # defensive: a class that pickles but no longer loads here
        exc = StageFailed(f"an exception in {where} could not be rebuilt: {err}")
    exc.__cause__ = RemoteTraceback(text)
    exc.add_note(f"(raised in {where})")
    return exc
