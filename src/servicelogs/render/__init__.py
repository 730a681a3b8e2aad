"""Renderers: neutral declarations → engine and catalog types (Arrow, Hive/Glue, DuckDB, Spark)."""
