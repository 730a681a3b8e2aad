"""The compiled part of servicelogs; everything else is declared in pyproject.toml.

Two small C modules, both optional: the bulk tokenizer of the line grammars (engines/_delimited.c) and the scan of
a JSON text's shaping bytes (engines/_json_structure.c). Where they cannot be compiled, the install goes on and
Arrow's CSV reader tokenizes, numpy scans, instead (the same rows, at about half the speed). With
SERVICELOGS_PURE_PYTHON=1 it is left out, for a wheel that installs on any platform and Python (the Glue job's
wheel, servicelogs.deploy: the deploying machine's Python and platform are not the job's).
"""

import os

from setuptools import Extension, setup

native = [
    Extension(
        f"servicelogs.engines.{name}", [f"src/servicelogs/engines/{name}.c"], optional=True, extra_compile_args=["-O3"]
    )
    for name in ("_delimited", "_json_structure")
]
setup(ext_modules=[] if os.environ.get("SERVICELOGS_PURE_PYTHON") == "1" else native)
