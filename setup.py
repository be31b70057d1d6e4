"""Builds the optional C extension ``takefive._speedups`` (src/takefive/_speedups.c).

Everything else is in pyproject.toml. The extension is optional: without a C compiler
(or with TAKEFIVE_NO_EXTENSIONS=1 in the environment) takefive installs as pure Python
and takefive.wire uses its Python code, which the extension only makes faster.
"""

import os

from setuptools import Extension, setup

extensions = []
if not os.environ.get("TAKEFIVE_NO_EXTENSIONS"):
    extensions.append(
        Extension("takefive._speedups", ["src/takefive/_speedups.c"], optional=True)
    )

setup(ext_modules=extensions)
