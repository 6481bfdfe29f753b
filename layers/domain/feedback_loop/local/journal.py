"""The local stack's write-ahead journal: every DynamoDB write, on disk before it is answered.

One line per emulator request that changed items: `{"op": ..., "w": [[table, key, image], ...]}`,
where `image` is the whole item as it stands after the request (DynamoDB JSON) or null where the
request deleted it. Images make replay idempotent: replaying a line over a state that already holds
it changes nothing, so a snapshot taken while writes go on needs no pause, only the segment at
which its scan began.

Segments (`journal/00000001.jsonl`, ...) are appended to and fsynced with group commit: a request
appends its line under the emulator's lock, then waits outside it until an fsync covers the line.
`rotate` starts a new segment; a snapshot records the segment it began at and, once it is in
place, `drop_before` deletes the older ones. A line cut short by a crash has no newline or does
not parse: it was never answered, and replay ignores it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("feedback_loop.local.journal")
SUFFIX = ".jsonl"

# one change: (table, key in DynamoDB JSON, the item after the request or None where it was deleted)
Change = tuple[str, dict[str, Any], dict[str, Any] | None]


def segment_number(path: Path) -> int:
    return int(path.stem)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Replayed:
    """What replay found: the changes in order, and the lines it ignored (cut short by a crash)."""

    changes: list[Change] = field(default_factory=list)
    lines: int = 0
    torn: int = 0


class Journal:
    def __init__(self, folder: Path, fsync: bool = True):
        self.folder = Path(folder)
        self.fsync = fsync
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = self.segments()
        self.segment = (segment_number(existing[-1]) if existing else 0) + 1
        self._file = self._open(self.segment)
        self._appended = 0  # lines appended (and flushed to the OS) since start
        self._synced = 0  # lines known to be on disk
        self._sync_lock = threading.Lock()

    def segments(self) -> list[Path]:
        return sorted(self.folder.glob(f"*{SUFFIX}"), key=segment_number)

    def _open(self, number: int) -> Any:
        handle = open(self.folder / f"{number:08d}{SUFFIX}", "ab")
        if self.fsync:
            _fsync_folder(self.folder)  # the new file's name is durable too
        return handle

    def append(self, operation: str, changes: list[Change]) -> int:
        """Writes one line (the caller holds the emulator's lock, so lines are in apply order);
        returns the position to pass to `sync`."""
        line = json.dumps({"op": operation, "w": changes}, separators=(",", ":")).encode() + b"\n"
        self._file.write(line)
        self._file.flush()  # to the OS now; to the disk at the next fsync
        self._appended += 1
        return self._appended

    @property
    def position(self) -> int:
        return self._appended

    @property
    def synced(self) -> int:
        return self._synced

    def sync(self, position: int) -> None:
        """Returns once every line up to `position` is on disk; one fsync serves every waiting request."""
        if not self.fsync or self._synced >= position:
            return
        with self._sync_lock:
            if self._synced >= position:
                return
            target = self._appended  # lines written before this read are covered by the fsync below
            os.fsync(self._file.fileno())
            self._synced = target

    def rotate(self) -> int:
        """Closes the current segment (on disk) and starts the next; the caller holds the emulator's
        lock. Returns the new segment's number: every earlier write is in an earlier segment."""
        with self._sync_lock:
            if self.fsync:
                os.fsync(self._file.fileno())
            self._synced = self._appended
            self._file.close()
            self.segment += 1
            self._file = self._open(self.segment)
        return self.segment

    def drop_before(self, segment: int) -> None:
        for path in self.segments():
            if segment_number(path) < segment:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._sync_lock:
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()


def read(folder: Path, from_segment: int = 0) -> Replayed:
    """Every change in the segments from `from_segment` on, in the order it was applied."""
    replayed = Replayed()
    folder = Path(folder)
    if not folder.is_dir():
        return replayed
    for path in sorted(folder.glob(f"*{SUFFIX}"), key=segment_number):
        if segment_number(path) < from_segment:
            continue
        for line in _lines(path, replayed):
            replayed.changes.extend((table, key, image) for table, key, image in line["w"])
            replayed.lines += 1
    return replayed


def _lines(path: Path, replayed: Replayed) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("no newline")
                line = json.loads(raw)
            except ValueError:
                # only the last line of a segment can be cut short (appends are sequential):
                # it was never acknowledged
                replayed.torn += 1
                log.warning("journal %s: ignored a line cut short by a crash (%d bytes)", path.name, len(raw))
                continue
            yield line
