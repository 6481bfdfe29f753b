"""Quoting for the SQL the analysis writes (DuckDB's dialect): text as a literal, a name as an
identifier."""

from __future__ import annotations


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
