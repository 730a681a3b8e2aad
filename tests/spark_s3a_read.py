"""Read a converted table back with Spark through s3a:// on an S3 endpoint, in its own process (the S3A jars
load when the JVM starts). Prints one JSON document: the schema's field names and, per row in table order,
[source_key, line_number, event time in epoch microseconds, partition values...].

    python tests/spark_s3a_read.py JARS_DIR ENDPOINT s3a://bucket/prefix/table FORMAT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from servicelogs import formats
from servicelogs.render.spark import schema

S3A = {
    "fs.s3a.path.style.access": "true",
    "fs.s3a.connection.ssl.enabled": "false",
    "fs.s3a.access.key": "testing",
    "fs.s3a.secret.key": "testing",
    "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
}


def main(jars: str, endpoint: str, url: str, fmt_name: str) -> None:
    builder = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
    builder = builder.config("spark.jars", ",".join(str(p) for p in sorted(Path(jars).glob("*.jar"))))
    builder = builder.config("spark.sql.session.timeZone", "UTC").config("spark.hadoop.fs.s3a.endpoint", endpoint)
    for key, value in S3A.items():
        builder = builder.config(f"spark.hadoop.{key}", value)
    spark = builder.getOrCreate()
    fmt = formats.get(fmt_name)
    table = spark.read.schema(schema(fmt)).parquet(url)
    columns = ["source_key", "line_number", f"unix_micros({fmt.event_time})", *fmt.partitions]
    rows = table.orderBy("source_key", "line_number").selectExpr(*columns).collect()
    print(json.dumps({"fields": table.schema.fieldNames(), "rows": [list(r) for r in rows]}))
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
