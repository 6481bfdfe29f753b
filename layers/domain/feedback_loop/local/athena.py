"""The local stack's Amazon Athena: its API answered by running each statement on DuckDB over the
emulated bucket.

The emulator (moto) records Athena queries but runs nothing. This answers StartQueryExecution,
GetQueryExecution, BatchGetQueryExecution, GetQueryResults and StopQueryExecution as Athena does:
a statement, in Trino's SQL, is translated to DuckDB's by sqlglot (with Trino's functions that
sqlglot leaves as they are given as DuckDB macros); each table it names is the emulator's Glue
table of that name, whose files (text, one column `line`, or Parquet; partitions where its
`storage.location.template` says) are read from the emulated bucket; the result is written where
Athena writes it (<OutputLocation><id>.csv) and served page by page, every value as text with its
column's type, as Athena serves it.

No Trino engine runs here. This proves that the orchestration works and what the queries mean on
the embedded engine, not that Trino accepts them (tests/unit/test_queries.py parses them with
Trino's grammar).
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3

from feedback_loop.analysis.evallogs import PARQUET_SUFFIXES

# Trino's functions that sqlglot writes as they are, in DuckDB
MACROS = ("CREATE MACRO from_iso8601_timestamp_nanos(x) AS CAST(x AS TIMESTAMPTZ)",)
PAGE = 1000  # rows a GetQueryResults page holds at most, as in Athena


def _athena_type(duckdb_type: str) -> str:
    kind = duckdb_type.upper()
    if kind in ("BIGINT", "HUGEINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER"):
        return "bigint"
    if kind in ("DOUBLE", "FLOAT"):
        return "double"
    if kind.startswith("DECIMAL"):
        return "decimal"
    if kind == "BOOLEAN":
        return "boolean"
    return "varchar"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class LocalAthena:
    """Query executions by id: each runs on a thread of its own, as Athena runs them apart."""

    def __init__(self) -> None:
        self._executions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def handle(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        handler = getattr(self, f"_{operation}", None)
        if handler is None:
            return 400, {"__type": "InvalidRequestException", "Message": f"{operation} is not served locally"}
        try:
            return 200, handler(body)
        except KeyError as missing:
            return 400, {"__type": "InvalidRequestException", "Message": f"unknown or incomplete: {missing}"}

    def _StartQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 (Athena's names)
        execution_id = str(uuid.uuid4())
        output = body.get("ResultConfiguration", {}).get("OutputLocation")
        if not output:
            raise KeyError("ResultConfiguration.OutputLocation")
        execution = {"id": execution_id, "sql": body["QueryString"], "output": output.rstrip("/") + "/",
                     "database": body.get("QueryExecutionContext", {}).get("Database", "default"),
                     "state": "QUEUED", "reason": None, "submitted": datetime.now(timezone.utc),
                     "columns": [], "rows": []}
        with self._lock:
            self._executions[execution_id] = execution
        threading.Thread(target=self._run, args=(execution,), name=f"athena-{execution_id[:8]}", daemon=True).start()
        return {"QueryExecutionId": execution_id}

    def _GetQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"QueryExecution": self._described(self._executions[body["QueryExecutionId"]])}

    def _BatchGetQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        ids = body["QueryExecutionIds"]
        return {"QueryExecutions": [self._described(self._executions[i]) for i in ids if i in self._executions],
                "UnprocessedQueryExecutionIds": [{"QueryExecutionId": i, "ErrorCode": "INVALID_INPUT",
                                                  "ErrorMessage": "no such query execution"}
                                                 for i in ids if i not in self._executions]}

    @staticmethod
    def _described(execution: dict[str, Any]) -> dict[str, Any]:
        status: dict[str, Any] = {"State": execution["state"], "SubmissionDateTime": execution["submitted"].timestamp()}
        if execution["reason"]:
            status["StateChangeReason"] = execution["reason"]
        return {"QueryExecutionId": execution["id"], "Query": execution["sql"], "StatementType": "DML",
                "ResultConfiguration": {"OutputLocation": f"{execution['output']}{execution['id']}.csv"},
                "QueryExecutionContext": {"Database": execution["database"]}, "Status": status}

    def _StopQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        execution = self._executions[body["QueryExecutionId"]]
        if execution["state"] in ("QUEUED", "RUNNING"):
            execution["state"] = "CANCELLED"
        return {}

    def _GetQueryResults(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        execution = self._executions[body["QueryExecutionId"]]
        if execution["state"] != "SUCCEEDED":
            raise KeyError(f"results of a query that is {execution['state']}")
        size = min(int(body.get("MaxResults", PAGE)), PAGE)
        start = int(body.get("NextToken") or 0)
        everything = [tuple(name for name, _ in execution["columns"]), *execution["rows"]]  # the header first
        page = everything[start:start + size]
        answer: dict[str, Any] = {"ResultSet": {
            "Rows": [{"Data": [{} if value is None else {"VarCharValue": _text(value)} for value in row]}
                     for row in page],
            "ResultSetMetadata": {"ColumnInfo": [{"Name": name, "Label": name, "Type": kind}
                                                 for name, kind in execution["columns"]]}}}
        if start + size < len(everything):
            answer["NextToken"] = str(start + size)
        return answer

    # --- running a statement ---------------------------------------------------------------------
    def _run(self, execution: dict[str, Any]) -> None:
        execution["state"] = "RUNNING"
        try:
            columns, rows = self.execute(execution["sql"], execution["database"])
            buffer = io.StringIO()
            writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow([name for name, _ in columns])
            writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
            bucket, _, prefix = execution["output"].removeprefix("s3://").partition("/")
            boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}{execution['id']}.csv",
                                          Body=buffer.getvalue().encode())
            if execution["state"] == "RUNNING":
                execution.update(columns=columns, rows=rows, state="SUCCEEDED")
        except Exception as error:  # the query's failure is Athena's answer, not the emulator's
            execution.update(state="FAILED", reason=f"{type(error).__name__}: {error}")

    def execute(self, sql: str, database: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
        """A Trino statement run on DuckDB over the emulator's Glue tables (each named with its
        database, as the analysis names them): (columns, rows)."""
        import duckdb
        import sqlglot
        from sqlglot import exp

        tree = sqlglot.parse_one(sql, read="trino")
        # the Glue tables: those named with their database
        tables = {(t.db, t.name) for t in tree.find_all(exp.Table) if t.db}
        for table in tree.find_all(exp.Table):
            if table.db:
                table.set("db", None)
                table.set("catalog", None)
        with tempfile.TemporaryDirectory(prefix="local-athena-") as folder, duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            for macro in MACROS:
                connection.execute(macro)
            glue, s3 = boto3.client("glue"), boto3.client("s3")
            for number, (db, name) in enumerate(sorted(tables)):
                table = glue.get_table(DatabaseName=db, Name=name)["Table"]
                _line_table(connection, s3, table, Path(folder) / str(number))
            cursor = connection.execute(tree.sql(dialect="duckdb"))
            columns = [(d[0], _athena_type(str(d[1]))) for d in cursor.description]
            return columns, cursor.fetchall()


def _template_pattern(template: str, keys: list[str]) -> re.Pattern[str]:
    """The partition values in an object's URL, from a storage.location.template."""
    pattern = re.escape(template)
    for key in keys:
        pattern = pattern.replace(re.escape("${" + key + "}"), f"(?P<{key}>[^/]+)")
    return re.compile(pattern)


_DUCKDB_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "bigint": "BIGINT", "int": "INTEGER", "boolean": "BOOLEAN"}


def _duckdb_type(hive: str) -> str:
    """A Hive column type (string, double, map<k,v>) in DuckDB's words."""
    if hive.startswith("map<") and hive.endswith(">"):
        key, value = hive[4:-1].split(",", 1)
        return f"MAP({_duckdb_type(key.strip())}, {_duckdb_type(value.strip())})"
    return _DUCKDB_TYPES[hive]


def _line_table(connection: Any, s3: Any, table: dict[str, Any], folder: Path) -> None:
    """A Glue table as a DuckDB view, with the partition values and "$path" (the object's URL) as
    Athena gives them: a text table of one column `line` (each line of its files a row), or a
    Parquet table (its columns by name, NULL where a file lacks one). A Parquet table reads the
    files named .parquet or .pq, a text table the others: Athena opens only the files that a
    statement names in `"$path" IN (...)`, which is how the analysis reads Parquet files from the
    partitions they share with JSON Lines, and its text reader turns a Parquet file into lines that
    the analysis drops by "$path" (DuckDB's CSV reader would refuse their bytes instead)."""
    from feedback_loop.analysis.athena import PARQUET_SERDE  # the tables' own (it imports DuckDB: not at start-up)

    descriptor = table["StorageDescriptor"]
    declared = [(c["Name"], c["Type"]) for c in descriptor["Columns"]]
    parquet = descriptor.get("SerdeInfo", {}).get("SerializationLibrary") == PARQUET_SERDE
    if not parquet and [name for name, _ in declared] != ["line"]:
        raise ValueError(f"the local Athena reads text tables of one column `line`, not {table['Name']}")
    keys = [k["Name"] for k in table.get("PartitionKeys", [])]
    template = table.get("Parameters", {}).get("storage.location.template", descriptor["Location"])
    pattern = _template_pattern(template.rstrip("/") + "/", keys)
    bucket, _, prefix = descriptor["Location"].removeprefix("s3://").partition("/")
    folder.mkdir(parents=True)
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            url = f"s3://{bucket}/{item['Key']}"
            found = pattern.match(url)
            if not found or item["Key"].endswith("/") or parquet != item["Key"].endswith(PARQUET_SUFFIXES):
                continue
            local = folder / f"{len(files)}-{item['Key'].rpartition('/')[2]}"  # its suffix tells the compression
            s3.download_file(bucket, item["Key"], str(local))
            files.append((str(local), url, *(found.group(k) for k in keys)))
    name = table["Name"]
    partition_columns = "".join(f", {k} VARCHAR" for k in keys)
    connection.execute(f'CREATE TEMP TABLE "{name}__files" (file VARCHAR, url VARCHAR{partition_columns})')
    typed = {column: _duckdb_type(kind) for column, kind in declared}
    empty = "SELECT " + ", ".join(f"NULL::{kind} AS {column}" for column, kind in typed.items()) + \
        ", NULL::VARCHAR AS filename WHERE false"
    if files:
        connection.executemany(f'INSERT INTO "{name}__files" VALUES ({", ".join("?" * (2 + len(keys)))})', files)
        listed = "[" + ", ".join("'" + f[0].replace("'", "''") + "'" for f in files) + "]"
        if parquet:
            present = {row[0] for row in connection.execute(
                f"DESCRIBE SELECT * FROM read_parquet({listed}, union_by_name = true)").fetchall()}
            rows = "(SELECT " + ", ".join(
                f"CAST({column} AS {kind}) AS {column}" if column in present else f"NULL::{kind} AS {column}"
                for column, kind in typed.items()) + \
                f", filename FROM read_parquet({listed}, union_by_name = true, filename = true))"
        else:
            rows = (f"read_csv({listed}, columns = {{'line': 'VARCHAR'}}, delim = chr(1), quote = '', escape = '', "
                    f"header = false, auto_detect = false, filename = true, strict_mode = false, null_padding = true)")
    else:
        rows = f"({empty})"
    selected = "".join(f", r.{column}" for column in typed) + "".join(f", f.{k}" for k in keys)
    connection.execute(f'CREATE TEMP VIEW "{name}" AS SELECT {selected.removeprefix(", ")}, f.url AS "$path" '
                       f'FROM {rows} AS r JOIN "{name}__files" AS f ON f.file = r.filename')
