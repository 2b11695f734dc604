"""Monotonic counters kept in the database (the source of truth for /metrics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models


def add_counts(
    model: type[models.Model], key_columns: Sequence[str], counts: Mapping[tuple[Any, ...], int]
) -> None:
    """Add `counts` ({key tuple: n}) to `model.count`, creating missing rows.

    One INSERT ... ON CONFLICT DO UPDATE per key: atomic on SQLite and
    PostgreSQL alike, so concurrent writers never lose an increment or trip
    over each other creating the same row. The model needs a unique
    constraint on exactly `key_columns`.
    """
    if not counts:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in key_columns)
    placeholders = ", ".join(["%s"] * (len(key_columns) + 1))
    sql = (
        f"INSERT INTO {table} ({columns}, count) VALUES ({placeholders}) "
        f"ON CONFLICT ({columns}) DO UPDATE SET count = {table}.count + excluded.count"
    )
    # Sorted keys: concurrent transactions lock rows in the same order (no deadlock).
    params = [(*key, n) for key, n in sorted(counts.items())]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def add_values(
    model: type[models.Model],
    key_columns: Sequence[str],
    value_columns: Sequence[str],
    rows: Mapping[tuple[Any, ...], Sequence[float]],
) -> None:
    """Like add_counts, for several value columns at once (e.g. a count and a sum)."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    keys = ", ".join(quote(c) for c in key_columns)
    values = ", ".join(quote(c) for c in value_columns)
    placeholders = ", ".join(["%s"] * (len(key_columns) + len(value_columns)))
    updates = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in value_columns)
    sql = (
        f"INSERT INTO {table} ({keys}, {values}) VALUES ({placeholders}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    )
    params = [(*key, *vals) for key, vals in sorted(rows.items())]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
