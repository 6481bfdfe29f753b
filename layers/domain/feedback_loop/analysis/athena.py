"""The weekly analysis's pass on Amazon Athena: the queries of analysis/queries.py, rendered for
Trino, over the eval logs and the feedback in S3; the results read back into the same Pass that the
embedded engine collects (columnar.collect), so the statistics and the report are the same code.

Glue tables partitioned by project and day with partition projection (no crawler, no partitions
to add):
- `eval_logs`: one text column `line` per line of the files (gzip or not) under
  s3://<bucket>/eval-logs/<project>/dt=YYYY-MM-DD/ (the eval-log contract's layout), of which the
  statements read the JSON Lines files (by "$path", as the embedded reader reads them by name);
- `eval_logs_parquet`: the Parquet files of the same partitions, of the columns PARQUET_COLUMNS,
  each statement naming the pass's Parquet files in `"$path" IN (...)` so that Athena opens only
  those (the JSON files beside them are not Parquet);
- `feedback`: one text column `line` per line under
  s3://<bucket>/feedback-export/<project>/run=<window end>/: the feedback events of one analysis,
  exported from the table before the queries run (`export_feedback`), one JSON object per line
  with its `position` (the order in which the table gave the events).

The base relations are Trino SQL written here: `records` checks and types each line as the
embedded reader does (a JSON string request_id, a timestamp that parses, a number for
eval_scores.overall, the fields as Python's str() writes a string, True/False, or an integer), and
gives each record a position: its file's rank by path times 2^32 plus its place in the file by
(timestamp, line), or (timestamp, request_id) in a Parquet file, since Athena does not know a
line's number in its file (the embedded engine uses the order read: the same order for files whose
lines go forward in time). A Parquet record is typed by its columns (metadata's values are
strings already). `feedback_events`
reads the export, whose events the API checked when it stored them.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import orjson

from feedback_loop.analysis import queries
from feedback_loop.analysis.columnar import collect
from feedback_loop.analysis.evallogs import JSON_SUFFIXES, PARQUET_SUFFIXES, partition_day, partition_range
from feedback_loop.analysis.model import ChangeSides, Pass
from feedback_loop.analysis.sql import literal
from feedback_loop.calibration.curves import CalibrationMap
from feedback_loop.dal.items import item_value

EVAL_LOGS, EVAL_LOGS_PARQUET, FEEDBACK = "eval_logs", "eval_logs_parquet", "feedback"
FILE_RANK = 1 << 32  # a record's position: its file's rank times this, plus its place in the file


LINE = (("line", "string"),)
# the Parquet eval logs that Athena reads: these columns, by name (Firehose's record format conversion
# writes them when given this table as its schema); a column a file lacks reads as NULL
PARQUET_COLUMNS = (("request_id", "string"), ("timestamp", "string"), ("prompt", "string"), ("output", "string"),
                   ("eval_scores", "map<string,double>"), ("metadata", "map<string,string>"))
_TEXT_FORMAT = {
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    # one field per line: \u0001 never appears in a line that is JSON (JSON escapes control characters)
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                  "Parameters": {"field.delim": "\u0001", "serialization.format": "\u0001"}},
}
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
_PARQUET_FORMAT = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE,
                  "Parameters": {"serialization.format": "1"}},
}


def _table(name: str, location: str, template: str, partitions: dict[str, dict[str, str]],
           columns: tuple[tuple[str, str], ...] = LINE) -> dict[str, Any]:
    """A Glue TableInput over the files under `location` (text, one column per line, or Parquet of
    `columns`), partitions by projection (`template`: where a partition's files are)."""
    parquet = columns != LINE
    parameters = {"classification": "parquet" if parquet else "text", "projection.enabled": "true",
                  "storage.location.template": template}
    for key, projection in partitions.items():
        parameters.update({f"projection.{key}.{k}": v for k, v in projection.items()})
    return {
        "Name": name, "TableType": "EXTERNAL_TABLE", "Parameters": parameters,
        "PartitionKeys": [{"Name": key, "Type": "string"} for key in partitions],
        "StorageDescriptor": {"Columns": [{"Name": n, "Type": t} for n, t in columns], "Location": location,
                              **(_PARQUET_FORMAT if parquet else _TEXT_FORMAT)},
    }


def tables(bucket: str) -> list[dict[str, Any]]:
    """The Glue tables of the Athena path (TableInput), for the data bucket. Both eval-log tables
    cover the same partitions: each statement reads from each the files of its format ("$path")."""
    days = {"project": {"type": "injected"},
            "dt": {"type": "date", "format": "yyyy-MM-dd", "range": "2000-01-01,NOW", "interval": "1",
                   "interval.unit": "DAYS"}}
    logs = f"s3://{bucket}/eval-logs/${{project}}/dt=${{dt}}/"
    return [
        _table(EVAL_LOGS, f"s3://{bucket}/eval-logs/", logs, days),
        _table(EVAL_LOGS_PARQUET, f"s3://{bucket}/eval-logs/", logs, days, PARQUET_COLUMNS),
        _table(FEEDBACK, f"s3://{bucket}/feedback-export/",
               f"s3://{bucket}/feedback-export/${{project}}/run=${{run}}/",
               {"project": {"type": "injected"}, "run": {"type": "injected"}}),
    ]


# --- the base relations, in Trino's SQL -------------------------------------------------------------
def _path(*keys: str) -> str:
    """A JSON path to a key, in brackets (any key)."""
    return literal("$" + "".join("[" + orjson.dumps(key).decode() + "]" for key in keys))


def _kind(value: str) -> str:
    """The JSON type of a JSON value, as the embedded reader names it (NULL: absent)."""
    return (f"CASE substr(json_format({value}), 1, 1) WHEN '\"' THEN 'VARCHAR' WHEN 't' THEN 'BOOLEAN' "
            f"WHEN 'f' THEN 'BOOLEAN' WHEN 'n' THEN 'NULL' WHEN '{{' THEN 'OBJECT' WHEN '[' THEN 'ARRAY' "
            f"WHEN '-' THEN 'NUMBER' WHEN '0' THEN 'NUMBER' WHEN '1' THEN 'NUMBER' WHEN '2' THEN 'NUMBER' "
            f"WHEN '3' THEN 'NUMBER' WHEN '4' THEN 'NUMBER' WHEN '5' THEN 'NUMBER' WHEN '6' THEN 'NUMBER' "
            f"WHEN '7' THEN 'NUMBER' WHEN '8' THEN 'NUMBER' WHEN '9' THEN 'NUMBER' END")


def _text(value: str) -> str:
    """A JSON scalar as Python's str() writes it: a string as it is, True/False, an integer's
    digits, a fraction as Trino writes a double (which can differ from Python, as 1.0E16 from 1e+16:
    see docs/REPORT.md); NULL for null and containers."""
    scalar = f"json_extract_scalar({value}, '$')"
    return (f"CASE {_kind(value)} WHEN 'VARCHAR' THEN {scalar} "
            f"WHEN 'BOOLEAN' THEN CASE WHEN {scalar} = 'true' THEN 'True' ELSE 'False' END "
            f"WHEN 'NUMBER' THEN CASE WHEN regexp_like({scalar}, '^-?[0-9]+$') THEN {scalar} "
            f"ELSE CAST(CAST({scalar} AS DOUBLE) AS VARCHAR) END END")


def _field(name: str) -> str:
    """`metadata.x`, else a top-level scalar, else metadata's field of that name (the embedded rule)."""
    in_metadata = f"{_kind('m')} = 'OBJECT'"
    nested = "json_extract(m, " + _path(name.removeprefix("metadata.")) + ")"
    if name.startswith("metadata."):
        return f"CASE WHEN {in_metadata} THEN {_text(nested)} END"
    top = "json_extract(j, " + _path(name) + ")"
    return (f"CASE WHEN coalesce({_kind(top)} NOT IN ('OBJECT', 'ARRAY'), false) THEN {_text(top)} "
            f"WHEN {in_metadata} THEN {_text(nested)} END")


def _days(first: date, last: date) -> str:
    """The partitions the embedded reader opens (evallogs.partition_range)."""
    low, high = partition_range(first, last)
    return f"dt BETWEEN {literal(low.isoformat())} AND {literal(high.isoformat())}"


def _json_files() -> str:
    """The files the embedded reader reads as JSON Lines (evallogs.JSON_SUFFIXES), by "$path"."""
    suffixes = "|".join(re.escape(suffix) for suffix in JSON_SUFFIXES)
    return f'regexp_like("$path", {literal("(" + suffixes + ")$")})'


def _parquet_field(name: str) -> str:
    """The field rule over the Parquet table's typed columns: a top-level string column, else
    metadata's value of that name (a string: as Python's str() writes it)."""
    key = name.removeprefix("metadata.")
    nested = f"element_at(metadata, {literal(key)})"
    if not name.startswith("metadata.") and name in {n for n, t in PARQUET_COLUMNS if t == "string"}:
        return f"coalesce({name}, {nested})"
    return nested


def _json_text(column: str) -> str:
    """A string column as JSON text (a JSON string), as the JSON reader gives prompt and output."""
    return f"json_format(json_extract(CAST(ARRAY[{column}] AS JSON), '$[0]'))"


@dataclass(frozen=True)
class Layout:
    """Which files of a pass each eval-log table reads (listed by the pass: weekly.eval_log_files):
    the days (`dt`) with JSON Lines files, which the text table reads whole; the days with Parquet
    files only, which the Parquet table reads whole; the Parquet files of days that hold both,
    named one by one (`"$path" IN (...)`) so that Athena opens only those. A text statement then
    never scans a Parquet-only day, nor a Parquet statement a JSON file."""

    json_days: tuple[str, ...] = ()
    parquet_days: tuple[str, ...] = ()
    parquet_files: tuple[str, ...] = ()  # s3:// URLs

    @classmethod
    def of(cls, bucket: str, keys: Iterable[str]) -> "Layout":
        by_day: dict[str, list[str]] = {}
        for key in keys:
            day = partition_day(key)
            if day is not None:
                by_day.setdefault(day.isoformat(), []).append(key)
        json_days = tuple(sorted(d for d, ks in by_day.items() if any(k.endswith(JSON_SUFFIXES) for k in ks)))
        parquet_days = tuple(sorted(d for d, ks in by_day.items() if d not in json_days
                                    and any(k.endswith(PARQUET_SUFFIXES) for k in ks)))
        files = tuple(sorted(f"s3://{bucket}/{k}" for d in json_days for k in by_day[d]
                             if k.endswith(PARQUET_SUFFIXES)))
        return cls(json_days, parquet_days, files)


PATH = '"$path"'  # the column Athena gives each row: its file's s3:// URL


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(literal(v) for v in values)})"


def records_sql(database: str, project: str, read_since: float, until: float, columns: queries.Columns,
                layout: Layout | None = None) -> str:
    """The `records` relation over the eval-log tables (Trino): the text table's JSON Lines files
    and the Parquet table's files, as `layout` says (None: every partition of the pass, as text)."""
    first = datetime.fromtimestamp(read_since, timezone.utc).date()
    last = datetime.fromtimestamp(until, timezone.utc).date()
    text_days = _days(first, last) if layout is None or not (layout.json_days or layout.parquet_days) \
        else _in("dt", layout.json_days) if layout.json_days else None
    fields = "".join(f", {_field(name)} AS {column}" for name, column in columns.items())
    field_columns = "".join(f", t.{column}" for column in columns.values())
    request_id, timestamp = f"json_extract(j, {_path('request_id')})", f"json_extract(j, {_path('timestamp')})"
    overall = f"json_extract(j, {_path('eval_scores', 'overall')})"
    project_is = f"project = {literal(project)}"
    rows, paths = [], []
    if text_days is not None:
        text = f"{project_is} AND {text_days} AND {_json_files()}"
        rows.append(f"""
      SELECT path, line AS tiebreak, j IS NOT NULL AS is_json,
             coalesce(regexp_like(line, '^\\s*[{{]'), false) AS is_object,
             CASE WHEN {_kind(request_id)} = 'VARCHAR' THEN json_extract_scalar(j, {_path('request_id')})
                 END AS request_id,
             CASE WHEN {_kind(timestamp)} = 'VARCHAR' THEN to_unixtime(try(from_iso8601_timestamp_nanos(
                 json_extract_scalar(j, {_path('timestamp')})))) END AS moment,
             CASE WHEN {_kind(overall)} = 'NUMBER' THEN CAST(json_extract_scalar(j, {_path('eval_scores', 'overall')})
                 AS DOUBLE) END AS overall,
             {_field('metadata.user_cohort')} AS cohort_field{fields},
             json_format(json_extract(j, {_path('prompt')})) AS prompt,
             json_format(json_extract(j, {_path('output')})) AS output
      FROM (SELECT path, line, j, json_extract(j, {_path('metadata')}) AS m
            FROM (SELECT "$path" AS path, line, try(json_parse(line)) AS j
                  FROM {database}.{EVAL_LOGS}
                  WHERE {text} AND trim(line) <> '') AS l) AS p""")
        paths.append(f'SELECT DISTINCT "$path" AS path FROM {database}.{EVAL_LOGS} WHERE {text}')
    parquet_fields = "".join(f", {_parquet_field(name)} AS {column}" for name, column in columns.items())
    parquet_parts = []
    if layout and layout.parquet_days:
        parquet_parts.append(_in("dt", layout.parquet_days))
    if layout and layout.parquet_files:
        parquet_parts.append(f"{_in('dt', layout.json_days)} AND {_in(PATH, layout.parquet_files)}")
    for which in parquet_parts:
        rows.append(f"""
      SELECT "$path" AS path, request_id AS tiebreak, true AS is_json, true AS is_object, request_id,
             to_unixtime(try(from_iso8601_timestamp_nanos("timestamp"))) AS moment,
             element_at(eval_scores, 'overall') AS overall,
             {_parquet_field('metadata.user_cohort')} AS cohort_field{parquet_fields},
             {_json_text('prompt')} AS prompt, {_json_text('output')} AS output
      FROM {database}.{EVAL_LOGS_PARQUET} WHERE {project_is} AND {which}""")
        paths.append(f'SELECT DISTINCT "$path" AS path FROM {database}.{EVAL_LOGS_PARQUET} '
                     f'WHERE {project_is} AND {which}')
    return f"""
SELECT f.file_rank * {FILE_RANK} + row_number() OVER (PARTITION BY t.path ORDER BY t.moment, t.tiebreak) AS position,
       t.request_id, t.moment, t.overall, t.is_json, t.is_object, t.cohort_field{field_columns},
       t.prompt, t.output
FROM ({" UNION ALL ".join(rows)}) AS t
     JOIN (SELECT path, row_number() OVER (ORDER BY path) AS file_rank FROM ({" UNION ".join(paths)}) AS d) AS f
     ON f.path = t.path"""


def feedback_events_sql(database: str, project: str, run: str) -> str:
    """The `feedback_events` relation over one run's export (Trino)."""
    event = "try(json_parse(line))"
    return f"""
SELECT CAST(json_extract_scalar(e, '$.position') AS BIGINT) AS position,
       json_extract_scalar(e, '$.request_id') AS request_id, json_extract_scalar(e, '$.feedback_type') AS kind,
       CASE json_extract_scalar(e, '$.feedback_type') WHEN 'explicit_thumbs_up' THEN 1.0E0
            WHEN 'explicit_thumbs_down' THEN 0.0E0
            WHEN 'explicit_rating' THEN (CAST(json_extract_scalar(e, '$.value') AS DOUBLE) - 1) / 4 END AS vote,
       CASE WHEN json_extract_scalar(e, '$.feedback_type') IN ('implicit_edit', 'explicit_text_comment')
            THEN json_extract_scalar(e, '$.value') END AS free_text,
       json_extract_scalar(e, '$.user_id') AS user_id,
       to_unixtime(from_iso8601_timestamp_nanos(json_extract_scalar(e, '$.timestamp'))) AS event_at,
       json_extract_scalar(e, '$.event_id') AS event_id, json_extract_scalar(e, '$.user_cohort') AS user_cohort
FROM (SELECT {event} AS e FROM {database}.{FEEDBACK}
      WHERE project = {literal(project)} AND run = {literal(run)} AND trim(line) <> '') AS l"""


def statement(query: queries.Query, relations: dict[str, queries.Relation], base: dict[str, str]) -> str:
    """One Trino statement: the base relations (Trino), then the relations the query reads and the
    query itself (rendered from DuckDB's dialect)."""
    rendered = queries.render(queries.inlined(query, relations), "trino")
    with_base = ", ".join(f"{name} AS ({sql.strip()})" for name, sql in base.items())
    if rendered.startswith("WITH "):
        return f"WITH {with_base}, {rendered.removeprefix('WITH ')}"
    return f"WITH {with_base} {rendered}"


# --- exporting the feedback -------------------------------------------------------------------------
EXPORT_FIELDS = ("request_id", "feedback_type", "value", "user_id", "user_cohort", "timestamp", "event_id")


def export_feedback(items: Any, s3: Any, bucket: str, project: str, run: str) -> int:
    """The analysis's feedback events (FeedbackTable.feedback_in_window) as one JSON Lines object
    under the feedback table's partition of this run, each with its position; returns how many.
    One object per run, written whole (spooled through /tmp past 8 MB, uploaded in parts): the
    run's queries read each event once."""
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        for count, item in enumerate(items, start=1):
            event = {k: item[k] for k in EXPORT_FIELDS if item.get(k) is not None}
            spool.write(orjson.dumps({"position": count - 1, **event, "value": item_value(item)}) + b"\n")
        spool.seek(0)
        s3.upload_fileobj(spool, bucket, f"feedback-export/{project}/run={run}/events.jsonl")
    return count


# --- running the queries ----------------------------------------------------------------------------
class QueryFailed(RuntimeError):
    pass


_CONVERT = {"bigint": int, "integer": int, "smallint": int, "tinyint": int, "double": float, "real": float,
            "decimal": float, "boolean": lambda text: text == "true"}


class Athena:
    """Runs statements on Athena (boto3) and reads their results: `run` and `batches`, the
    interface of columnar.collect."""

    def __init__(self, client: Any, database: str, output: str, workgroup: str | None = None,
                 relations: dict[str, queries.Relation] | None = None, base: dict[str, str] | None = None,
                 poll: float = 1.0, timeout: float = 840.0):
        self.client, self.database, self.output, self.workgroup = client, database, output, workgroup
        self.relations, self.base = relations or {}, base or {}
        self.poll, self.timeout = poll, timeout
        self.executed: list[str] = []  # the ids of the statements run, in order
        self.started: dict[queries.Query, str] = {}  # started (start_all), not yet read

    def start(self, sql: str) -> str:
        """A statement started (not waited for): its execution id."""
        request: dict[str, Any] = {"QueryString": sql, "QueryExecutionContext": {"Database": self.database},
                                   "ResultConfiguration": {"OutputLocation": self.output},
                                   "ClientRequestToken": str(uuid.uuid4())}
        if self.workgroup:
            request["WorkGroup"] = self.workgroup
        execution = self.client.start_query_execution(**request)["QueryExecutionId"]
        self.executed.append(execution)
        return execution

    def wait(self, execution: str) -> str:
        """An execution waited for until it succeeds (its id), or QueryFailed."""
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.client.get_query_execution(QueryExecutionId=execution)["QueryExecution"]["Status"]
            if status["State"] == "SUCCEEDED":
                return execution
            if status["State"] in ("FAILED", "CANCELLED"):
                raise QueryFailed(f"Athena query {execution} {status['State']}: {status.get('StateChangeReason', '')}")
            if time.monotonic() > deadline:
                self.client.stop_query_execution(QueryExecutionId=execution)
                raise QueryFailed(f"Athena query {execution} did not finish in {self.timeout:.0f} s")
            time.sleep(self.poll)

    def execute(self, sql: str) -> str:
        return self.wait(self.start(sql))

    def start_all(self, results: Iterable[queries.Query]) -> None:
        """Every result started at once (Athena runs them side by side); run and batches then wait
        for the one they need."""
        for query in results:
            self.started.setdefault(query, self.start(statement(query, self.relations, self.base)))

    def pages(self, execution: str) -> Iterator[list[tuple[Any, ...]]]:
        """The result's rows, page by page, typed by the result's column types."""
        paginator = self.client.get_paginator("get_query_results")
        converters = None
        for number, page in enumerate(paginator.paginate(QueryExecutionId=execution)):
            if converters is None:
                types = [c["Type"] for c in page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
                converters = [_CONVERT.get(t, str) for t in types]
            rows = page["ResultSet"]["Rows"][1 if number == 0 else 0:]  # the first row is the header
            yield [tuple(None if "VarCharValue" not in cell else convert(cell["VarCharValue"])
                         for convert, cell in zip(converters, row["Data"])) for row in rows]

    def batches(self, query: queries.Query) -> Iterator[list[tuple[Any, ...]]]:
        started = self.started.pop(query, None)
        execution = self.wait(started) if started else self.execute(statement(query, self.relations, self.base))
        return self.pages(execution)

    def run(self, query: queries.Query) -> list[tuple[Any, ...]]:
        return [row for page in self.batches(query) for row in page]


def pass_engine(client: Any, database: str, output: str, project: str, run: str, sides: list[ChangeSides],
                read_since: float, until: float, window: tuple[float, float], fields: tuple[str, ...],
                workgroup: str | None = None, poll: float = 1.0, layout: Layout | None = None,
                threshold: float = 0.7, minimum: int = 30, calibration_map: CalibrationMap | None = None
                ) -> tuple[Athena, dict[str, queries.Query]]:
    """The runner of one pass and its results by name (queries.pass_queries, and `events`: the
    feedback events read); `layout`: which eval-log files each table reads."""
    columns = queries.columns(fields, sides)
    base = {"records": records_sql(database, project, read_since, until, columns, layout),
            "feedback_events": feedback_events_sql(database, project, run)}
    engine = Athena(client, database, output, workgroup, queries.pass_relations(read_since, until), base, poll)
    return engine, {EVENTS: queries.EVENTS_COUNT,
                    **queries.pass_queries(window, fields, columns, sides, threshold, minimum, calibration_map)}


EVENTS = "events"


def start_pass(engine: Athena, results: dict[str, queries.Query]) -> dict[str, str]:
    """Every statement of a pass started (Athena runs them side by side): their execution ids by
    result name, for `finish_pass`, now or in a later invocation."""
    engine.start_all(results.values())
    return {name: engine.started[query] for name, query in results.items()}


def finish_pass(engine: Athena, results: dict[str, queries.Query], executions: dict[str, str], sides: list[ChangeSides],
                skipped: Counter[str]) -> tuple[Pass, int]:
    """The Pass from the results of started statements (each waited for as it is read), and the
    number of feedback events read."""
    missing = set(results) - set(executions)
    if missing:
        raise ValueError(f"no execution for the results {sorted(missing)}")
    engine.started.update({query: executions[name] for name, query in results.items()})
    events = engine.run(results[EVENTS])[0][0]
    return collect(engine, {k: v for k, v in results.items() if k != EVENTS}, sides, skipped), events


def scan_athena(client: Any, database: str, output: str, project: str, run: str, sides: list[ChangeSides],
                read_since: float, until: float, window: tuple[float, float], fields: tuple[str, ...],
                skipped: Counter[str], workgroup: str | None = None, poll: float = 1.0,
                layout: Layout | None = None, calibration_map: CalibrationMap | None = None) -> tuple[Pass, int]:
    """The pass of columnar.scan_files, on Athena, in one call: the same results of the same
    queries. Returns the Pass and the number of feedback events read."""
    engine, results = pass_engine(client, database, output, project, run, sides, read_since, until, window, fields,
                                  workgroup, poll, layout, calibration_map=calibration_map)
    return finish_pass(engine, results, start_pass(engine, results), sides, skipped)
