"""The local Athena's API answers as Athena's: a result served a page of at most 1,000 rows at a
time, the header row first, values as text with their column types, NULL as a cell without a value;
a statement that fails is FAILED with its reason; an unknown operation is refused."""

from __future__ import annotations

import time

from feedback_loop.local.athena import LocalAthena


def test_results_come_in_pages_with_the_header_first() -> None:
    athena = LocalAthena()
    rows = [(i, i / 3, None if i % 7 == 0 else f"r{i}", i % 2 == 0) for i in range(2_500)]
    athena._executions["q"] = {"id": "q", "state": "SUCCEEDED", "rows": rows, "sql": "", "output": "s3://b/",
                               "database": "d", "reason": None, "submitted": None,
                               "columns": [("n", "bigint"), ("x", "double"), ("s", "varchar"), ("b", "boolean")]}
    served, token, pages = [], None, 0
    while True:
        request = {"QueryExecutionId": "q", **({"NextToken": token} if token else {})}
        status, page = athena.handle("GetQueryResults", request)
        assert status == 200 and len(page["ResultSet"]["Rows"]) <= 1000
        assert [c["Type"] for c in page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]] == \
            ["bigint", "double", "varchar", "boolean"]
        served += page["ResultSet"]["Rows"]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 3 and len(served) == 2_501
    assert [c["VarCharValue"] for c in served[0]["Data"]] == ["n", "x", "s", "b"]
    for (n, x, s, b), row in zip(rows, served[1:]):
        cells = row["Data"]
        assert int(cells[0]["VarCharValue"]) == n and float(cells[1]["VarCharValue"]) == x
        assert cells[2].get("VarCharValue") == s and cells[3]["VarCharValue"] == ("true" if b else "false")


def test_a_statement_that_fails_is_failed_with_its_reason() -> None:
    athena = LocalAthena()
    status, started = athena.handle("StartQueryExecution", {"QueryString": "SELECT FROM WHERE",
                                                           "ResultConfiguration": {"OutputLocation": "s3://b/r/"}})
    assert status == 200
    for _ in range(200):
        execution = athena.handle("GetQueryExecution", started)[1]["QueryExecution"]
        if execution["Status"]["State"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.01)
    assert execution["Status"]["State"] == "FAILED" and "ParseError" in execution["Status"]["StateChangeReason"]
    # the state machine polls every statement of a pass in one call; an unknown id comes back apart
    status, batch = athena.handle("BatchGetQueryExecution", {"QueryExecutionIds": [started["QueryExecutionId"], "x"]})
    assert status == 200 and [e["Status"]["State"] for e in batch["QueryExecutions"]] == ["FAILED"]
    assert [u["QueryExecutionId"] for u in batch["UnprocessedQueryExecutionIds"]] == ["x"]
    assert athena.handle("GetQueryResults", started)[0] == 400
    assert athena.handle("StartQueryExecution", {"QueryString": "SELECT 1"})[0] == 400  # no output location
    assert athena.handle("CreateNamedQuery", {})[0] == 400
