"""``python -m walg``: the same as the ``wal-g`` command."""

from __future__ import annotations

from walg.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
