"""Feedback for the analysis: the events, checked against the contract, reduced per request in DuckDB.

Sources: a JSON Lines export (`--feedback FILE`, or lines), or the table's windowed index (never a
Scan). Every line is checked against the feedback event contract: the lines that are plainly valid
(every field of the contract of its JSON type and within its rules, no metadata, nothing a strict
JSON reader would refuse) are checked and typed in SQL; every other line goes through the contract's
pydantic model, as the API's own requests do, and is kept or counted as skipped by reason. Items of
the table were checked by the API when they were stored: they are taken as they are.

The checked events are the `feedback_events` relation; their reduction per request (events,
explicit votes, thumbs, the latest vote of each user, the human score, the first cohort) is the
feedback relations of analysis/queries.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError

from feedback_loop import scoring
from feedback_loop.analysis import queries
from feedback_loop.analysis.sql import literal
from feedback_loop.dal.items import item_value, parse_timestamp
from feedback_loop.models.feedback import (
    EARLIEST,
    MAX_COMMENT_CHARS,
    MAX_EDIT_CHARS,
    MAX_FUTURE_SKEW,
    REQUEST_ID_PATTERN,
    WHITE_SPACE_CHARACTERS,
    FeedbackEventIn,
    FeedbackType,
)
from feedback_loop.scoring import Score

_contract = TypeAdapter(FeedbackEventIn)
_CONTRACT_FIELDS = {"request_id", "feedback_type", "value", "user_id", "user_cohort", "timestamp", "event_id",
                    "metadata"}
# lines checked in SQL at a time (the raw text is not all held at once): two of DuckDB's row groups,
# so that both threads of a small machine work on each chunk
CHUNK_LINES = 2 * 122_880

# one checked event: (request_id, type, value, user_id, time, event_id, user_cohort)
Event = tuple[str, FeedbackType, Any, "str | None", float, str, "str | None"]


_TYPES = {feedback_type.value: feedback_type for feedback_type in FeedbackType}


def signals(kinds: list[str] | None, texts: list[str | None] | None) -> list[tuple[str, str | None]] | None:
    """Each user's latest implicit signal as (type, edited text), from feedback_signals' two lists."""
    return list(zip(kinds, texts)) if kinds else None


def implicit_score(signals: list[tuple[str, str | None]] | None, output: str | None) -> Score:
    """The implicit score of a request (scoring.implicit_score) from each user's latest implicit
    signal as (type, edited text)."""
    if not signals:
        return Score(None, 0)
    scores = [s for s in (scoring.implicit_value(_TYPES[kind], text, output) for kind, text in signals)
              if s is not None]
    return Score(sum(scores) / len(scores), len(scores)) if scores else Score(None, 0)


# --- the SQL check of plainly valid lines -------------------------------------------------------
# what a blank line may hold: bytes.strip()'s white space (str.strip() would take more, such as
# U+001C, which a line of bytes holds as a character that no JSON reader takes)
BLANK = " \t\n\r\x0b\x0c"


def _re2_class(characters: str, negated: bool = True) -> str:
    return "[" + ("^" if negated else "") + "".join(f"\\x{{{ord(c):x}}}" for c in characters) + "]"


_CONTROL = "".join(map(chr, [*range(0x20), 0x7F]))
# REQUEST_ID_PATTERN in RE2's syntax (DuckDB's regular expressions), with the same classes
_SEGMENT = _re2_class(_CONTROL + "/%")
_REQUEST_ID_RE2 = f"{_SEGMENT}*{_re2_class(_CONTROL + '/%.')}{_SEGMENT}*"
assert REQUEST_ID_PATTERN == r"^[^/%\x00-\x1f\x7f]*[^/%\x00-\x1f\x7f.][^/%\x00-\x1f\x7f]*$", "update _REQUEST_ID_RE2"
# what a strict reader refuses and DuckDB's reader takes (NaN, Infinity, trailing commas, numbers
# beyond a double: exponents of three digits or more), searched in the whole line: such lines (and
# any whose strings merely contain such text) take the contract's own path
_LENIENT = r"NaN|Infinity|,\s*[\]}]|[0-9][eE][+-]?[0-9]{3}"
# the form of timestamp checked here: ISO 8601 in UTC or with an offset under 20 hours, which
# DuckDB and pydantic read alike; every other form takes the contract's own path
_TIMESTAMP = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
              r"(Z|[+-][01][0-9]:[0-5][0-9])?")
_KEYS = ("request_id", "feedback_type", "value", "user_id", "user_cohort", "timestamp", "event_id", "metadata")
_TRUE_TYPES = (FeedbackType.THUMBS_UP, FeedbackType.THUMBS_DOWN, FeedbackType.USAGE, FeedbackType.DISCARD)


def _absent(key: str) -> str:
    return f"(y_{key} IS NULL OR y_{key} = 'NULL')"


def _label(key: str) -> str:
    """A Label: absent, or text of 1-256 characters without control characters (a line without a
    backslash has none: JSON writes them escaped)."""
    return (f"({_absent(key)} OR (y_{key} = 'VARCHAR' AND length(s_{key}) BETWEEN 1 AND 256 "
            f"AND (NOT escaped OR NOT regexp_matches(s_{key}, {literal(_re2_class(_CONTROL, negated=False))}))))")


def _check_sql(chunk: str, now: datetime) -> str:
    """Each line of `chunk` (position, number, line): blank, or plain with its typed fields. A value
    of the contract's fields is j_<key> as JSON, y_<key> its JSON type, s_<key> its text."""
    trues = ", ".join(literal(t.value) for t in _TRUE_TYPES)
    types = ", ".join(literal(t.value) for t in FeedbackType)
    value_ok = f"""CASE
        WHEN s_feedback_type IN ({trues}) THEN CASE WHEN y_value = 'BOOLEAN' THEN j_value::BOOLEAN ELSE false END
        WHEN s_feedback_type = 'explicit_rating' THEN CASE WHEN y_value IN ('BIGINT', 'UBIGINT')
                                                        THEN j_value::HUGEINT BETWEEN 1 AND 5 ELSE false END
        WHEN s_feedback_type = 'explicit_text_comment' THEN y_value = 'VARCHAR'
             AND length(s_value) BETWEEN 1 AND {MAX_COMMENT_CHARS}
             AND regexp_matches(s_value, {literal(_re2_class(WHITE_SPACE_CHARACTERS))})
        WHEN s_feedback_type = 'implicit_edit' THEN y_value = 'VARCHAR' AND length(s_value) <= {MAX_EDIT_CHARS}
        ELSE false END"""
    latest = (now + MAX_FUTURE_SKEW).astimezone(timezone.utc).isoformat()
    timestamp_ok = (f"({_absent('timestamp')} OR (y_timestamp = 'VARCHAR' "
                    f"AND regexp_full_match(s_timestamp, {literal(_TIMESTAMP)}) "
                    f"AND try_cast(s_timestamp AS TIMESTAMPTZ) BETWEEN {literal(EARLIEST.isoformat())} "
                    f"AND {literal(latest)}))")
    event_id_ok = (f"({_absent('event_id')} OR (y_event_id = 'VARCHAR' "
                   f"AND regexp_full_match(s_event_id, '[A-Za-z0-9._:\\-]{{1,128}}')))")
    paths = "[" + ", ".join(literal("/" + key) for key in _KEYS) + "]"
    keys = ", ".join(literal(key) for key in _KEYS)
    present = " + ".join(f"(j_{key} IS NOT NULL)::INTEGER" for key in _KEYS)
    values = ", ".join(f"v[{i + 1}] AS j_{key}" for i, key in enumerate(_KEYS))
    typed = ", ".join(f"json_type(j_{key}) AS y_{key}, j_{key} ->> '$' AS s_{key}" for key in _KEYS)
    return f"""
SELECT position, number, blank,
       CASE WHEN plain THEN s_request_id END AS request_id,
       CASE WHEN plain THEN s_feedback_type END AS kind,
       CASE WHEN plain THEN j_value END AS value,
       CASE WHEN plain THEN s_user_id END AS user_id,
       CASE WHEN plain THEN s_user_cohort END AS user_cohort,
       CASE WHEN plain THEN try_cast(s_timestamp AS TIMESTAMPTZ) END AS moment,
       CASE WHEN plain THEN s_event_id END AS event_id,
       plain
FROM (
    SELECT *, coalesce(NOT blank AND object AND NOT regexp_matches(line, {literal(_LENIENT)})
        -- no key of the contract twice (pydantic takes the last, DuckDB the first)
        AND len(list_filter(json_keys(CASE WHEN object THEN line END), lambda key: key IN ({keys}))) = {present}
        AND y_request_id = 'VARCHAR' AND length(s_request_id) BETWEEN 1 AND 256
        AND CASE WHEN escaped THEN regexp_full_match(s_request_id, {literal(_REQUEST_ID_RE2)})
                 ELSE NOT contains(s_request_id, '/') AND NOT contains(s_request_id, '%')
                      AND ltrim(s_request_id, '.') <> '' END
        AND y_feedback_type = 'VARCHAR' AND s_feedback_type IN ({types})
        AND {value_ok} AND {_label('user_id')} AND {_label('user_cohort')}
        AND {timestamp_ok} AND {event_id_ok} AND {_absent('metadata')}, false) AS plain
    FROM (SELECT *, {typed}
          FROM (SELECT *, {values}
                FROM (SELECT *, CASE WHEN object THEN json_extract(line, {paths}) END AS v
                      FROM (SELECT *, coalesce(regexp_full_match(line, {literal('[' + BLANK + ']*')}), false) AS blank,
                                   coalesce(json_valid(line) AND starts_with(ltrim(line, ' \t\n\r'), '{{'), false)
                                   AS object, contains(line, '\\') AS escaped
                            FROM {chunk})))))"""


EVENTS_TABLE = """CREATE TEMP TABLE feedback_events (position BIGINT, request_id VARCHAR, kind VARCHAR, vote DOUBLE,
                  free_text VARCHAR, user_id VARCHAR, event_at DOUBLE, event_id VARCHAR, user_cohort VARCHAR)"""


def _vote_sql(kind: str, value: str) -> str:
    """scoring.vote_score in SQL."""
    return (f"CASE {kind} WHEN 'explicit_thumbs_up' THEN 1.0 WHEN 'explicit_thumbs_down' THEN 0.0 "
            f"WHEN 'explicit_rating' THEN ({value}::BIGINT - 1) / 4.0 END")


@dataclass
class FeedbackIndex:
    """The feedback of one analysis: its sources, read when the analysis loads them."""

    sources: list[tuple[str, Any, datetime | None]] = field(default_factory=list)
    events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def add_export_lines(self, lines: Iterable[bytes], until: datetime | None = None) -> None:
        """JSON Lines of feedback events (the export contract: `timestamp` always present); events
        after `until` are counted as skipped."""
        self.sources.append(("lines", list(lines), until))

    def add_export_file(self, path: str | Path, until: datetime | None = None) -> None:
        self.sources.append(("file", Path(path), until))

    def add_items(self, items: Iterable[dict[str, Any]]) -> None:
        """Items of the feedback table (from FeedbackTable.feedback_in_window), stored by the API."""
        self.sources.append(("items", [_item_event(item) for item in items], None))

    # --- reading the sources -----------------------------------------------------------------------
    @staticmethod
    def _chunks(source: Any, kind: str) -> Iterator[list[str | bytes]]:
        """A source's lines in chunks of CHUNK_LINES, as iterating over the file in binary gives them,
        each decoded as it is read (one object per line held, not its bytes and its text); a line
        that is not UTF-8 stays bytes."""
        if kind == "lines":
            for start in range(0, len(source), CHUNK_LINES):
                yield [_decoded(line) for line in source[start:start + CHUNK_LINES]]
            return
        with open(source, "rb") as lines:
            while chunk := [_decoded(line) for line in islice(lines, CHUNK_LINES)]:
                yield chunk

    def checked_events(self) -> Iterator[Event]:
        """Every event, checked line by line by the contract's model alone (what `load` gives, event
        by event: the reference that tests compare it with)."""
        self.events, self.skipped = 0, Counter()
        for kind, source, until in self.sources:
            if kind == "items":
                self.events += len(source)
                yield from source
                continue
            for number, line in enumerate(line for chunk in self._chunks(source, kind) for line in chunk):
                if _blank(line):
                    continue
                event = self._event(line, number, until)
                if event is not None:
                    self.events += 1
                    yield event

    def _event(self, line: str | bytes, number: int, until: datetime | None) -> Event | None:
        """One line checked by the contract's model: the event, or None with the reason counted."""
        try:  # the common case, a line of exactly the contract, parsed and checked natively
            event = _contract.validate_json(line)
        except ValidationError:
            event = self._lenient(line)  # extra fields, or a line to count as skipped
            if event is None:
                return None
        if event.timestamp is None:
            self.skipped["feedback_missing_timestamp"] += 1
            return None
        if until is not None and event.timestamp > until:
            self.skipped["feedback_after_run"] += 1
            return None
        return (event.request_id, event.feedback_type, event.value, event.user_id, event.timestamp.timestamp(),
                event.event_id or f"line-{number}", event.user_cohort)

    def _lenient(self, line: str | bytes) -> Any | None:
        """A line that failed the strict check: kept if only fields outside the contract (such as
        received_at in a table export) were in the way, else counted by reason."""
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.skipped["feedback_invalid_json"] += 1
            return None
        if not isinstance(raw, dict):
            self.skipped["feedback_not_an_object"] += 1
            return None
        try:
            return _contract.validate_python({k: v for k, v in raw.items() if k in _CONTRACT_FIELDS})
        except ValidationError:
            self.skipped["feedback_invalid_event"] += 1
            return None

    # --- the reduction in DuckDB ------------------------------------------------------------------
    def load(self, connection: Any, now: datetime | None = None, keep_events: bool = False) -> None:
        """The checked events into `feedback_events`, reduced per request into `feedback` (request_id,
        events, explicit, thumbs_up, thumbs_down, contradictory, has_human, human, n_users, fb_cohort)
        `feedback_signals` (each user's latest implicit signal: request_id, kind, edited text) and
        `feedback_comments` (each user's latest comment)."""
        self.events, self.skipped = 0, Counter()
        now = now or datetime.now(timezone.utc)
        connection.execute("SET TimeZone = 'UTC'")  # a timestamp without an offset is UTC
        connection.execute(EVENTS_TABLE)
        position = 0
        for kind, source, until in self.sources:
            if kind == "items":
                _insert_events(connection, [(position + i, *event) for i, event in enumerate(source)])
                position += len(source)
                continue
            number = 0
            for lines in self._chunks(source, kind):
                self._load_chunk(connection, lines, position + number, number, until, now)
                number += len(lines)
            position += number
        self.events = connection.execute(queries.EVENTS_COUNT.sql).fetchone()[0]
        for relation in queries.FEEDBACK_RELATIONS:  # reduced per request, then the events dropped
            queries.create(connection, relation)
        if not keep_events:
            connection.execute(f"DROP VIEW {queries.FEEDBACK_VOTES.name}; DROP TABLE feedback_events")

    def _load_chunk(self, connection: Any, lines: list[str | bytes], position: int, number: int,
                    until: datetime | None, now: datetime) -> None:
        chunk = {"position": np.arange(position, position + len(lines), dtype=np.int64),  # noqa: F841
                 "number": np.arange(number, number + len(lines), dtype=np.int64),     # (read by DuckDB below)
                 # a line that is not text (bytes) is not plain: the contract's path says why
                 "line": np.array([line if isinstance(line, str) else None for line in lines], dtype=object)}
        connection.execute(f"CREATE OR REPLACE TEMP TABLE feedback_chunk AS {_check_sql('chunk', now)}")
        try:
            after = (f"moment > {literal(until.astimezone(timezone.utc).isoformat())}::TIMESTAMPTZ"
                     if until is not None else "false")
            for reason, count in connection.execute(f"""
                    SELECT CASE WHEN moment IS NULL THEN 'feedback_missing_timestamp' ELSE 'feedback_after_run' END,
                           count(*)
                    FROM feedback_chunk WHERE plain AND (moment IS NULL OR {after}) GROUP BY ALL""").fetchall():
                self.skipped[reason] += count
            connection.execute(f"""
                INSERT INTO feedback_events
                SELECT position, request_id, kind, {_vote_sql('kind', 'value')},
                       CASE WHEN kind IN ('implicit_edit', 'explicit_text_comment') THEN value ->> '$' END, user_id, epoch(moment),
                       coalesce(event_id, 'line-' || number), user_cohort
                FROM feedback_chunk WHERE plain AND moment IS NOT NULL AND NOT ({after})""")
            others = connection.execute("SELECT position, number FROM feedback_chunk "
                                        "WHERE NOT plain AND NOT blank ORDER BY position").fetchall()
        finally:
            connection.execute("DROP TABLE feedback_chunk")
        checked = []
        for at, line_number in others:
            event = self._event(lines[at - position], line_number, until)
            if event is not None:
                checked.append((at, *event))
        _insert_events(connection, checked)


def _blank(line: str | bytes) -> bool:
    return not (line.strip(BLANK.encode()) if isinstance(line, bytes) else line.strip(BLANK))


def _decoded(line: bytes) -> str | bytes:
    """A line as text, or as it is if it is not UTF-8."""
    try:
        return line.decode()
    except UnicodeDecodeError:
        return line


def _item_event(item: dict[str, Any]) -> Event:
    """A stored event (dal.items.feedback_from_item's fields, without a model per item)."""
    return (item["request_id"], FeedbackType(item["feedback_type"]), item_value(item), item.get("user_id"),
            parse_timestamp(item["timestamp"]).timestamp(), item["event_id"], item.get("user_cohort"))


def _insert_events(connection: Any, events: list[tuple[Any, ...]]) -> None:
    """Checked events (position first) into feedback_events."""
    if not events:
        return
    columns = list(zip(*events))
    kinds = columns[2]
    frame = {  # noqa: F841  read by DuckDB's replacement scan below
        "position": np.array(columns[0], dtype=np.int64),
        "request_id": np.array(columns[1], dtype=object),
        "kind": np.array([k.value for k in kinds], dtype=object),
        "vote": np.array([scoring.vote_score(k, v) for k, v in zip(kinds, columns[3])], dtype=float),
        "free_text": np.array([v if k in (FeedbackType.EDIT, FeedbackType.COMMENT) else None
                          for k, v in zip(kinds, columns[3])], dtype=object),
        "user_id": np.array(columns[4], dtype=object),
        "event_at": np.array(columns[5], dtype=float),
        "event_id": np.array(columns[6], dtype=object),
        "user_cohort": np.array(columns[7], dtype=object),
    }
    connection.execute("INSERT INTO feedback_events SELECT position, request_id, kind, CASE WHEN isnan(vote) "
                       "THEN NULL ELSE vote END, free_text, user_id, event_at, event_id, user_cohort FROM frame")
