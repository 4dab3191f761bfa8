"""PostgreSQL knowledge walg needs: connection and backup start/stop, WAL names, pg_control,
page headers and checksums.

Submodules are imported explicitly (``from walg.postgres.wal import wal_file_name``) so that
importing this package stays cheap: nothing here loads psycopg2 until a connection is made.

- :mod:`walg.postgres.wal`: LSN text form, WAL segment names (pure).
- :mod:`walg.postgres.label`: parse ``backup_label`` (pure).
- :mod:`walg.postgres.control`: parse and verify ``global/pg_control`` (pure + a reader).
- :mod:`walg.postgres.pages`: page headers and page checksums (pure).
- :mod:`walg.postgres.connection`: :func:`~walg.postgres.connection.connect` and
  non-exclusive backups.
"""

from __future__ import annotations

__all__: list[str] = []
