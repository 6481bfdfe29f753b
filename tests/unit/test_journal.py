"""The local stack's journal: lines in apply order, a line cut short by a crash ignored, segments
rotated and dropped once a snapshot holds them."""

from __future__ import annotations

from pathlib import Path

from feedback_loop.local import journal as journals
from feedback_loop.local.journal import Journal


def key(n: int) -> dict:
    return {"pk": {"S": f"FB#p#r{n}"}, "sk": {"S": f"EV#e{n}"}}


def image(n: int, value: int) -> dict:
    return {**key(n), "value": {"N": str(value)}}


def test_changes_come_back_in_the_order_they_were_applied(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    positions = [journal.append("PutItem", [("t", key(1), image(1, 1))]),
                 journal.append("BatchWriteItem", [("t", key(2), image(2, 2)), ("t", key(1), image(1, 3))]),
                 journal.append("DeleteItem", [("t", key(2), None)])]
    assert positions == [1, 2, 3]
    journal.sync(3)
    journal.close()
    replayed = journals.read(tmp_path)
    assert replayed.changes == [("t", key(1), image(1, 1)), ("t", key(2), image(2, 2)), ("t", key(1), image(1, 3)),
                                ("t", key(2), None)]
    assert (replayed.lines, replayed.torn) == (3, 0)


def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("PutItem", [("t", key(1), image(1, 1))])
    journal.close()
    [segment] = journal.segments()
    whole = segment.read_bytes()
    with open(segment, "ab") as handle:  # a second line, cut mid-write
        handle.write(whole[: len(whole) // 2])
    replayed = journals.read(tmp_path)
    assert replayed.changes == [("t", key(1), image(1, 1))]
    assert (replayed.lines, replayed.torn) == (1, 1)


def test_segments_rotate_and_a_snapshot_drops_the_ones_it_holds(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("PutItem", [("t", key(1), image(1, 1))])
    after = journal.rotate()  # a snapshot starts here: it holds everything before segment `after`
    journal.append("PutItem", [("t", key(2), image(2, 2))])
    assert [journals.segment_number(p) for p in journal.segments()] == [1, 2] and after == 2
    assert journals.read(tmp_path, from_segment=after).changes == [("t", key(2), image(2, 2))]
    journal.drop_before(after)
    assert [journals.segment_number(p) for p in journal.segments()] == [2]
    journal.close()
    reopened = Journal(tmp_path)  # a restart appends to a new segment, after every existing one
    assert reopened.segment == 3
    reopened.close()


def test_sync_covers_every_line_appended_before_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    first = journal.append("PutItem", [("t", key(1), image(1, 1))])
    second = journal.append("PutItem", [("t", key(2), image(2, 2))])
    journal.sync(first)  # one fsync covers both lines
    assert journal.synced == second
    journal.sync(second)  # nothing left to do
    journal.close()
