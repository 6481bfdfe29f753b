"""The pass over the eval records in DuckDB: the files are scanned, checked and joined to the
feedback per request in SQL, and every count over all records (cohorts, impact sides) is a GROUP BY;
only the requests with a human score come back to Python, as rows for the statistics.

It collects what the record-by-record pass that it replaced collected (test_engine_parity.py
compares it with that pass's results, kept as fixtures): the same reasons for skipping a record, the
same field and cohort rules, the same first-record-wins rule for a request read twice. A field is
`metadata.x`, else a top-level scalar, else metadata's field of that name, written as Python's str()
writes it; the cohort is the eval log's metadata.user_cohort, else the feedback's first, else
"unknown". Where DuckDB's JSON reader is more lenient than JSON
(NaN, Infinity, trailing commas), the lines that may hold such a token are checked again with
orjson; a file that DuckDB cannot read at all (a bad line, a broken gzip) is read line by line in
Python, as before, and handed to DuckDB as the lines that parsed. One difference is left: a number
beyond a double (1e400, which no JSON encoder writes) is read as infinity here (an overall score so
written is out of range) where the line-by-line reader skips the line as invalid JSON.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import duckdb
import orjson

from feedback_loop.analysis.model import UNKNOWN, ChangeSides, Pass, Side
from feedback_loop.analysis.evallogs import PARQUET_SUFFIXES, EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex, implicit_score
from feedback_loop.analysis.sql import identifier, literal

# Lines that DuckDB reads but JSON (and orjson) refuses hold NaN, Infinity or a trailing comma; such
# lines (and any others that match, inside strings) are checked again with orjson. (DuckDB also reads
# a number beyond a double, as infinity: an overall score so written is out of range, not invalid.)
TRAILING_COMMA = r",\s*[\]}]"
NUMBER = ("BIGINT", "UBIGINT", "DOUBLE")
LABELLED_BITS_MAX = 1 << 25  # the bitmap of labelled requests: at most 4 MB


TOP = ("request_id", "timestamp", "eval_scores", "metadata")  # the top-level fields every record is read for


def _pointer(*keys: str) -> str:
    """A JSON Pointer to a key (RFC 6901: '~' and '/' escaped), as a SQL literal."""
    return literal("".join("/" + key.replace("~", "~0").replace("/", "~1") for key in keys))


def _as_text(kind: str, text: str) -> str:
    """A JSON scalar as Python's str() writes it (True, 3, 0.5, 1e+16), from its JSON type and its
    text as json_extract_string gives it; NULL for null and containers."""
    return (f"CASE {kind} WHEN 'VARCHAR' THEN {text} "
            f"WHEN 'BOOLEAN' THEN CASE WHEN {text} = 'true' THEN 'True' ELSE 'False' END "
            f"WHEN 'BIGINT' THEN {text}::BIGINT::VARCHAR WHEN 'UBIGINT' THEN {text}::UBIGINT::VARCHAR "
            f"WHEN 'DOUBLE' THEN {text}::DOUBLE::VARCHAR END")


def _fields(settings_fields: tuple[str, ...], sides: list[ChangeSides]) -> list[str]:
    """Every eval-log field the pass reads: segment fields, change segments and A/B arms."""
    names = [f for f in settings_fields if f != "user_cohort"]
    for change_sides in sides:
        names += [key for key, _ in change_sides.segment]
        if change_sides.change.variant_field:
            names.append(change_sides.change.variant_field)
    return list(dict.fromkeys(names))


def _select(source: str, columns: dict[str, str], prompt: str = "json_extract(j, '/prompt')",
            output: str = "json_extract(j, '/output')") -> str:
    """The typed columns of every record of `source` (a relation with a JSON column j), in the order
    read; $1 is the bitmap of labelled requests (Scanner.labelled_bits). Each line is parsed twice:
    once for the JSON types of every value the pass reads, once for their texts; `prompt` and
    `output` (JSON) are computed only for labelled requests."""
    pointers: dict[str, int] = {}

    def slot(*keys: str) -> tuple[str, str]:
        """The JSON type and the text of the value at keys."""
        index = pointers.setdefault(_pointer(*keys), len(pointers) + 1)
        return f"y[{index}]", f"s[{index}]"

    root, request_id, timestamp = slot(), slot("request_id"), slot("timestamp")
    overall, metadata = slot("eval_scores", "overall"), slot("metadata")
    in_metadata = f"{metadata[0]} = 'OBJECT'"  # a metadata that is not an object has no fields

    def field_value(name: str) -> str:
        """`metadata.x`, else a top-level scalar, else metadata's field of that name."""
        if name.startswith("metadata."):
            return f"CASE WHEN {in_metadata} THEN {_as_text(*slot('metadata', name.removeprefix('metadata.')))} END"
        top = slot(name)
        return (f"CASE WHEN coalesce({top[0]} NOT IN ('OBJECT', 'ARRAY'), false) THEN {_as_text(*top)} "
                f"WHEN {in_metadata} THEN {_as_text(*slot('metadata', name))} END")

    cohort = field_value("metadata.user_cohort")
    fields = "".join(f"{field_value(name)} AS {column}, " for name, column in columns.items())
    paths = "[" + ", ".join(pointers) + "]"
    return f"""
SELECT
    CASE WHEN {request_id[0]} = 'VARCHAR' THEN {request_id[1]} END AS request_id,
    CASE WHEN {timestamp[0]} = 'VARCHAR' THEN epoch(try_cast({timestamp[1]} AS TIMESTAMPTZ)) END AS moment,
    CASE WHEN {overall[0]} IN {NUMBER} THEN {overall[1]}::DOUBLE END AS overall,
    {root[0]} = 'OBJECT' AS is_object,
    {cohort} AS cohort_field,
    {fields}
    suspect,
    -- texts only where they are needed: lines to check again, and the labelled requests' datasets
    CASE WHEN suspect THEN j::VARCHAR END AS text,
    CASE WHEN labelled THEN {prompt} END AS prompt,
    CASE WHEN labelled THEN {output} END AS output
FROM (SELECT *, get_bit($1::BIT, (hash({request_id[1]}) % {LABELLED_BITS_MAX}::UBIGINT % length($1::BIT))::INTEGER) = 1
                AS labelled,
             (contains(j::VARCHAR, 'NaN') OR contains(j::VARCHAR, 'Infinity')
              OR regexp_matches(j::VARCHAR, {literal(TRAILING_COMMA)})) AS suspect
      FROM (SELECT *, json_type(j, {paths}) AS y, json_extract_string(j, {paths}) AS s FROM {source}))"""


def default_memory_limit() -> str | None:
    """In Lambda, half the function's memory (the rest is Python's: the feedback and the rows);
    elsewhere DuckDB's own default (80% of the machine's)."""
    size = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return f"{int(size) // 2}MB" if size and size.isdigit() else None


class Scanner:
    """One DuckDB connection for one pass."""

    def __init__(self, feedback: FeedbackIndex, columns: dict[str, str], threads: int | None = None,
                 memory_limit: str | None = None):
        # where DuckDB spills past its limit: a folder of its own under the temporary folder (in
        # Lambda only /tmp is writable), removed by close()
        self.spill = tempfile.mkdtemp(prefix="feedback-loop-duckdb-")
        config: dict[str, Any] = {"preserve_insertion_order": True,  # a record's rowid: the order read
                                  "temp_directory": self.spill}
        if threads:
            config["threads"] = threads
        memory_limit = memory_limit or default_memory_limit()
        if memory_limit:
            config["memory_limit"] = memory_limit
        self.connection = duckdb.connect(config=config)
        self.connection.execute("SET TimeZone = 'UTC'")
        self.columns = columns
        self.feedback = feedback
        self._load_feedback()
        self.labelled_bits = self._labelled_bits()
        field_columns = "".join(f", {column} VARCHAR" for column in columns.values())
        self.connection.execute(f"""
            CREATE TEMP TABLE records (request_id VARCHAR, moment DOUBLE, overall DOUBLE,
                                       is_object BOOLEAN, cohort_field VARCHAR{field_columns}, suspect BOOLEAN,
                                       text VARCHAR, prompt JSON, output JSON)""")

    def close(self) -> None:
        self.connection.close()
        shutil.rmtree(self.spill, ignore_errors=True)

    def _load_feedback(self) -> None:
        self.feedback.load(self.connection)

    def _labelled_bits(self) -> str:
        """A bitmap of the requests with a human score, by hash, as a string of 0s and 1s: the records
        whose bit is set keep their prompt and output (all labelled ones, and a few others). A
        constant, where a join with the feedback would not keep the records' order."""
        labelled = self.connection.execute("SELECT count(*) FROM feedback WHERE has_human").fetchone()[0]
        size = min(LABELLED_BITS_MAX, 1 << max(10, (64 * labelled).bit_length()))  # about 1 in 64 set
        bits = self.connection.execute(f"""
            SELECT bitstring_agg(hash(request_id) % {LABELLED_BITS_MAX}::UBIGINT % {size}, 0, {size - 1})::VARCHAR
            FROM feedback WHERE has_human""").fetchone()[0]
        return bits or "0" * size

    def _add(self, rows: str, **texts: str) -> None:
        """Records typed into `records` in the order read: with insertion order preserved and no join
        in the statement, a record's rowid is its position (files in the order given, lines in order)."""
        self.connection.execute(f"INSERT INTO records {_select(f'({rows})', self.columns, **texts)}",
                                [self.labelled_bits])

    def add_json_files(self, names: list[str]) -> None:
        listed = "[" + ", ".join(literal(name) for name in names) + "]"
        self._add(f"SELECT json AS j FROM read_json_objects({listed}, format = 'newline_delimited', "
                  "hive_partitioning = false)")

    def parquet_schema(self, name: str) -> tuple[tuple[str, str], ...] | None:
        """A local Parquet file's columns and their types (None if DuckDB cannot read it)."""
        try:
            return tuple((row[0], row[1]) for row in self.connection.execute(
                f"DESCRIBE SELECT * FROM read_parquet({literal(name)}, hive_partitioning = false)").fetchall())
        except duckdb.Error:
            return None

    def add_parquet_files(self, names: list[str], schema: tuple[tuple[str, str], ...] | None = None) -> None:
        """Parquet files' rows (the files of one schema, read from the first file if not given), each
        as the JSON object of the columns the pass reads (a row's prompt and output, most of its
        bytes, are turned into JSON only for labelled requests)."""
        listed = "[" + ", ".join(literal(name) for name in names) + "]"
        scan = f"read_parquet({listed}, hive_partitioning = false)"
        present = [column for column, _ in schema or self.parquet_schema(names[0]) or ()]
        read = [n for n in dict.fromkeys([*TOP, *(c for c in self.columns if not c.startswith("metadata."))])
                if n in present]
        packed = ("to_json(struct_pack(" + ", ".join(f"{identifier(n)} := p.{identifier(n)}" for n in read) + "))"
                  if read else "'{}'::JSON")
        texts = {key: f"to_json(p_{key})" for key in ("prompt", "output")}
        self._add(f"SELECT {packed} AS j, " + ", ".join(
            f"{f'p.{identifier(key)}' if key in present else 'NULL'} AS p_{key}" for key in texts)
            + f" FROM {scan} AS p", **texts)

    def add_lines(self, lines: list[bytes]) -> None:
        """Records that Python parsed (from a file DuckDB could not read), in their order."""
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
            handle.write(b"".join(line.rstrip(b"\r\n") + b"\n" for line in lines))
        try:
            if lines:
                self.add_json_files([handle.name])
        finally:
            os.unlink(handle.name)


def _python_lines(source: EvalLogSource, name: str, skipped: Counter[str]) -> list[bytes]:
    """A file's valid records as JSON lines, read as the Python reader reads them (reasons counted)."""
    return [orjson.dumps(row, default=str) for row in source.rows(name, skipped)]


def _load(scanner: Scanner, source: EvalLogSource, files: list[str], skipped: Counter[str],
          progress: Callable[[int, int, str], None] | None, run_size: int = 4) -> None:
    """Every file into the records table, in order: local files in runs read in parallel (JSON Lines
    files; Parquet files of the same schema), the others one by one; a run with a file that DuckDB
    refuses is read file by file, and such a file by Python."""
    runs: list[tuple[Any, list[str]]] = []  # (what a run's files share, the files)
    for name in files:
        kind: Any = None if source.is_s3 else scanner.parquet_schema(name) if name.endswith(PARQUET_SUFFIXES) \
            else "json"
        if kind is not None and runs and runs[-1][0] == kind and len(runs[-1][1]) < run_size:
            runs[-1][1].append(name)
        else:
            runs.append((kind, [name]))
    done = 0
    for kind, run in runs:
        if len(run) > 1:
            try:  # a statement is atomic: if a file of the run is not clean, nothing of it was added
                if kind == "json":
                    scanner.add_json_files(run)
                else:
                    scanner.add_parquet_files(run, kind)
                done += len(run)
                if progress:
                    progress(done, len(files), run[-1])
                continue
            except duckdb.Error:
                pass
        for name in run:
            done += 1
            if progress:
                progress(done, len(files), name)
            _load_file(scanner, source, name, skipped)


def _load_file(scanner: Scanner, source: EvalLogSource, name: str, skipped: Counter[str]) -> None:
    try:
        with source.local_copy(name) as path:
            if name.endswith(PARQUET_SUFFIXES):
                scanner.add_parquet_files([path])
            else:
                scanner.add_json_files([path])
        return
    except duckdb.Error:  # nothing of the file was added (a statement is atomic): Python reads it,
        pass              # counting what it skips
    scanner.add_lines(_python_lines(source, name, skipped))


def scan_files(source: EvalLogSource, feedback: FeedbackIndex, sides: list[ChangeSides], read_since: float,
               until: float, window: tuple[float, float], fields: tuple[str, ...], skipped: Counter[str],
               progress: Callable[[int, int, str], None] | None = None, threads: int | None = None,
               memory_limit: str | None = None) -> Pass:
    """The pass over the files of `source` from read_since to until: the counts over all records,
    the impact sides filled in, and the rows of the requests with a human score in `window`."""
    names = _fields(fields, sides)
    columns = {name: f"f{i}" for i, name in enumerate(names)}
    scanner = Scanner(feedback, columns, threads, memory_limit)
    try:
        return _collect(scanner, source, sides, read_since, until, window, fields, skipped, progress)
    finally:
        scanner.close()


def _collect(scanner: Scanner, source: EvalLogSource, sides: list[ChangeSides],
             read_since: float, until: float, window: tuple[float, float], fields: tuple[str, ...],
             skipped: Counter[str], progress: Callable[[int, int, str], None] | None) -> Pass:
    connection = scanner.connection
    files = source.files(datetime.fromtimestamp(read_since, timezone.utc),
                         datetime.fromtimestamp(until, timezone.utc))
    _load(scanner, source, files, skipped, progress)
    _recheck_lenient(connection, skipped)

    # each record's problem, in the reader's order of checks; then the first record of a request
    # with feedback wins
    connection.execute(f"""
        CREATE TEMP VIEW checked AS  -- a view: the records are not copied again
        SELECT rowid AS position, *,
               CASE WHEN NOT is_object THEN 'not_an_object'
                    WHEN request_id IS NULL OR request_id = '' THEN 'missing_request_id'
                    WHEN moment IS NULL THEN 'bad_timestamp'
                    WHEN overall IS NULL THEN 'missing_overall_score'
                    WHEN isnan(overall) OR overall < 0 OR overall > 1 THEN 'overall_score_out_of_range'
                    WHEN moment < {read_since!r} OR moment >= {until!r} THEN 'outside_window'
               END AS problem
        FROM records""")
    for reason, count in connection.execute(
            "SELECT problem, count(*) FROM checked WHERE problem IS NOT NULL GROUP BY problem").fetchall():
        skipped[reason] += count
    # the requests with feedback that a record matched, with the position of their first record: the
    # records are joined to it (a view, not a copy of them), later records of such a request skipped
    connection.execute("""
        CREATE TEMP TABLE matched AS
        SELECT f.*, firsts.first, firsts.records
        FROM feedback f JOIN (SELECT request_id, min(position) AS first, count(*) AS records FROM checked
                              WHERE problem IS NULL AND request_id IN (SELECT request_id FROM feedback)
                              GROUP BY request_id) firsts USING (request_id)""")
    connection.execute("""
        CREATE TEMP VIEW kept AS
        SELECT c.*, f.request_id IS NOT NULL AS has_feedback, f.explicit > 0 AS explicit, f.contradictory,
               f.has_human, f.fb_cohort, f.human, f.n_users, f.thumbs_up, f.thumbs_down
        FROM checked c LEFT JOIN matched f USING (request_id)
        WHERE c.problem IS NULL AND (f.first IS NULL OR c.position = f.first)""")
    duplicates = connection.execute("SELECT coalesce(sum(records - 1), 0) FROM matched").fetchone()[0]
    if duplicates:
        skipped["duplicate_request_id"] += int(duplicates)

    result = Pass()
    result.read = connection.execute("SELECT count(*) FROM checked WHERE problem IS NULL").fetchone()[0]
    orphans = "SELECT count(*), sum(events) FROM feedback WHERE request_id NOT IN (SELECT request_id FROM matched)"
    result.orphan_requests, orphan_events = connection.execute(orphans).fetchone()
    result.orphan_events = int(orphan_events or 0)
    cohort = f"coalesce(nullif(cohort_field, ''), nullif(fb_cohort, ''), {literal(UNKNOWN)})"
    in_window = f"moment >= {window[0]!r} AND moment < {window[1]!r}"
    for name, requests, with_feedback, explicit, contradictory in connection.execute(f"""
            SELECT {cohort} AS cohort, count(*), count(*) FILTER (has_feedback), count(*) FILTER (explicit),
                   count(*) FILTER (contradictory)
            FROM kept WHERE {in_window} GROUP BY cohort ORDER BY cohort""").fetchall():
        result.in_window += requests
        result.requests_with_feedback += with_feedback
        result.cohort_requests[name] = requests
        if explicit:
            result.cohort_feedback[name] = explicit
        if contradictory:
            result.cohort_contradictory[name] = contradictory

    _fill_sides(connection, sides, scanner.columns)
    _rows(connection, result, cohort, in_window, fields, scanner.columns)
    return result


def _recheck_lenient(connection: duckdb.DuckDBPyConnection, skipped: Counter[str]) -> None:
    """Lines DuckDB took that may not be JSON are parsed again with orjson; those that fail are
    invalid_json, as the line-by-line reader counts them."""
    suspects = connection.execute("SELECT rowid, text FROM records WHERE suspect").fetchall()
    invalid = []
    for position, text in suspects:
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            invalid.append(position)
    if invalid:
        skipped["invalid_json"] += len(invalid)
        connection.execute(f"DELETE FROM records WHERE rowid IN ({', '.join(map(str, invalid))})")


def _side_sql(change_sides: ChangeSides, columns: dict[str, str]) -> str:
    """'c' (control), 't' (treatment) or NULL per record: in the change's time range and segment,
    the arm of an A/B change, else before or after a before/after change's effective time."""
    change = change_sides.change
    conditions = [f"moment >= {change_sides.low!r}", f"moment < {change_sides.high!r}"]
    conditions += [f"{columns[key]} IS NOT DISTINCT FROM {literal(expected)}"
                   for key, expected in change_sides.segment]
    if change.variant_field:
        arm = columns[change.variant_field]
        side = (f"CASE WHEN {arm} = {literal(change.control)} THEN 'c' "
                f"WHEN {arm} = {literal(change.treatment)} THEN 't' END")
    else:
        side = f"CASE WHEN moment < {change_sides.effective!r} THEN 'c' ELSE 't' END"
    return f"CASE WHEN {' AND '.join(conditions)} THEN {side} END"


# A sum of doubles in parallel depends on the order the threads meet the values: summed as fixed-point
# decimals (28 places, each value converted alone), the same records give the same figure every run,
# whatever the order of the files or the threads.
EXACT = "DECIMAL(38, 28)"


def _fill_sides(connection: duckdb.DuckDBPyConnection, sides: list[ChangeSides], columns: dict[str, str]) -> None:
    for change_sides in sides:
        rows = connection.execute(f"""
            SELECT side, count(*), count(*) FILTER (explicit), sum(overall::{EXACT})::DOUBLE,
                   sum((overall * overall)::{EXACT})::DOUBLE,
                   min(moment), max(moment), coalesce(sum(thumbs_up), 0), coalesce(sum(thumbs_up + thumbs_down), 0),
                   list(human ORDER BY position) FILTER (has_human)
            FROM (SELECT *, {_side_sql(change_sides, columns)} AS side FROM kept)
            WHERE side IS NOT NULL GROUP BY side""").fetchall()
        for side_name, requests, with_feedback, total, squares, first, last, thumbs_up, thumbs, human in rows:
            side: Side = change_sides.control if side_name == "c" else change_sides.treatment
            side.requests = side.overall_n = requests
            side.with_feedback = with_feedback
            side.overall_sum, side.overall_sq = float(total), float(squares)
            side.first, side.last = first, last
            side.thumbs_up, side.thumbs = int(thumbs_up), int(thumbs)
            side.human = list(human or [])


def _rows(connection: duckdb.DuckDBPyConnection, result: Pass, cohort: str, in_window: str,
          fields: tuple[str, ...], columns: dict[str, str]) -> None:
    segment_columns = [("cohort" if f == "user_cohort" else f"coalesce(nullif({columns[f]}, ''), {literal(UNKNOWN)})")
                       for f in fields]
    selected = ", ".join(segment_columns) if segment_columns else "NULL"
    cursor = connection.execute(f"""
        SELECT request_id, moment, overall, prompt, output, human, n_users, cohort, signals, {selected}
        FROM (SELECT *, {cohort} AS cohort FROM kept WHERE {in_window} AND has_human)
             LEFT JOIN feedback_signals USING (request_id)
        ORDER BY position""")
    rows = result.rows
    same = {}  # one str object per distinct cohort and segment value, not one per row
    while batch := cursor.fetchmany(10_000):
        for request_id, moment, overall, prompt, output, human, n_users, cohort_name, signals, *segments in batch:
            edited = signals and any(kind == "implicit_edit" for kind, _ in signals)
            text = orjson.loads(output) if edited and output is not None else None
            rows.request_id.append(request_id)
            rows.at.append(moment)
            rows.overall.append(overall)
            rows.human.append(human)
            rows.n_users.append(n_users)
            rows.cohort.append(same.setdefault(cohort_name, cohort_name))
            rows.segments.append(tuple(same.setdefault(v, v) for v in segments[:len(fields)]))
            rows.implicit.append(implicit_score(signals, text if isinstance(text, str) else None).value)
            rows.prompt.append(prompt)
            rows.output.append(output)
