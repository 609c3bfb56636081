"""SQL functions the SQL compiler relies on, as DDL for the segmenter's migration.

``segmenter.parse_instant(text)`` reads an ISO-8601 date or datetime exactly as
:func:`services.segmenter.rules.python_predicate.parse_instant` does: both use
:data:`INSTANT_PATTERN`, the same range checks and the same arithmetic, so a
trait string is a valid instant on one side exactly when it is on the other.
"""

from __future__ import annotations

from services.segmenter.models import SCHEMA

INSTANT_PATTERN = (
    "([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "(?:[Tt ]([01][0-9]|2[0-3]):([0-5][0-9])"
    "(?::([0-5][0-9])(?:[.]([0-9]{1,9}))?)?"
    "(?:([Zz])|([+-])([01][0-9]|2[0-3])(?::?([0-5][0-9]))?)?)?"
)
"""``YYYY-MM-DD``, optionally ``[T|t| ]HH:MM[:SS[.f{1,9}]]`` and ``Z``/``±HH[[:]MM]``.

Groups: 1 year, 2 month, 3 day, 4 hour, 5 minute, 6 second, 7 fraction, 8 ``Z``,
9 offset sign, 10 offset hours, 11 offset minutes. ASCII digits only; no
backslashes, so it reads the same in Python and in a PostgreSQL string literal.
Fractions beyond microseconds are truncated; no offset means UTC.
"""

PARSE_INSTANT = f"{SCHEMA}.parse_instant"

_PARSE_INSTANT_DDL = f"""
CREATE OR REPLACE FUNCTION {PARSE_INSTANT}(value text)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
DECLARE
    m text[];
    y int;
    mo int;
    wall timestamp;
    offset_minutes int := 0;
    result timestamptz;
BEGIN
    m := regexp_match(value, '^(?:{INSTANT_PATTERN})$');
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    y := m[1]::int;
    mo := m[2]::int;
    IF y < 1 THEN
        RETURN NULL;
    END IF;
    IF m[3]::int > (make_date(y, mo, 1) + interval '1 month')::date - make_date(y, mo, 1) THEN
        RETURN NULL;
    END IF;
    wall := make_timestamp(
        y, mo, m[3]::int,
        coalesce(m[4], '0')::int, coalesce(m[5], '0')::int, coalesce(m[6], '0')::int
    ) + coalesce(rpad(left(m[7], 6), 6, '0')::int, 0) * interval '1 microsecond';
    IF m[9] IS NOT NULL THEN
        offset_minutes := (m[10]::int * 60 + coalesce(m[11], '0')::int)
            * CASE m[9] WHEN '-' THEN -1 ELSE 1 END;
    END IF;
    result := (wall AT TIME ZONE 'UTC') - offset_minutes * interval '1 minute';
    IF result < '0001-01-01 00:00:00+00'::timestamptz
            OR result > '9999-12-31 23:59:59.999999+00'::timestamptz THEN
        RETURN NULL;
    END IF;
    RETURN result;
END
$fn$
"""

SQL_FUNCTIONS_DDL: list[str] = [_PARSE_INSTANT_DDL.strip()]
"""Statements creating the functions, in order (idempotent: ``CREATE OR REPLACE``)."""

SQL_FUNCTIONS_DROP: list[str] = [f"DROP FUNCTION IF EXISTS {PARSE_INSTANT}(text)"]
"""Statements dropping them, for the migration's downgrade."""
