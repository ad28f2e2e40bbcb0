-- The current state of one table from its bronze changes, in Spark SQL: the same
-- rows as `edge-agent lake silver` (the Delta engine) builds, recomputed in full.
--
-- Reads the view `bronze`: every bronze file of one (source, table), schemas merged
-- (spark.read.option("mergeSchema", "true").parquet(...)). Placeholders, filled by
-- edge_agent/lake/silver_spark.py (or by hand):
--   {key}      the primary-key columns, back-quoted, comma-separated
--   {names}    every table column, back-quoted, comma-separated
--   {columns}  the same, except that a column a logical-mode update may leave out
--              (`_unchanged`) is given as the expression that takes the key's
--              previous value (see silver_spark.py)
--
-- Per device: a `t` marker forgets every earlier change of the table; then the last
-- change of each key (by `_pos`) wins, and a key whose last change is `d` is gone.
WITH marked AS (
  SELECT *, max(CASE WHEN _op = 't' THEN _pos END) OVER (PARTITION BY _device) AS _last_t
  FROM bronze
),
live AS (
  SELECT * FROM marked WHERE _op <> 't' AND (_last_t IS NULL OR _pos > _last_t)
),
filled AS (
  SELECT _device, _op, _pos, _ts_ms, _unfit, {columns} FROM live
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY _device, {key} ORDER BY _pos DESC) AS _rank
  FROM filled
)
SELECT _device, {names}, _unfit, _pos, _ts_ms FROM ranked WHERE _rank = 1 AND _op <> 'd'
