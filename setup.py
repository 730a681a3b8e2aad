"""The compiled part of servicelogs; everything else is declared in pyproject.toml.

The bulk tokenizer of the line grammars (engines/arrow_parse.NativeTokenizer) is optional: where it cannot be
compiled, the install goes on and Arrow's CSV reader tokenizes instead (the same rows, at about half the speed).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "servicelogs.engines._delimited",
            ["src/servicelogs/engines/_delimited.c"],
            optional=True,
            extra_compile_args=["-O3"],
        )
    ]
)
