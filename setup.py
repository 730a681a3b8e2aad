"""The compiled part of servicelogs; everything else is declared in pyproject.toml.

The bulk tokenizer of the line grammars (engines/_delimited.c) is optional: where it cannot be compiled, the
install goes on and Arrow's CSV reader tokenizes instead (the same rows, at about half the speed). With
SERVICELOGS_PURE_PYTHON=1 it is left out, for a wheel that installs on any platform and Python (the Glue job's
wheel, servicelogs.deploy: the deploying machine's Python and platform are not the job's).
"""

import os

from setuptools import Extension, setup

native = [
    Extension(
        "servicelogs.engines._delimited",
        ["src/servicelogs/engines/_delimited.c"],
        optional=True,
        extra_compile_args=["-O3"],
    )
]
setup(ext_modules=[] if os.environ.get("SERVICELOGS_PURE_PYTHON") == "1" else native)
