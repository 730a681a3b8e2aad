"""Run the Glue job's entry point once per argument list, in one Spark session: several jobs for one JVM
start (spark-submit this file with a JSON list of argument lists). Exits with the worst job's code."""

from __future__ import annotations

import json
import sys

from servicelogs import glue_job

if __name__ == "__main__":
    sys.exit(max([glue_job.main(argv) for argv in json.loads(sys.argv[1])]))
