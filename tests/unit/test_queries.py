"""The analysis's queries (analysis/queries.py), written once in DuckDB's dialect, rendered for
Trino (Amazon Athena) by sqlglot: every query that a pass runs renders, parses as Trino, calls only
functions that Trino has, and, rendered for Trino and back for DuckDB (what the local stack will do
for Athena's API), gives on the same records exactly what the embedded engine gives.

No Trino engine runs here: the rendering is checked by parsing and by the round trip, not by Trino."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlglot

from feedback_loop.analysis import queries
from feedback_loop.analysis.columnar import Scanner, load_records
from feedback_loop.analysis.evallogs import EvalLogSource
from feedback_loop.analysis.feedback import FeedbackIndex
from feedback_loop.analysis.model import AnalysisSettings, change_sides, read_range
from feedback_loop.calibration.curves import CalibrationMap, Curve, Logistic, Target
from feedback_loop.models.changes import Change
from feedback_loop.simulate import Scenario, simulate

from ..analysis_data import write_eval_logs, write_feedback

SETTINGS = AnalysisSettings()
# the functions the rendered queries may call: each is in Trino's documentation (aggregate,
# conditional, math functions) as Athena's engine version 3 runs them
TRINO_FUNCTIONS = {"ARRAY_AGG", "AVG", "BOOL_OR", "CAST", "COALESCE", "COUNT", "IS_NAN", "JSON_FORMAT", "MAX",
                   "MAX_BY", "MIN", "MIN_BY", "NULLIF", "ROW", "SUM", "LN", "EXP", "LEAST", "GREATEST"}
KEYWORDS = {"AS", "IN", "FILTER", "DECIMAL", "OVER", "AND", "OR", "NOT", "ON", "FROM", "JOIN", "THEN", "ELSE", "WHEN",
            "BETWEEN", "SELECT", "WHERE", "BY", "END", "SETS"}  # SETS: GROUPING SETS (...)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A pass's records and feedback in DuckDB: the planted scenario with odd records (a request
    read twice, bad scores, no request id), feedback that matches no record, votes that contradict
    each other, and an A/B change besides the scenario's before/after changes."""
    tmp = tmp_path_factory.mktemp("queries")
    scenario = Scenario(requests=3_000, seed=11)
    records, events = simulate(scenario)
    first = records[0]
    records += [{**first, "eval_scores": {"overall": 0.01}},  # read twice: the first record wins
                {**records[1], "request_id": "bad-score", "eval_scores": {"overall": 1.5}},
                {**records[2], "request_id": ""},
                # in the last day's file, but 11.5 hours after the window in UTC: read, and outside it
                {**records[3], "request_id": "after-the-window",
                 "timestamp": f"{(scenario.end - timedelta(days=1)).date()}T23:30:00-12:00"}]
    at = (scenario.end - timedelta(hours=1)).isoformat()
    events += [{"request_id": "no-such-request", "feedback_type": "explicit_thumbs_up", "value": True,
                "timestamp": at},
               {"request_id": "after-the-window", "feedback_type": "explicit_thumbs_down", "value": True,
                "timestamp": at},
               {"request_id": first["request_id"], "feedback_type": "explicit_thumbs_up", "value": True,
                "user_id": "a", "timestamp": at},
               {"request_id": first["request_id"], "feedback_type": "explicit_thumbs_down", "value": True,
                "user_id": "b", "timestamp": at}]
    logs = write_eval_logs(records, tmp / "logs")
    feedback = FeedbackIndex()
    feedback.add_export_file(write_feedback(events, tmp / "feedback.jsonl"))
    changes = [*scenario.changes(), Change(name="ab", effective_at=scenario.start, variant_field="prompt_version",
                                           control="v7", treatment="v8")]
    start, measured = read_range(scenario.start, scenario.end, changes, SETTINGS)
    sides = change_sides(measured, scenario.start, scenario.end, SETTINGS)
    fields = SETTINGS.segment_fields
    columns = {name: f"f{i}" for i, name in enumerate(["query_type", "prompt_version", "model"])}
    scanner = Scanner(feedback, columns)
    scanner.prepare(keep_events=True)  # the Trino statements reduce the feedback themselves
    load_records(scanner, EvalLogSource(str(logs)), start.timestamp(), scenario.end.timestamp(), Counter())
    window = (scenario.start.timestamp(), scenario.end.timestamp())
    results = queries.pass_queries(window, fields, columns, sides)
    for name, calibration_map in MAPS.items():  # the calibrated predictors' sums, for each kind of map
        results[f"calibrated cohorts {name}"] = queries.calibrated_cohorts(window, calibration_map, fields, columns)
    yield scanner, results
    scanner.close()


def _curve(rng: Any, knots: int) -> Curve:
    x = np.sort(rng.choice(np.linspace(0, 1, 4001), knots, replace=False))
    return Curve(tuple(x.tolist()), tuple(np.sort(rng.random(knots)).tolist()))


_rng = np.random.default_rng(5)
# maps of every kind, made up (what is checked is the SQL against the Python map, not a fit): curves
# with many knots (the SQL's halving), one knot, curves per value of a field (one value the records
# never have), a logistic map with offsets on two fields (user_cohort: the analysis's cohort), and a
# field the pass does not read (every record `unknown`)
MAPS = {
    "isotonic": CalibrationMap(Target("isotonic", curve=_curve(_rng, 57)), Target("isotonic", curve=_curve(_rng, 1))),
    "binning by query_type": CalibrationMap(
        Target("binning", "query_type", _curve(_rng, 10), {"code": _curve(_rng, 10), "qa": _curve(_rng, 2),
                                                             "no-such-value": _curve(_rng, 3)}),
        Target("binning", "not_read", _curve(_rng, 4), {"unknown": _curve(_rng, 6)}), ("query_type", "not_read")),
    "platt with offsets": CalibrationMap(
        Target("platt", "query_type+user_cohort", logistic=Logistic(
            1.7, -0.4, {"query_type": {"code": -0.9, "chat": 0.35, "qa'": 2.0}, "user_cohort": {"free": 0.2}})),
        Target("platt", logistic=Logistic(0.8, 0.1)), ("query_type", "user_cohort")),
}


def _trino(scanner: Scanner, query: queries.Query) -> str:
    return queries.render(queries.inlined(query, scanner.relations), "trino")


def _comparable(rows: list[tuple[Any, ...]]) -> list[str]:
    """A result as a list of rows in a fixed order (the labelled rows come in no order)."""
    return sorted(json.dumps(row, default=str) for row in rows)


def test_every_query_renders_as_trino_and_calls_only_trino_functions(loaded: Any) -> None:
    scanner, results = loaded
    assert {"problems", "duplicates", "read", "orphans", "cohorts", "rows"} <= set(results)
    assert sum(name.startswith("side ") for name in results) == 3
    for name, query in results.items():
        trino = _trino(scanner, query)
        parsed = sqlglot.parse_one(trino, read="trino")  # raises if Trino's grammar refuses it
        assert isinstance(parsed, sqlglot.exp.Query), name
        called = {m.upper() for m in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", trino)} - KEYWORDS
        assert called <= TRINO_FUNCTIONS, (name, called - TRINO_FUNCTIONS)
        # DuckDB's names of what Trino calls otherwise are gone
        assert not re.search(r"\b(ARG_MAX|ARG_MIN|ISNAN|LIST|TO_JSON)\s*\(", trino, re.IGNORECASE), name


def test_each_query_rendered_for_trino_and_back_gives_what_duckdb_gives(loaded: Any) -> None:
    """The inlined Trino statement, read back as DuckDB's dialect, run on the same records: every
    result equal to the embedded engine's (its relations created once, as a pass creates them)."""
    scanner, results = loaded
    compared = 0
    for name, query in results.items():
        embedded = scanner.run(query)
        back = sqlglot.transpile(_trino(scanner, query), read="trino", write="duckdb")[0]
        assert _comparable(scanner.connection.execute(back).fetchall()) == _comparable(embedded), name
        assert embedded, name
        compared += len(embedded)
    assert compared > 300


def test_the_odd_records_reach_the_results(loaded: Any) -> None:
    """The fixture's odd records are counted where they belong (the round trip compares results
    that are not empty)."""
    scanner, results = loaded
    problems = dict(scanner.run(results["problems"]))
    assert problems["overall_score_out_of_range"] == 1 and problems["missing_request_id"] == 1
    assert scanner.run(results["duplicates"])[0][0] == 1
    # one request no record names (an orphan); one whose record was read but lies outside the window
    assert scanner.run(results["orphans"])[0] == (1, 1, 1, 1)
    assert sum(row[4] for row in scanner.run(results["cohorts"])) >= 1  # the contradictory request
    side_rows = [scanner.run(results[f"side {i}"]) for i in range(3)]
    assert all({row[0] for row in rows} == {"c", "t"} for rows in side_rows)


def test_a_relation_is_inlined_after_the_relations_it_reads(loaded: Any) -> None:
    scanner, results = loaded
    names = [r.name for r in queries.relations(results["rows"], scanner.relations)]
    assert names.index("feedback_votes") < names.index("feedback") < names.index("matched")
    assert names.index("checked") < names.index("matched") and len(names) == len(set(names))


def test_the_rendering_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(sqlglot.errors.ParseError):
        queries.render("SELECT FROM WHERE", "trino")


def test_every_athena_statement_parses_as_trino_and_calls_only_trino_functions(loaded: Any) -> None:
    """The statements the Athena path runs: the base relations over the Glue tables (written in
    Trino's SQL), then the relations and the result (rendered)."""
    from feedback_loop.analysis import athena

    scanner, results = loaded
    mixed = athena.Layout(json_days=("2023-11-14", "2023-11-16"), parquet_days=("2023-11-15",),
                          parquet_files=("s3://b/eval-logs/p/dt=2023-11-16/it's.parquet",))
    allowed = TRINO_FUNCTIONS | {"JSON_PARSE", "JSON_EXTRACT", "JSON_EXTRACT_SCALAR", "REGEXP_LIKE", "SUBSTR",
                                 "TRY", "TO_UNIXTIME", "FROM_ISO8601_TIMESTAMP_NANOS", "ROW_NUMBER", "TRIM",
                                 "ELEMENT_AT", "COALESCE"}
    for name, query, files in [(name, query, files) for name, query in results.items() for files in (None, mixed)]:
        base = {"records": athena.records_sql("db", "p", 1.7e9, 1.7e9 + 86400 * 14, scanner.columns, files),
                "feedback_events": athena.feedback_events_sql("db", "p", "2026-05-18T00-00-00Z")}
        statement = athena.statement(query, scanner.relations, base)
        parsed = sqlglot.parse_one(statement, read="trino")
        assert {cte.alias for cte in parsed.find_all(sqlglot.exp.CTE)} >= {"records", "feedback_events"}, name
        called = {m.upper() for m in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", statement)} - KEYWORDS - {"OVER"}
        assert called <= allowed, (name, called - allowed)
        tables = {(t.db, t.name) for t in parsed.find_all(sqlglot.exp.Table) if t.db}
        expected = {("db", "eval_logs"), ("db", "feedback"), *([("db", "eval_logs_parquet")] if files else [])}
        assert tables <= expected, name
        # the text table reads the days of JSON Lines only; the Parquet table the days of Parquet only
        # whole, and on a day of both only the files named in an IN list on "$path" (quotes escaped)
        assert ("dt IN ('2023-11-14', '2023-11-16') AND regexp_like" in statement) == bool(files), name
        assert ("dt IN ('2023-11-15')" in statement) == bool(files), name
        assert ("dt IN ('2023-11-14', '2023-11-16') AND \"$path\" IN "
                "('s3://b/eval-logs/p/dt=2023-11-16/it''s.parquet')" in statement) == bool(files), name


@pytest.mark.parametrize("name", sorted(MAPS))
def test_the_calibrated_predictor_in_sql_is_the_map_on_every_record(loaded: Any, name: str) -> None:
    """The map written as SQL (queries.calibrated) gives, on every record of the pass, what
    CalibrationMap.apply gives for the record's score and segment values (the API's figures), and
    the per-cohort sums are those of these figures."""
    scanner, results = loaded
    calibration_map = MAPS[name]
    window = (Scenario(requests=3_000, seed=11).start.timestamp(), Scenario(requests=3_000, seed=11).end.timestamp())
    sql = queries.calibrated_records(window, calibration_map, SETTINGS.segment_fields, scanner.columns)
    found = scanner.run(queries.Query(sql, ("kept",)))
    assert len(found) > 2_000
    fields = calibration_map.fields
    sums: dict[str, list[float]] = {}
    for cohort, overall, *values, p, e in found:
        own = dict(zip(fields, values))
        expected = calibration_map.apply(overall, own)
        assert p == pytest.approx(expected["p_good"], abs=1e-12) and e == pytest.approx(expected["expected_human"],
                                                                                        abs=1e-12)
        part = sums.setdefault(cohort, [0.0, 0.0, 0.0, 0.0])
        for i, v in enumerate((p, p * p, e, e * e)):
            part[i] += v
    if "not_read" in fields:
        assert {v[fields.index("not_read") + 2] for v in found} == {"unknown"}
    if "user_cohort" in fields:
        assert {v[fields.index("user_cohort") + 2] for v in found} == {v[0] for v in found}
    cohorts = scanner.run(results[f"calibrated cohorts {name}"])
    assert {row[0] for row in cohorts} == set(sums)
    for cohort, *figures in cohorts:
        assert figures == pytest.approx(sums[cohort], rel=1e-12)
