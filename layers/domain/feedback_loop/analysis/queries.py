"""Every query of the analysis over its two base relations, in one place.

Each engine fills the base relations in its own way (the embedded engine: analysis/feedback.py and
analysis/columnar.py read the files into DuckDB):

- `records`: one row per eval record read, in the order read: `position` (its place in that order),
  `request_id`, `moment` (its timestamp, epoch seconds), `overall`, `is_json`, `is_object`, `cohort_field`,
  one VARCHAR column per field the pass reads (`f0`, `f1`, ...: Columns), `prompt` and `output`
  (JSON text, for labelled requests);
- `feedback_events`: one row per checked feedback event: `position` (the order read), `request_id`,
  `kind`, `vote` (the human score of a thumb or a rating, else NULL), `free_text` (an edit's or a comment's text),
  `user_id`, `event_at` (epoch seconds), `event_id`, `user_cohort`.

From them, named relations (Relation: `feedback`, `checked`, `kept`, ...) and the results that the
report needs (Query: the counts, the impact sides, the labelled rows). They are written once, in
DuckDB's dialect: the embedded engine creates each relation once (a table or a view) and runs each
result as written; `render(query, "trino")` turns a result into one statement for Amazon Athena
(Trino), its relations inlined as WITH clauses, with sqlglot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from feedback_loop import scoring
from feedback_loop.calibration.curves import LOGIT_CLIP, CalibrationMap, Curve, Target
from feedback_loop.analysis.model import UNKNOWN, ChangeSides
from feedback_loop.analysis.sql import literal

Columns = dict[str, str]  # an eval-log field (`query_type`, `metadata.x`) -> its column in `records`


@dataclass(frozen=True)
class Relation:
    name: str
    sql: str
    reads: tuple[str, ...]  # the relations it reads (besides the base relations)
    table: bool = True  # the embedded engine keeps it as a table (read more than once), else a view


@dataclass(frozen=True)
class Query:
    sql: str
    reads: tuple[str, ...]


# --- the feedback, per request --------------------------------------------------------------------
# Each (request, user)'s latest event of a kind is the one of the greatest (time, event_id), the first
# read of equals (scoring.LatestPerUser): arg_max over that key, a GROUP BY rather than a window,
# which would sort every event with all its columns. A request's human score is the mean of its
# users' latest votes; its cohort the first non-empty one read.
LATEST = "row(event_at, event_id, -position)"
EXPLICIT = ", ".join(literal(kind) for kind in ("explicit_thumbs_up", "explicit_thumbs_down", "explicit_rating",
                                               "explicit_text_comment"))
IMPLICIT = ", ".join(literal(kind) for kind in ("implicit_usage", "implicit_edit", "implicit_discard"))

# a request's users' votes (sorted: the same list on every engine) where several users voted: what
# their agreement with each other is measured on (Krippendorff's alpha)
FEEDBACK_VOTES = Relation("feedback_votes", f"""
SELECT request_id, avg(vote) AS human, count(*) AS n_users,
       CASE WHEN count(*) > 1 THEN array_agg(vote ORDER BY vote) END AS votes
FROM (SELECT request_id, arg_max(vote, {LATEST}) AS vote
      FROM feedback_events WHERE vote IS NOT NULL GROUP BY request_id, user_id) AS latest
GROUP BY request_id""", (), table=False)

FEEDBACK = Relation("feedback", f"""
SELECT e.request_id, count(*) AS events, count(*) FILTER (WHERE e.kind IN ({EXPLICIT})) AS explicit,
       count(*) FILTER (WHERE e.kind = 'explicit_thumbs_up') AS thumbs_up,
       count(*) FILTER (WHERE e.kind = 'explicit_thumbs_down') AS thumbs_down,
       coalesce(bool_or(e.vote >= {scoring.GOOD_AT}) AND bool_or(e.vote <= {scoring.BAD_AT}), false) AS contradictory,
       v.human IS NOT NULL AS has_human, v.human, coalesce(v.n_users, 0) AS n_users, v.votes,
       arg_min(e.user_cohort, e.position) FILTER (WHERE e.user_cohort <> '') AS fb_cohort
FROM feedback_events AS e LEFT JOIN feedback_votes AS v ON v.request_id = e.request_id
GROUP BY e.request_id, v.human, v.n_users, v.votes""", ("feedback_votes",))

# each user's latest implicit signal, its kind and its edited text as two lists (not a list of
# rows, which engines return in different shapes), users in the order of their first signal, as
# LatestPerUser keeps them; for requests with a human score only (the rows' implicit scores). The
# key is unique (position is), so both arg_max pick the same event.
FEEDBACK_SIGNALS = Relation("feedback_signals", f"""
SELECT request_id, array_agg(kind ORDER BY first_position) AS signal_kinds,
       array_agg(edited ORDER BY first_position) AS signal_texts
FROM (SELECT request_id, arg_max(kind, {LATEST}) AS kind, arg_max(free_text, {LATEST}) AS edited,
             min(position) AS first_position
      FROM feedback_events
      WHERE kind IN ({IMPLICIT}) AND request_id IN (SELECT request_id FROM feedback WHERE has_human)
      GROUP BY request_id, user_id) AS latest
GROUP BY request_id""", ("feedback",))

# each user's latest comment on a request with a human score, oldest first (by time, then text: the
# same list whatever the order the events were read in), for the disagreements' examples
FEEDBACK_COMMENTS = Relation("feedback_comments", f"""
SELECT request_id, array_agg(comment ORDER BY commented_at, comment) AS comments
FROM (SELECT request_id, arg_max(free_text, {LATEST}) AS comment, max(event_at) AS commented_at
      FROM feedback_events
      WHERE kind = 'explicit_text_comment' AND request_id IN (SELECT request_id FROM feedback WHERE has_human)
      GROUP BY request_id, user_id) AS latest
GROUP BY request_id""", ("feedback",))

FEEDBACK_RELATIONS = (FEEDBACK_VOTES, FEEDBACK, FEEDBACK_SIGNALS, FEEDBACK_COMMENTS)

LABELLED_COUNT = Query("SELECT count(*) FROM feedback WHERE has_human", ("feedback",))
EVENTS_COUNT = Query("SELECT count(*) FROM feedback_events", ())


# --- the records, checked and joined to the feedback ----------------------------------------------
def checked(read_since: float, until: float) -> Relation:
    """Each record with its problem, in the reader's order of checks (NULL: kept)."""
    return Relation("checked", f"""
SELECT *,
       CASE WHEN NOT is_json THEN 'invalid_json'
            WHEN NOT is_object THEN 'not_an_object'
            WHEN request_id IS NULL OR request_id = '' THEN 'missing_request_id'
            WHEN moment IS NULL THEN 'bad_timestamp'
            WHEN overall IS NULL THEN 'missing_overall_score'
            WHEN isnan(overall) OR overall < 0 OR overall > 1 THEN 'overall_score_out_of_range'
            WHEN moment < {read_since!r} OR moment >= {until!r} THEN 'outside_window'
       END AS problem
FROM records""", (), table=False)


# the requests with feedback that a record read names: the position of their first kept record and how
# many kept records they have (0: only records outside the read range), in one pass over the records
SEEN = Relation("seen", """
SELECT request_id, min(position) FILTER (WHERE problem IS NULL) AS first,
       count(*) FILTER (WHERE problem IS NULL) AS records
FROM checked
WHERE (problem IS NULL OR problem = 'outside_window') AND request_id IN (SELECT request_id FROM feedback)
GROUP BY request_id""", ("checked", "feedback"))

# the requests with feedback that a kept record matched; later records of such a request are skipped
# (the first record wins)
MATCHED = Relation("matched", """
SELECT f.*, s.first, s.records
FROM feedback AS f JOIN seen AS s ON s.request_id = f.request_id
WHERE s.records > 0""", ("feedback", "seen"))

# every record kept, with its request's feedback (a view: the records are not copied)
KEPT = Relation("kept", """
SELECT c.*, f.request_id IS NOT NULL AS has_feedback, coalesce(f.explicit > 0, false) AS explicit,
       f.contradictory, f.has_human, f.fb_cohort, f.human, f.n_users, f.thumbs_up, f.thumbs_down
FROM checked AS c LEFT JOIN matched AS f ON f.request_id = c.request_id
WHERE c.problem IS NULL AND (f.first IS NULL OR c.position = f.first)""", ("checked", "matched"), table=False)

PROBLEMS = Query("SELECT problem, count(*) FROM checked WHERE problem IS NOT NULL GROUP BY problem ORDER BY problem",
                 ("checked",))
DUPLICATES = Query("SELECT coalesce(sum(records - 1), 0) FROM matched", ("matched",))
READ = Query("SELECT count(*) FROM checked WHERE problem IS NULL", ("checked",))
# feedback whose request no record read names (orphans), and feedback whose request's records all lie
# outside the read range: requests and events of each
ORPHANS = Query("""
SELECT count(*) FILTER (WHERE s.request_id IS NULL), coalesce(sum(f.events) FILTER (WHERE s.request_id IS NULL), 0),
       count(*) FILTER (WHERE s.records = 0), coalesce(sum(f.events) FILTER (WHERE s.records = 0), 0)
FROM feedback AS f LEFT JOIN seen AS s ON s.request_id = f.request_id""", ("feedback", "seen"))

# the cohort of a kept record: the eval log's, else the feedback's first, else unknown
COHORT = f"coalesce(nullif(cohort_field, ''), nullif(fb_cohort, ''), {literal(UNKNOWN)})"


# A sum of doubles in parallel depends on the order the threads meet the values: summed as fixed-point
# decimals (28 places, each value converted alone), the same records give the same figure every run,
# whatever the order of the files, the threads or the engine.
EXACT = "DECIMAL(38, 28)"


def in_window(window: tuple[float, float]) -> str:
    return f"moment >= {window[0]!r} AND moment < {window[1]!r}"


def cohorts(window: tuple[float, float], threshold: float = 0.7) -> Query:
    """Per cohort, in the window: requests, with feedback, with explicit feedback, contradictory,
    the sum and sum of squares of the evaluator's score over every request (the corrected
    quality of all traffic: sections.quality), summed exactly (EXACT), and its "good" verdicts
    (overall above `threshold`)."""
    return Query(f"""
SELECT {COHORT} AS cohort, count(*), count(*) FILTER (WHERE has_feedback), count(*) FILTER (WHERE explicit),
       count(*) FILTER (WHERE contradictory), CAST(sum(CAST(overall AS {EXACT})) AS DOUBLE),
       CAST(sum(CAST(overall * overall AS {EXACT})) AS DOUBLE), count(*) FILTER (WHERE overall > {threshold!r})
FROM kept WHERE {in_window(window)} GROUP BY 1 ORDER BY 1""", ("kept",))


def segment_value(field: str, columns: Columns) -> str:
    """A record's value of a segment field, as the labelled rows give it (rows)."""
    return COHORT if field == "user_cohort" else f"coalesce(nullif({columns[field]}, ''), {literal(UNKNOWN)})"


def segment_cohorts(window: tuple[float, float], fields: tuple[str, ...], columns: Columns, minimum: int) -> Query:
    """Per segment field, value and cohort, in the window: requests, and the sum and the sum of
    squares of overall, summed exactly (the quality of all traffic by segment: sections.quality),
    for the values with at least `minimum` labelled requests. One scan: a grouping set per field,
    each row with that field's value in its column (`s<i>`) and NULL in the others."""
    if not fields:
        return Query("SELECT NULL, '', 0, 0.0, 0.0 WHERE false", ())
    names = [f"s{i}" for i in range(len(fields))]
    values = ", ".join(f"{segment_value(f, columns)} AS {name}" for f, name in zip(fields, names))
    sets = ", ".join(f"({name}, cohort)" for name in names)
    return Query(f"""
SELECT {', '.join(names)}, cohort, requests, total, squares
FROM (SELECT {', '.join(names)}, cohort, count(*) AS requests,
             CAST(sum(CAST(overall AS {EXACT})) AS DOUBLE) AS total,
             CAST(sum(CAST(overall * overall AS {EXACT})) AS DOUBLE) AS squares,
             sum(count(*) FILTER (WHERE has_human)) OVER (PARTITION BY {', '.join(names)}) AS labelled
      FROM (SELECT {values}, {COHORT} AS cohort, has_human, overall FROM kept WHERE {in_window(window)}) AS segmented
      GROUP BY GROUPING SETS ({sets})) AS grouped
WHERE labelled >= {minimum} ORDER BY {', '.join(names)}, cohort""", ("kept",))


def number(value: float) -> str:
    """A double as a literal that both engines read as that double (exponent notation: DuckDB and
    Trino read a literal without an exponent as a DECIMAL)."""
    return f"({float(value):.17e})"


def _curve(curve: Curve, score: str) -> str:
    """A piecewise-linear curve at `score` as Curve computes it (flat outside the knots; between
    knots x[i] <= score < x[i+1], y[i] + (y[i+1] - y[i]) * (score - x[i]) / (x[i+1] - x[i])): the
    interval found by nested CASEs halving the knots, log2(knots) comparisons a record."""
    x, y = [number(v) for v in curve.x], [number(v) for v in curve.y]

    def between(low: int, high: int) -> str:  # the intervals low..high (interval i: x[i] to x[i+1])
        if low == high:
            return f"({y[low]} + ({y[low + 1]} - {y[low]}) * ({score} - {x[low]}) / ({x[low + 1]} - {x[low]}))"
        middle = (low + high + 1) // 2
        return f"CASE WHEN {score} < {x[middle]} THEN {between(low, middle - 1)} ELSE {between(middle, high)} END"

    if len(x) == 1:
        return y[0]
    return f"CASE WHEN {score} <= {x[0]} THEN {y[0]} WHEN {score} >= {x[-1]} THEN {y[-1]} ELSE {between(0, len(x) - 2)} END"


def calibrated(target: Target, score: str, values: dict[str, str]) -> str:
    """A calibration map's target (calibration/curves.py) at `score` for the segment values
    `values` (field -> SQL expression of its value), as Target computes it."""
    if target.logistic is not None:
        logistic = target.logistic
        clipped = f"least(greatest({score}, {number(LOGIT_CLIP)}), {number(1 - LOGIT_CLIP)})"
        offsets = " + ".join(  # in the map's order, as Logistic adds them
            f"CASE {values.get(name, literal(UNKNOWN))} " + " ".join(f"WHEN {literal(v)} THEN {number(o)}"
                                                                    for v, o in by.items())
            + f" ELSE {number(0.0)} END" for name, by in logistic.offsets.items() if by)
        z = (f"({number(logistic.slope)} * ln({clipped} / ({number(1.0)} - {clipped})) + {number(logistic.intercept)}"
             f"{f' + ({offsets})' if offsets else ''})")
        return (f"CASE WHEN {z} >= {number(0.0)} THEN {number(1.0)} / ({number(1.0)} + exp(-{z})) "
                f"ELSE exp({z}) / ({number(1.0)} + exp({z})) END")
    assert target.curve is not None
    if not target.segment_field or not target.by_value:
        return _curve(target.curve, score)
    own = " ".join(f"WHEN {literal(v)} THEN {_curve(c, score)}" for v, c in sorted(target.by_value.items()))
    return f"CASE {values.get(target.segment_field, literal(UNKNOWN))} {own} ELSE {_curve(target.curve, score)} END"


def calibrated_records(window: tuple[float, float], calibration_map: CalibrationMap, fields: tuple[str, ...],
                       columns: Columns) -> str:
    """Every kept record in the window with its cohort, raw score, the map's segment values (v0,
    v1, ...) and its calibrated figures (p: p_good, e: expected_human). A map field that the pass
    does not read is `unknown`, as the labelled rows give it."""
    names = {name: f"v{i}" for i, name in enumerate(calibration_map.fields)}
    values = "".join(f", {segment_value(name, columns) if name in fields else literal(UNKNOWN)} AS {column}"
                     for name, column in names.items())
    p_good = calibrated(calibration_map.p_good, "overall", names)
    expected = calibrated(calibration_map.expected_human, "overall", names)
    return f"""
SELECT *, {p_good} AS p, {expected} AS e
FROM (SELECT {COHORT} AS cohort, overall{values} FROM kept WHERE {in_window(window)}) AS valued"""


def calibrated_cohorts(window: tuple[float, float], calibration_map: CalibrationMap, fields: tuple[str, ...],
                       columns: Columns) -> Query:
    """Per cohort, in the window: the sum and the sum of squares of the calibrated score (p_good)
    and of the expected human score over every request, summed exactly (EXACT): the calibrated
    predictors of the quality of all traffic (analysis/calibrated.py)."""
    sums = ", ".join(f"CAST(sum(CAST({e} AS {EXACT})) AS DOUBLE)" for column in ("p", "e")
                     for e in (column, f"{column} * {column}"))
    return Query(f"""
SELECT cohort, {sums}
FROM ({calibrated_records(window, calibration_map, fields, columns)}) AS mapped
GROUP BY 1 ORDER BY 1""", ("kept",))


def _side(change_sides: ChangeSides, columns: Columns) -> str:
    """'c' (control), 't' (treatment) or NULL per record: in the change's time range and segment,
    the arm of an A/B change, else before or after a before/after change's effective time."""
    change = change_sides.change
    conditions = [f"moment >= {change_sides.low!r}", f"moment < {change_sides.high!r}"]
    conditions += [f"{columns[key]} IS NOT DISTINCT FROM {literal(expected)}" for key, expected in change_sides.segment]
    if change.variant_field:
        arm = columns[change.variant_field]
        side = (f"CASE WHEN {arm} = {literal(change.control)} THEN 'c' "
                f"WHEN {arm} = {literal(change.treatment)} THEN 't' END")
    else:
        side = f"CASE WHEN moment < {change_sides.effective!r} THEN 'c' ELSE 't' END"
    return f"CASE WHEN {' AND '.join(conditions)} THEN {side} END"




def side(change_sides: ChangeSides, columns: Columns) -> Query:
    """Per side of a change and cohort: requests, with explicit feedback, the sum and the sum of
    squares of overall, the first and last moment, thumbs up and thumbs, the human scores and the
    evaluator's scores of the labelled requests in the order read (lists as JSON text: every engine
    returns text alike, where lists come back in its own shape). Per cohort for the quality of all
    traffic on each side (sections.impact)."""
    return Query(f"""
SELECT side, side_cohort, count(*), count(*) FILTER (WHERE explicit), CAST(sum(CAST(overall AS {EXACT})) AS DOUBLE),
       CAST(sum(CAST(overall * overall AS {EXACT})) AS DOUBLE), min(moment), max(moment),
       coalesce(sum(thumbs_up), 0), coalesce(sum(thumbs_up + thumbs_down), 0),
       to_json(array_agg(human ORDER BY position) FILTER (WHERE has_human)),
       to_json(array_agg(overall ORDER BY position) FILTER (WHERE has_human))
FROM (SELECT *, {_side(change_sides, columns)} AS side, {COHORT} AS side_cohort FROM kept) AS sided
WHERE side IS NOT NULL GROUP BY side, side_cohort ORDER BY side, side_cohort""", ("kept",))


def rows(window: tuple[float, float], fields: tuple[str, ...], columns: Columns) -> Query:
    """The requests with a human score in the window, each with its position (in no order: the
    reader puts them in the order read, which an engine would sort with their texts): the kept
    record of such a request is its first (matched.first), so the labelled requests are joined to
    their records by position, not every record to every request with feedback. Then the segment
    fields' values. `votes`: the users' votes where several voted (JSON text)."""
    segments = [segment_value(f, columns) for f in fields]
    return Query(f"""
SELECT l.position, l.request_id, l.moment, l.overall, l.prompt, l.output, l.human, l.n_users, l.cohort,
       to_json(s.signal_kinds), to_json(s.signal_texts), to_json(l.votes), to_json(cm.comments)
       {''.join(f', l.segment_{i}' for i in range(len(fields)))}
FROM (SELECT c.*, m.human, m.n_users, m.votes,
             m.fb_cohort{''.join(f', {e} AS segment_{i}' for i, e in enumerate(segments))}
             , {COHORT} AS cohort
      FROM (SELECT first, human, n_users, votes, fb_cohort FROM matched WHERE has_human) AS m
           JOIN checked AS c ON c.position = m.first
      WHERE {in_window(window)}) AS l
     LEFT JOIN feedback_signals AS s ON s.request_id = l.request_id
     LEFT JOIN feedback_comments AS cm ON cm.request_id = l.request_id""",
                 ("matched", "checked", "feedback_signals", "feedback_comments"))


def columns(fields: tuple[str, ...], sides: list[ChangeSides]) -> Columns:
    """The field columns of `records`: every eval-log field the pass reads (segment fields, change
    segments and A/B arms), as f0, f1, ..."""
    names = [f for f in fields if f != "user_cohort"]
    for change_sides in sides:
        names += [key for key, _ in change_sides.segment]
        if change_sides.change.variant_field:
            names.append(change_sides.change.variant_field)
    return {name: f"f{i}" for i, name in enumerate(dict.fromkeys(names))}


def pass_relations(read_since: float, until: float) -> dict[str, Relation]:
    """The relations of a pass over the records read from read_since to until, by name."""
    return {r.name: r for r in (*FEEDBACK_RELATIONS, checked(read_since, until), SEEN, MATCHED, KEPT)}


def pass_queries(window: tuple[float, float], fields: tuple[str, ...], columns: Columns,
                 sides: list[ChangeSides], threshold: float = 0.7, minimum: int = 30,
                 calibration_map: CalibrationMap | None = None) -> dict[str, Query]:
    """Every result that a pass reads, by name (`side <i>`: the i-th change's sides); `minimum`:
    the labelled requests a segment needs for its quality of all traffic; with a calibration map,
    `calibrated cohorts`."""
    found = {"problems": PROBLEMS, "duplicates": DUPLICATES, "read": READ, "orphans": ORPHANS,
             "cohorts": cohorts(window, threshold), **{f"side {i}": side(s, columns) for i, s in enumerate(sides)},
             "segment cohorts": segment_cohorts(window, fields, columns, minimum),
             "rows": rows(window, fields, columns)}
    if calibration_map is not None:
        found[CALIBRATED_COHORTS] = calibrated_cohorts(window, calibration_map, fields, columns)
    return found


CALIBRATED_COHORTS = "calibrated cohorts"


def create(connection: Any, relation: Relation) -> None:
    """A relation kept by the embedded engine: a temporary table, or a view."""
    kind = "TABLE" if relation.table else "VIEW"
    connection.execute(f"CREATE TEMP {kind} {relation.name} AS {relation.sql}")


# --- rendering --------------------------------------------------------------------------------------
def relations(query: Query, known: dict[str, Relation]) -> list[Relation]:
    """The relations a query reads, each after those it reads."""
    ordered: list[Relation] = []

    def visit(name: str) -> None:
        relation = known[name]
        for needed in relation.reads:
            visit(needed)
        if relation not in ordered:
            ordered.append(relation)

    for name in query.reads:
        visit(name)
    return ordered


def inlined(query: Query, known: dict[str, Relation]) -> str:
    """The query as one statement, its relations as WITH clauses (DuckDB's dialect)."""
    needed = relations(query, known)
    if not needed:
        return query.sql.strip()
    return ("WITH " + ",\n".join(f"{r.name} AS ({r.sql.strip()})" for r in needed) + "\n" + query.sql.strip())


@cache
def _sqlglot():  # type: ignore[no-untyped-def]
    import sqlglot  # only where a query is rendered for another engine

    return sqlglot


def render(sql: str, dialect: str) -> str:
    """A statement of DuckDB's dialect in another one (`trino` for Athena), by sqlglot; DuckDB's
    to_json(x) is Trino's json_format(CAST(x AS JSON))."""
    sqlglot = _sqlglot()
    tree = sqlglot.parse_one(sql, read="duckdb")
    if dialect == "trino":
        def to_json(node: Any) -> Any:
            if isinstance(node, sqlglot.exp.Anonymous) and node.name.upper() == "TO_JSON":
                return sqlglot.exp.JSONFormat(this=sqlglot.exp.cast(node.expressions[0], "JSON"))
            return node

        tree = tree.transform(to_json)
    return tree.sql(dialect=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE)
