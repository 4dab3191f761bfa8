"""WAL archiving: pushing WAL files to storage (``wal-g wal-push``) and fetching them back.

- :mod:`walg.wal.names`: object keys of WAL files and which names are which (pure).
- :mod:`walg.wal.markers`: PostgreSQL's ``archive_status/*.ready`` files and walg's own
  "uploaded ahead" markers in ``pg_wal/walg_data/walg_archive_status``.
- :mod:`walg.wal.push`: ``push_wal``, one archive_command call, with background uploads.

Submodules are imported explicitly: importing this package loads nothing.
"""
