"""Base backups: their storage layout, metadata formats, and the push/fetch/list flows."""
