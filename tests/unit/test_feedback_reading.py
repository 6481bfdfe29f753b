"""Feedback read for the analysis: the SQL check of plainly valid lines and the reduction per request
in DuckDB give exactly what the contract's pydantic model and a fold event by event (written here,
from the definitions in scoring.py) give, line by line and request by request, on every kind of odd
line and on random events."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_loop import scoring
from feedback_loop.analysis import feedback as reading
from feedback_loop.analysis.feedback import FeedbackIndex, implicit_score, signals
from feedback_loop.models.feedback import FeedbackType
from feedback_loop.scoring import LatestPerUser

OUTPUT = "the model's answer, as it was shown"
UNTIL = datetime(2026, 5, 20, tzinfo=timezone.utc)


def in_python(index: FeedbackIndex) -> tuple[dict[str, tuple], int, dict[str, int]]:
    """Each line through the contract's model, then folded per request event by event."""
    folded: dict[str, dict[str, Any]] = {}
    for request_id, kind, value, user, at, event_id, cohort in index.checked_events():
        entry = folded.setdefault(request_id, {"events": 0, "explicit": 0, "up": 0, "down": 0, "votes": LatestPerUser(),
                                               "signals": LatestPerUser(), "all_votes": [], "cohort": None})
        entry["events"] += 1
        entry["explicit"] += kind.is_explicit
        entry["up"] += kind is FeedbackType.THUMBS_UP
        entry["down"] += kind is FeedbackType.THUMBS_DOWN
        entry["cohort"] = entry["cohort"] or cohort or None
        vote = scoring.vote_score(kind, value)
        if vote is not None:
            entry["votes"].add(user, at, event_id, vote)
            entry["all_votes"].append(vote)
        elif kind in scoring.IMPLICIT_TYPES:
            entry["signals"].add(user, at, event_id, (kind, value))
    requests = {}
    for request_id, entry in folded.items():
        human = entry["votes"].mean()
        votes = entry["all_votes"]
        contradictory = any(v >= scoring.GOOD_AT for v in votes) and any(v <= scoring.BAD_AT for v in votes)
        implicit = entry["signals"].mean(lambda item: scoring.implicit_value(item[0], item[1], OUTPUT))
        # the implicit score is read for the requests with a human score only (the labelled rows)
        requests[request_id] = (entry["events"], entry["explicit"], entry["up"], entry["down"], contradictory,
                                human.value, human.n_users, entry["cohort"],
                                implicit.value if human.value is not None else None)
    return requests, index.events, dict(index.skipped)


def in_duckdb(index: FeedbackIndex) -> tuple[dict[str, tuple], int, dict[str, int]]:
    connection = duckdb.connect()
    try:
        index.load(connection)
        rows = connection.execute("""
            SELECT request_id, events, explicit, thumbs_up, thumbs_down, contradictory, human, n_users, fb_cohort,
                   signal_kinds, signal_texts, has_human = (human IS NOT NULL)
            FROM feedback LEFT JOIN feedback_signals USING (request_id)""").fetchall()
    finally:
        connection.close()
    requests = {}
    for request_id, *figures, kinds, texts, consistent in rows:
        assert consistent
        requests[request_id] = (*figures, implicit_score(signals(kinds, texts), OUTPUT).value)
    return requests, index.events, dict(index.skipped)


def same(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) and isinstance(got, float):
        return math.isclose(expected, got, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(expected, (tuple, list)):
        return len(expected) == len(got) and all(same(a, b) for a, b in zip(expected, got))
    if isinstance(expected, dict):
        return expected.keys() == got.keys() and all(same(expected[k], got[k]) for k in expected)
    return expected == got


def read_both(lines: list[bytes], until: datetime | None = UNTIL) -> tuple[dict[str, tuple], int, dict[str, int]]:
    python, sql = FeedbackIndex(), FeedbackIndex()
    python.add_export_lines(lines, until)
    sql.add_export_lines(lines, until)
    expected, got = in_python(python), in_duckdb(sql)
    assert same(expected, got), (expected, got)
    return got


def event(request_id: Any = "r1", feedback_type: Any = "explicit_rating", value: Any = 4, **fields: Any) -> dict:
    return {"request_id": request_id, "feedback_type": feedback_type, "value": value,
            "timestamp": "2026-05-12T11:00:00Z", **fields}


def line(fields: dict, **dumps: Any) -> bytes:
    return json.dumps(fields, **dumps).encode()


ODD_LINES: list[tuple[str, bytes]] = [
    ("plain rating", line(event(user_id="u1", user_cohort="pro", event_id="e-1"))),
    ("rating 3.0 is the integer 3", line(event("r2", value=3.0))),
    ("rating 0", line(event("r3", value=0))),
    ("rating 6", line(event("r3", value=6))),
    ("rating as text", line(event("r3", value="4"))),
    ("rating true", line(event("r3", value=True))),
    ("rating too large for 64 bits", b'{"request_id":"r3","feedback_type":"explicit_rating","value":18446744073709551617,'
                                     b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("rating with exponent", b'{"request_id":"r3","feedback_type":"explicit_rating","value":4e0,'
                             b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("thumbs up", line(event("r4", "explicit_thumbs_up", True, user_id="u2"))),
    ("thumbs down by the same user, same time, later id", line(event("r4", "explicit_thumbs_down", True, user_id="u2",
                                                                     event_id="zz"))),
    ("thumbs false", line(event("r4", "explicit_thumbs_up", False))),
    ("thumbs 1", line(event("r4", "explicit_thumbs_up", 1))),
    ("thumbs 'true'", line(event("r4", "explicit_thumbs_up", "true"))),
    ("comment", line(event("r5", "explicit_text_comment", "fine, thanks"))),
    ("comment of white space", line(event("r5", "explicit_text_comment", " \u3000\u2028\t"))),
    ("comment of information separators (white space to Python)", line(event("r5", "explicit_text_comment", "\x1c\x1f"))),
    ("comment empty", line(event("r5", "explicit_text_comment", ""))),
    ("comment too long", line(event("r5", "explicit_text_comment", "x" * 10_001))),
    ("comment at the limit, escaped", line(event("r5", "explicit_text_comment", "é" * 10_000))),
    ("edit", line(event("r6", "implicit_edit", "the model's answer, edited", user_id="u3"))),
    ("edit empty", line(event("r6", "implicit_edit", "", user_id="u4"))),
    ("edit too long", line(event("r6", "implicit_edit", "y" * 50_001))),
    ("usage", line(event("r6", "implicit_usage", True, user_id="u3", timestamp="2026-05-12T10:00:00Z"))),
    ("discard", line(event("r6", "implicit_discard", True, user_id="u5"))),
    ("a vote on r6, so that its implicit signals are read", line(event("r6", value=4, user_id="v6"))),
    ("unknown type", line(event("r7", "explicit_stars", 4))),
    ("type not text", line(event("r7", 4, 4))),
    ("request_id with a slash", line(event("a/b"))),
    ("request_id with a percent", line(event("a%2F"))),
    ("request_id only dots", line(event(".."))),
    ("request_id dotted", line(event("..a."))),
    ("request_id with a newline", line(event("a\nb"))),
    ("request_id with DEL", line(event("a\x7fb"))),
    ("request_id empty", line(event(""))),
    ("request_id too long", line(event("r" * 257))),
    ("request_id at the limit, non-ASCII", line(event("é" * 256), ensure_ascii=False)),
    ("request_id a number", line(event(17))),
    ("request_id missing", line({k: v for k, v in event().items() if k != "request_id"})),
    ("request_id escaped", b'{"request_id":"\\u0072\\u0038","feedback_type":"explicit_rating","value":5,'
                           b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("user_id empty", line(event("r9", user_id=""))),
    ("user_id with a tab", line(event("r9", user_id="a\tb"))),
    ("user_id a number", line(event("r9", user_id=5))),
    ("user_id null", line(event("r9", user_id=None, user_cohort=None, event_id=None))),
    ("cohort too long", line(event("r9", user_cohort="c" * 257))),
    ("cohort first read", line(event("r10", user_cohort="free", timestamp="2026-05-12T12:00:00Z"))),
    ("cohort read second", line(event("r10", user_cohort="pro", timestamp="2026-05-12T09:00:00Z"))),
    ("timestamp with offset", line(event("r11", user_id="a", timestamp="2026-05-12T13:00:00+02:00"))),
    ("timestamp without offset", line(event("r11", user_id="b", timestamp="2026-05-12T11:00:00"))),
    ("timestamp with fraction", line(event("r11", user_id="c", timestamp="2026-05-12T11:00:00.5Z"))),
    ("timestamp with seven digits", line(event("r11", user_id="d", timestamp="2026-05-12T11:00:00.1234567Z"))),
    ("timestamp with a space", line(event("r11", user_id="e", timestamp="2026-05-12 11:00:00Z"))),
    ("timestamp lower-case z", line(event("r11", user_id="f", timestamp="2026-05-12t11:00:00z"))),
    ("timestamp hour 24", line(event("r11", timestamp="2026-05-12T24:00:00Z"))),
    ("timestamp 30 February", line(event("r11", timestamp="2026-02-30T10:00:00Z"))),
    ("timestamp a number", line(event("r11", timestamp=1778580000))),
    ("timestamp digits as text", line(event("r11", timestamp="1778580000"))),
    ("timestamp date only", line(event("r11", user_id="g", timestamp="2026-05-12"))),
    ("timestamp before 2000", line(event("r11", timestamp="1999-12-31T23:59:59Z"))),
    ("timestamp far in the future", line(event("r11", timestamp="2999-01-01T00:00:00Z"))),
    ("timestamp after the run", line(event("r11", timestamp="2026-05-21T00:00:00Z"))),
    ("timestamp just at the run", line(event("r11", user_id="h", timestamp="2026-05-20T00:00:00Z"))),
    ("timestamp offset of 22 hours", line(event("r11", user_id="i", timestamp="2026-05-12T11:00:00+22:00"))),
    ("timestamp missing", line({k: v for k, v in event("r11").items() if k != "timestamp"})),
    ("timestamp null", line(event("r11", timestamp=None))),
    ("event_id with a space", line(event("r12", event_id="a b"))),
    ("event_id too long", line(event("r12", event_id="e" * 129))),
    ("event_id at the limit", line(event("r12", user_id="x", event_id="e" * 128))),
    ("metadata", line(event("r13", metadata={"page": "search", "n": [1, 2.5]}))),
    ("metadata too deep", line(event("r13", metadata=json.loads('{"a":' * 9 + "1" + "}" * 9)))),
    ("metadata not an object", line(event("r13", metadata=[1]))),
    ("an extra field", line(event("r14", received_at="2026-05-12T11:00:01Z", extra={"x": 1}))),
    ("a key of the contract twice (the last one counts)", b'{"request_id":"r15","feedback_type":"explicit_rating",'
                                                          b'"value":1,"value":5,"timestamp":"2026-05-12T11:00:00Z"}'),
    ("a key twice, once escaped", b'{"request_id":"r15b","feedback_type":"explicit_rating","value":1,"v\\u0061lue":2,'
                                  b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("an extra key twice", b'{"request_id":"r15c","feedback_type":"explicit_rating","value":3,"x":1,"x":2,'
                           b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("NaN in an extra key", b'{"request_id":"r16","feedback_type":"explicit_rating","value":3,"x":NaN,'
                            b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("Infinity in an extra key", b'{"request_id":"r16","feedback_type":"explicit_rating","value":3,"x":-Infinity,'
                                 b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("a number beyond a double", b'{"request_id":"r16","feedback_type":"explicit_rating","value":3,"x":1e400,'
                                 b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("a small exponent", b'{"request_id":"r16","feedback_type":"explicit_rating","value":3,"x":1e-5,'
                         b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("NaN inside a string", line(event("r16", "explicit_text_comment", "NaN, Infinity, 1e400, [1,] {a,}"))),
    ("a trailing comma", b'{"request_id":"r16","feedback_type":"explicit_rating","value":3,'
                         b'"timestamp":"2026-05-12T11:00:00Z",}'),
    ("a lone surrogate", b'{"request_id":"r16","feedback_type":"explicit_text_comment","value":"\\ud800",'
                         b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("a surrogate pair", b'{"request_id":"r16","feedback_type":"explicit_text_comment","value":"\\ud83d\\ude00",'
                         b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("not UTF-8", b'{"request_id":"r16","feedback_type":"explicit_text_comment","value":"\xff",'
                  b'"timestamp":"2026-05-12T11:00:00Z"}'),
    ("a byte order mark", b'\xef\xbb\xbf' + line(event("r16"))),
    ("CRLF", line(event("r17", user_id="crlf")) + b"\r"),
    ("surrounded by spaces", b"  " + line(event("r17", user_id="sp")) + b" \t"),
    ("blank", b""),
    ("white space only", b" \t\r\x0b\x0c"),
    ("a lone file separator (white space to str, not to bytes)", b"\x1c"),
    ("not JSON", b"{not json"),
    ("two objects", line(event("r18")) + line(event("r18"))),
    ("an array", b"[1, 2]"),
    ("a string", b'"text"'),
    ("null", b"null"),
    ("no event_id: line-N decides ties", line(event("r19", user_id="t", value=1))),
    ("no event_id, same time: the later line wins", line(event("r19", user_id="t", value=5))),
    ("no user: the votes of anonymous users are one user's", line(event("r20", value=1))),
    ("no user, later", line(event("r20", value=5, timestamp="2026-05-12T11:00:01Z"))),
    ("same time and id: the first read wins", line(event("r21", user_id="q", value=2, event_id="same"))),
    ("same time and id, read second", line(event("r21", user_id="q", value=5, event_id="same"))),
]


def test_every_odd_line_is_read_as_the_contract_reads_it() -> None:
    requests, events, skipped = read_both([text for _, text in ODD_LINES])
    # and what that reading is, on a few lines that matter
    assert requests["r2"][5] == pytest.approx(0.5)  # 3.0 is the rating 3
    assert requests["r15"][5] == 1.0  # of two values, the last one (as pydantic reads JSON)
    assert requests["r15b"][5] == 0.25 and requests["r15c"][5] == 0.5
    assert requests["r19"][5] == 1.0 and requests["r20"][5] == 1.0  # the later vote of one user
    assert requests["r21"][5] == 0.25  # the first read of two equal (time, event_id)
    assert requests["r4"][:5] == (2, 2, 1, 1, True)  # thumbs up then down by u2: contradictory, counted both
    assert requests["r10"][7] == "free"
    # r6: u3's latest signal is the edit (after the usage), u4's an empty edit, u5 discarded
    assert requests["r6"][8] == pytest.approx((scoring.edit_similarity(OUTPUT, "the model's answer, edited")
                                               + scoring.edit_similarity(OUTPUT, "") + 0.0) / 3)
    assert skipped["feedback_after_run"] == 1 and skipped["feedback_missing_timestamp"] == 2
    assert skipped["feedback_invalid_json"] >= 6 and skipped["feedback_not_an_object"] == 3
    assert events + sum(skipped.values()) == len(ODD_LINES) - 2  # the two blank lines are not counted


@pytest.mark.parametrize("name,text", ODD_LINES, ids=[name for name, _ in ODD_LINES])
def test_each_odd_line_alone(name: str, text: bytes) -> None:
    """Alone, so that a line cannot hide behind another line of the same request."""
    read_both([line(event("before")), text, line(event("after"))])


def test_lines_in_chunks_and_files_number_alike(tmp_path, monkeypatch) -> None:
    """Positions and default event ids (line-N) run on across chunks; files and lines read alike."""
    monkeypatch.setattr(reading, "CHUNK_LINES", 3)
    lines = [line(event(f"r{i % 4}", user_id=f"u{i % 3}", value=1 + i % 5)) if i % 7 else b"" for i in range(40)]
    expected = read_both(lines)
    path = tmp_path / "feedback.jsonl"
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    from_file = FeedbackIndex()
    from_file.add_export_file(path, UNTIL)
    assert same(expected, in_duckdb(from_file))


def test_table_items_are_read_as_stored() -> None:
    items = [{"request_id": "r1", "feedback_type": "explicit_rating", "value": Decimal(2), "user_id": "u",
              "timestamp": "2026-05-12T11:00:00.000000Z", "event_id": "a", "received_at": "2026-05-12T11:00:01.000000Z"},
             {"request_id": "r1", "feedback_type": "explicit_thumbs_up", "value": True, "user_cohort": "pro",
              "timestamp": "2026-05-12T11:00:02.000000Z", "event_id": "b", "received_at": "2026-05-12T11:00:03.000000Z"},
             {"request_id": "r2", "feedback_type": "implicit_edit", "value": "edited", "user_id": "v",
              "timestamp": "2026-05-12T11:00:02.000000Z", "event_id": "c", "received_at": "2026-05-12T11:00:03.000000Z"}]
    python, sql = FeedbackIndex(), FeedbackIndex()
    python.add_items(items)
    sql.add_items(items)
    expected, got = in_python(python), in_duckdb(sql)
    assert same(expected, got)
    assert got[0]["r1"][5] == pytest.approx((0.25 + 1.0) / 2) and got[0]["r1"][7] == "pro" and got[1] == 3


TEXT = st.one_of(st.sampled_from(["r1", "r2", "r.3", "", "a/b", "x%", "..", "é", "\n", "NaN", " ", "\u3000"]),
                 st.text(max_size=6))
VALUE = st.one_of(st.booleans(), st.integers(-1, 7), st.sampled_from([3.0, 2.5, "4", "", " ", "edited", None]),
                  st.text(max_size=8))
STAMP = st.one_of(st.datetimes(datetime(1999, 12, 1), datetime(2026, 6, 1)).map(lambda d: d.isoformat()),
                  st.datetimes(datetime(2026, 5, 1), datetime(2026, 5, 25), timezones=st.just(timezone.utc))
                  .map(lambda d: d.isoformat().replace("+00:00", "Z")),
                  st.sampled_from([None, 17, "2026-05-12", "2026-05-12T11:00:00+05:30", "2026-05-12 11:00:00Z"]))
EVENTS = st.lists(st.fixed_dictionaries({
    "request_id": st.one_of(st.sampled_from(["r1", "r2", "r3"]), TEXT),
    "feedback_type": st.sampled_from(["explicit_thumbs_up", "explicit_thumbs_down", "explicit_rating",
                                      "explicit_text_comment", "implicit_usage", "implicit_edit", "implicit_discard",
                                      "thumbs"]),
    "value": VALUE,
}, optional={"user_id": st.one_of(st.sampled_from(["u1", "u2"]), TEXT, st.none()),
             "user_cohort": st.one_of(st.sampled_from(["free", "pro"]), TEXT, st.none()),
             "timestamp": STAMP,
             "event_id": st.one_of(st.sampled_from(["a", "b", "a b"]), st.none()),
             "metadata": st.one_of(st.none(), st.just({"k": 1})),
             "received_at": st.just("2026-05-12T11:00:00Z")}), max_size=30)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(events=EVENTS, ascii_only=st.booleans(), until=st.sampled_from([None, UNTIL, UNTIL - timedelta(days=10)]))
def test_random_events_are_read_alike(events: list[dict], ascii_only: bool, until: datetime | None) -> None:
    read_both([line(e, ensure_ascii=ascii_only) for e in events], until)
