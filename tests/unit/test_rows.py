"""The labelled rows' texts (ids, prompts, outputs) kept in a temporary file: what goes in comes
back, by index and in order, whatever its size and characters, and after the rows are put in the
order read; every column of the rows reordered alike."""

from __future__ import annotations

import math
import random

from feedback_loop.analysis.model import Rows, Texts


def test_texts_come_back_by_index_and_in_order() -> None:
    rng = random.Random(3)
    texts: list[str | None] = [None, "", "plain", "é ü 中文 🙂", "\x00 and \n inside", "x" * (3 << 20), None]
    texts += [None if rng.random() < 0.1 else "".join(chr(rng.randrange(32, 0x2FFF))
                                                     for _ in range(rng.randrange(0, 400))) for _ in range(5_000)]
    column = Texts()
    for i, text in enumerate(texts):
        column.append(text)
        if i == 3:  # reading while appending
            assert column[3] == texts[3]
    assert len(column) == len(texts)
    assert list(column) == texts
    assert [column[i] for i in range(len(texts) - 1, -1, -1)] == texts[::-1]
    chosen = sorted(rng.sample(range(len(texts)), 700)) + [len(texts) - 1]
    assert list(column.select(chosen)) == [texts[i] for i in chosen]
    order = list(range(len(texts)))
    rng.shuffle(order)
    column.reorder(order)  # the rows put in the order read
    shuffled = [texts[i] for i in order]
    assert list(column) == shuffled and column[5] == shuffled[5] and len(column) == len(texts)
    column.append("after")
    assert list(column)[-2:] == [shuffled[-1], "after"]
    column.close()


def test_rows_reorder_every_column_alike() -> None:
    rows = Rows()
    for i in range(50):
        rows.request_id.append(f"r{i}")
        rows.at.append(float(i))
        rows.overall.append(i / 100)
        rows.human.append(i / 50)
        rows.n_users.append(i)
        rows.votes.append((0.0, i / 50) if i % 2 else None)
        rows.comments.append((f"said {i}",) if i % 3 == 0 else None)
        rows.implicit.append(math.nan if i % 3 else i / 10)
        rows.cohort.append(f"c{i % 4}")
        rows.segments.append((f"s{i}",))
        rows.prompt.append(None if i % 5 == 0 else f"p{i}")
        rows.output.append(f"o{i}")
    order = [(7 * i) % 50 for i in range(50)]
    rows.reorder(order)
    assert list(rows.request_id) == [f"r{i}" for i in order]
    assert list(rows.at) == [float(i) for i in order] and list(rows.n_users) == order
    assert list(rows.prompt) == [None if i % 5 == 0 else f"p{i}" for i in order]
    assert [s[0] for s in rows.segments] == [f"s{i}" for i in order] and rows.cohort[1] == f"c{order[1] % 4}"
    assert math.isnan(rows.implicit[1]) == bool(order[1] % 3) and rows.output[49] == f"o{order[49]}"
    assert rows.votes == [(0.0, i / 50) if i % 2 else None for i in order]
    assert rows.comments == [(f"said {i}",) if i % 3 == 0 else None for i in order]
