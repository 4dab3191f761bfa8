"""What walg stores, as pure rules with no processes and no storage calls: the bucket layout
(``layout``), WAL-G's JSON documents (``meta``), page increments (``increment``), the
PGDATA walk and its parts (``scan``), and which backup of a delta chain holds each file
(``chain``). Everything above (stages, wal, backup) imports these; they import only
walg.postgres, walg.compression and walg.errors."""
