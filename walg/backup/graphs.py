"""The stage graphs of backup-push and backup-fetch, declared as data.

push:  parts -> tar (disk readers) -> compress -> [encrypt] -> upload
fetch: objects -> download -> [decrypt] -> decompress -> extract

Every stage after the first is keyed by part, so each object's chunks stay in order on
one worker per stage; parallelism comes from several parts in flight at once.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from walg import checksum, compression
from walg.config import Settings
from walg.config.widths import PushWidths
from walg.format.chain import Selection
from walg.format.meta import FilesMetadata
from walg.format.scan import Part
from walg.pipeline import Graph, Stage, StageSpec, WorkerContext
from walg.stages.chunks import by_part
from walg.stages.codecs import Compress, Decompress, Decrypt, Encrypt
from walg.stages.download import Downloader, ObjectRef
from walg.stages.extract import Extractor
from walg.stages.tar_writer import TarWriter
from walg.stages.transform import PartTransform
from walg.stages.upload import Uploader
from walg.stages.verify import Verifier
from walg.storage import Storage

__all__ = ["Items", "fetch_graph", "largest_first", "push_graph", "verify_graph"]


class Items(Stage):
    """Source: emits the items it was given (parts to write, objects to fetch)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def open(self, ctx: WorkerContext) -> None:
        self.mine = self.items[ctx.index :: ctx.workers]

    def generate(self) -> Iterator[Any]:
        yield from self.mine


def largest_first(parts: Sequence[Part]) -> list[Part]:
    """The order in which tar workers take parts: the largest first, so that a part holding
    one big relation file does not start last and leave the other workers idle while it
    runs alone (longest-processing-time-first scheduling)."""
    return sorted(parts, key=lambda part: -sum(entry.size for entry in part.entries))


_BOUND = 4  # slots per stage input: a few 1 MiB chunks in flight per stage


def _keyed(name: str, factory: Callable[[], Stage], width: int) -> StageSpec:
    """A stage of ``width`` workers whose input is keyed by part."""
    return StageSpec(name, factory, workers=width, queue_bound=_BOUND, key=by_part)


def push_graph(
    settings: Settings,
    folder: str,
    parts: Sequence[Part],
    widths: PushWidths,
    verify_since: int | None = None,
    storage: Storage | None = None,
) -> Graph:
    """Write ``parts`` as compressed (and encrypted) tar objects under ``folder``; with
    ``verify_since``, check page checksums of pages older than that LSN on the way. A graph
    run in the calling process may upload through its ``storage`` (else each uploader
    opens its own)."""
    width = widths.parts_in_flight
    method = settings.compression.method
    checksum.prepare()  # the CRC-32C library, loaded once here, inherited by the workers
    ext = compression.extension(method)
    stages = [
        StageSpec("parts", functools.partial(Items, largest_first(parts))),
        StageSpec(
            "tar",
            functools.partial(TarWriter, ext, verify_since),
            workers=width,
            queue_bound=_BOUND,
        ),
        _keyed("compress", functools.partial(PartTransform, Compress(method)), width),
    ]
    if settings.crypto.enabled:
        stages.append(
            _keyed("encrypt", functools.partial(PartTransform, Encrypt(settings.crypto)), width)
        )
    # Each uploader process uploads one object at a time, with widths.multipart_threads
    # S3 multipart threads (each holding a part in memory): see walg.config.widths.
    per_worker = dataclasses.replace(settings.concurrency, upload=widths.multipart_threads)
    uploader_settings = dataclasses.replace(settings, concurrency=per_worker)
    upload = functools.partial(Uploader, uploader_settings, folder, storage)
    stages.append(_keyed("upload", upload, width))
    return Graph.chain(*stages)


def fetch_graph(
    settings: Settings,
    objects: Sequence[ObjectRef],
    method: str,
    encrypted: bool,
    target: str,
    tablespaces: dict[str, str],
    width: int,
    *,
    files: FilesMetadata | None = None,
    select: Selection | None = None,
) -> Graph:
    """Download ``objects``, decrypt if ``encrypted``, decompress with ``method`` and extract
    them into ``target``: the members ``select`` wants (all when None), checked against the
    backup's ``files`` metadata when it has one."""
    checksum.prepare()
    stages = [
        StageSpec("objects", functools.partial(Items, list(objects))),
        StageSpec("download", functools.partial(Downloader, settings), workers=width),
    ]
    if encrypted:
        stages.append(
            _keyed("decrypt", functools.partial(PartTransform, Decrypt(settings.crypto)), width)
        )
    stages += [
        _keyed("decompress", functools.partial(PartTransform, Decompress(method)), width),
        _keyed(
            "extract", functools.partial(Extractor, target, tablespaces, files, select), width
        ),
    ]
    return Graph.chain(*stages)


def verify_graph(
    settings: Settings,
    objects: Sequence[ObjectRef],
    method: str,
    encrypted: bool,
    width: int,
    *,
    files: FilesMetadata | None,
    page_since: int | None,
) -> Graph:
    """The fetch graph of ``objects`` with a :class:`Verifier` in place of the extractor:
    check every file against ``files`` (and page checksums of pages older than
    ``page_since``), write nothing."""
    checksum.prepare()
    stages = [
        StageSpec("objects", functools.partial(Items, list(objects))),
        StageSpec("download", functools.partial(Downloader, settings, True), workers=width),
    ]
    if encrypted:
        decrypt = functools.partial(PartTransform, Decrypt(settings.crypto), True)
        stages.append(_keyed("decrypt", decrypt, width))
    stages += [
        _keyed("decompress", functools.partial(PartTransform, Decompress(method), True), width),
        _keyed("verify", functools.partial(Verifier, files, page_since), width),
    ]
    return Graph.chain(*stages)
