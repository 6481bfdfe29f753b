"""The pass over the eval records in DuckDB, the embedded engine: the files are scanned into the
`records` relation, typed; the checks, the join to the feedback per request and every count over
all records (cohorts, impact sides) are the queries of analysis/queries.py, run here as written;
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

import math
import os
import shutil
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import duckdb
import numpy as np
import orjson

from feedback_loop.analysis.model import ChangeSides, CohortPart, Pass, Side
from feedback_loop.analysis.evallogs import PARQUET_SUFFIXES, EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex, implicit_score, signals
from feedback_loop.analysis import queries
from feedback_loop.analysis.sql import identifier, literal
from feedback_loop.calibration.curves import CalibrationMap

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


# Outside Lambda, what DuckDB may hold before it spills to its temporary folder (its own default,
# 80% of the machine, let 10M records take 5.3 GB; with this, 1.2 GB, and the 1M time is unchanged)
DEFAULT_MEMORY_LIMIT = "512MB"


def default_memory_limit() -> str:
    """In Lambda, half the function's memory (the rest is Python's: the feedback chunks, the rows);
    elsewhere DEFAULT_MEMORY_LIMIT."""
    size = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return f"{int(size) // 2}MB" if size and size.isdigit() else DEFAULT_MEMORY_LIMIT


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
        config["memory_limit"] = memory_limit or default_memory_limit()
        self.connection = duckdb.connect(config=config)
        self.connection.execute("SET TimeZone = 'UTC'")
        self.columns = columns
        self.feedback = feedback
        self.labelled_bits = ""
        self.relations: dict[str, queries.Relation] = {}  # what queries.relations may create
        self.created: set[str] = set()

    def prepare(self, keep_events: bool = False) -> None:
        """The feedback read and reduced (its events kept if asked), the bitmap of labelled requests
        made, the records table made."""
        self.feedback.load(self.connection, keep_events=keep_events)
        self.created.update(relation.name for relation in queries.FEEDBACK_RELATIONS)
        self.labelled_bits = self._labelled_bits()
        field_columns = "".join(f", {column} VARCHAR" for column in self.columns.values())
        self.connection.execute(f"""
            CREATE TEMP TABLE records_read (request_id VARCHAR, moment DOUBLE, overall DOUBLE,
                                            is_object BOOLEAN, cohort_field VARCHAR{field_columns}, suspect BOOLEAN,
                                            text VARCHAR, prompt JSON, output JSON)""")
        # the base relation of the queries: a record's position is its rowid (the order read)
        # (a line that is not JSON is counted as invalid_json as it is read, and not kept)
        self.connection.execute("CREATE TEMP VIEW records AS SELECT rowid AS position, true AS is_json, * "
                                "FROM records_read")

    def run(self, query: queries.Query) -> list[tuple[Any, ...]]:
        """A result of analysis/queries.py, the relations it reads created first (once each)."""
        return self.cursor(query).fetchall()

    def cursor(self, query: queries.Query) -> duckdb.DuckDBPyConnection:
        for relation in queries.relations(query, self.relations):
            if relation.name not in self.created:
                queries.create(self.connection, relation)
                self.created.add(relation.name)
        return self.connection.execute(query.sql)

    def batches(self, query: queries.Query, size: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        """A result in batches of rows (the labelled rows: not all held twice)."""
        cursor = self.cursor(query)
        while batch := cursor.fetchmany(size):
            yield batch

    def close(self) -> None:
        self.connection.close()
        shutil.rmtree(self.spill, ignore_errors=True)

    def _labelled_bits(self) -> str:
        """A bitmap of the requests with a human score, by hash, as a string of 0s and 1s: the records
        whose bit is set keep their prompt and output (all labelled ones, and a few others). A
        constant, where a join with the feedback would not keep the records' order."""
        labelled = self.connection.execute(queries.LABELLED_COUNT.sql).fetchone()[0]
        size = min(LABELLED_BITS_MAX, 1 << max(10, (64 * labelled).bit_length()))  # about 1 in 64 set
        bits = self.connection.execute(f"""
            SELECT bitstring_agg(hash(request_id) % {LABELLED_BITS_MAX}::UBIGINT % {size}, 0, {size - 1})::VARCHAR
            FROM feedback WHERE has_human""").fetchone()[0]
        return bits or "0" * size

    def _add(self, rows: str, **texts: str) -> None:
        """Records typed into `records_read` in the order read: with insertion order preserved and no join
        in the statement, a record's rowid is its position (files in the order given, lines in order)."""
        self.connection.execute(f"INSERT INTO records_read {_select(f'({rows})', self.columns, **texts)}",
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
    """A file's valid records as JSON lines, read as the Python reader reads them (reasons counted;
    a record nested past what orjson writes, 255 levels, is skipped as too_deeply_nested)."""
    lines = []
    for row in source.rows(name, skipped):
        try:
            lines.append(orjson.dumps(row, default=str))
        except orjson.JSONEncodeError:
            skipped["too_deeply_nested"] += 1
    return lines


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
            except duckdb.OutOfMemoryException:
                raise
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
    except duckdb.OutOfMemoryException:  # not the file's fault: the pass stops (scan_files says why)
        raise
    except duckdb.Error:  # nothing of the file was added (a statement is atomic): Python reads it,
        pass              # counting what it skips
    scanner.add_lines(_python_lines(source, name, skipped))


def scan_files(source: EvalLogSource, feedback: FeedbackIndex, sides: list[ChangeSides], read_since: float,
               until: float, window: tuple[float, float], fields: tuple[str, ...], skipped: Counter[str],
               progress: Callable[[int, int, str], None] | None = None, threads: int | None = None,
               memory_limit: str | None = None, threshold: float = 0.7, minimum: int = 30,
               calibration_map: CalibrationMap | None = None) -> Pass:
    """The pass over the files of `source` from read_since to until: the counts over all records,
    the impact sides filled in, and the rows of the requests with a human score in `window`
    (`threshold`: the evaluator's verdict; `minimum`: the labelled requests of a segment; with
    `calibration_map`, the calibrated score's sums per cohort too)."""
    columns = queries.columns(fields, sides)
    memory_limit = memory_limit or default_memory_limit()
    scanner = Scanner(feedback, columns, threads, memory_limit)
    try:
        scanner.prepare()
        load_records(scanner, source, read_since, until, skipped, progress)
        return collect(scanner, queries.pass_queries(window, fields, scanner.columns, sides, threshold, minimum,
                                                     calibration_map), sides, skipped)
    except duckdb.OutOfMemoryException as error:
        raise MemoryError(f"the analysis needs more than DuckDB's memory limit of {memory_limit} (and its "
                          f"temporary folder {tempfile.gettempdir()}): raise --memory-limit, or AnalysisMemorySize "
                          f"in AWS ({str(error).splitlines()[0]})") from error
    finally:
        scanner.close()


def load_records(scanner: Scanner, source: EvalLogSource, read_since: float, until: float, skipped: Counter[str],
                 progress: Callable[[int, int, str], None] | None = None) -> None:
    """The files of `source` from read_since to until into the records (skips counted), and the
    pass's relations (analysis/queries.py) ready to be created as its results need them."""
    files = source.files(datetime.fromtimestamp(read_since, timezone.utc),
                         datetime.fromtimestamp(until, timezone.utc))
    with source.prefetching(files):  # S3: the next files download while one loads
        _load(scanner, source, files, skipped, progress)
    _recheck_lenient(scanner.connection, skipped)
    scanner.relations.update(queries.pass_relations(read_since, until))


def collect(engine: Any, results: dict[str, queries.Query], sides: list[ChangeSides], skipped: Counter[str]) -> Pass:
    """What a pass collects, from the results of queries.pass_queries as an engine answers them
    (`engine.run(query)`: the rows; `engine.batches(query)`: the rows in batches): the embedded
    engine (Scanner) or Athena (analysis/athena.py)."""
    for reason, count in engine.run(results["problems"]):
        skipped[reason] += count
    duplicates = engine.run(results["duplicates"])[0][0]
    if duplicates:
        skipped["duplicate_request_id"] += int(duplicates)
    result = Pass()
    result.read = engine.run(results["read"])[0][0]
    orphans, orphan_events, outside, outside_events = engine.run(results["orphans"])[0]
    result.orphan_requests, result.orphan_events = int(orphans), int(orphan_events)
    result.outside_requests, result.outside_events = int(outside), int(outside_events)
    for name, requests, with_feedback, explicit, contradictory, total, squares, good in engine.run(results["cohorts"]):
        result.cohort_overall[name] = (total, squares)
        result.good_verdicts += good
        result.in_window += requests
        result.requests_with_feedback += with_feedback
        result.cohort_requests[name] = requests
        if explicit:
            result.cohort_feedback[name] = explicit
        if contradictory:
            result.cohort_contradictory[name] = contradictory
    for i, change_sides in enumerate(sides):
        _fill_sides(change_sides, engine.run(results[f"side {i}"]))
    for *values, cohort, requests, total, squares in engine.run(results["segment cohorts"]):
        field = next(i for i, value in enumerate(values) if value is not None)  # its grouping set's field
        result.segment_cohorts.setdefault((field, values[field]), {})[cohort] = (requests, total, squares)
    if queries.CALIBRATED_COHORTS in results:
        result.cohort_calibrated = {name: tuple(float(v) for v in sums)
                                    for name, *sums in engine.run(results[queries.CALIBRATED_COHORTS])}
    _rows(engine.batches(results["rows"]), result)
    return result


def _recheck_lenient(connection: duckdb.DuckDBPyConnection, skipped: Counter[str]) -> None:
    """Lines DuckDB took that may not be JSON are parsed again with orjson; those that fail are
    invalid_json, as the line-by-line reader counts them."""
    suspects = connection.execute("SELECT rowid, text FROM records_read WHERE suspect").fetchall()
    invalid = []
    for position, text in suspects:
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            invalid.append(position)
    if invalid:
        skipped["invalid_json"] += len(invalid)
        connection.execute(f"DELETE FROM records_read WHERE rowid IN ({', '.join(map(str, invalid))})")


def _fill_sides(change_sides: ChangeSides, rows: list[tuple[Any, ...]]) -> None:
    """Each side's figures summed over its cohorts' rows (queries.side), in cohort order."""
    for side_name, cohort, requests, explicit, total, squares, first, last, thumbs_up, thumbs, human, labelled in rows:
        side: Side = change_sides.control if side_name == "c" else change_sides.treatment
        human_scores = orjson.loads(human) if human else []  # JSON text (queries.side)
        side.cohorts[cohort] = CohortPart(requests, float(total), float(squares), human_scores,
                                          orjson.loads(labelled) if labelled else [])
        side.requests += requests
        side.overall_n = side.requests
        side.with_feedback += explicit
        side.overall_sum += float(total)
        side.overall_sq += float(squares)
        side.first = first if side.first is None else min(side.first, first)
        side.last = last if side.last is None else max(side.last, last)
        side.thumbs_up += int(thumbs_up)
        side.thumbs += int(thumbs)
        side.human += human_scores


def _output_text(output: str) -> str | None:
    """An output's text (JSON text in the rows), None if it is not a string (messages, or JSON nested
    past the reader's limit)."""
    try:
        value = orjson.loads(output)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def _rows(batches: Iterable[list[tuple[Any, ...]]], result: Pass) -> None:
    """The labelled rows (queries.rows) into result.rows, with their implicit scores, then in the
    order read (by position: the query leaves them in no order, which DuckDB would otherwise sort
    with their prompts and outputs)."""
    rows = result.rows
    positions = array("q")
    same: dict[Any, Any] = {}  # one object per distinct cohort and segment tuple, not one per row
    for batch in batches:
        for position, request_id, moment, overall, prompt, output, human, n_users, cohort_name, kinds, texts, votes, \
                comments, *segments in batch:
            positions.append(position)
            kinds, texts = (orjson.loads(kinds), orjson.loads(texts)) if kinds else (None, None)  # JSON text
            latest = signals(kinds, texts)
            edited = latest and "implicit_edit" in kinds
            text = _output_text(output) if edited and output is not None else None
            rows.request_id.append(request_id)
            rows.at.append(moment)
            rows.overall.append(overall)
            rows.human.append(human)
            rows.n_users.append(n_users)
            rows.votes.append(tuple(orjson.loads(votes)) if votes else None)  # JSON text
            rows.comments.append(tuple(orjson.loads(comments)) if comments else None)  # JSON text
            rows.cohort.append(same.setdefault(cohort_name, cohort_name))
            values = tuple(segments)
            rows.segments.append(same.setdefault(values, values))
            implicit = implicit_score(latest, text).value
            rows.implicit.append(math.nan if implicit is None else implicit)
            rows.prompt.append(prompt)
            rows.output.append(output)
    order = np.argsort(np.frombuffer(positions, dtype=np.int64), kind="stable")
    if np.any(order != np.arange(len(order))):
        rows.reorder(order.tolist())
