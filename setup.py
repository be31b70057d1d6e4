"""Builds the optional C extensions ``takefive._speedups`` and ``takefive._zmqcall``.

Everything else is in pyproject.toml. The extensions are optional: without a C compiler
(or with TAKEFIVE_NO_EXTENSIONS=1 in the environment) takefive installs as pure Python
and uses its Python code, which the extensions only make faster.
"""

import os

from setuptools import Extension, setup

extensions = []
if not os.environ.get("TAKEFIVE_NO_EXTENSIONS"):
    extensions += [
        # The Mongrel2 wire format and the common Response (see takefive/wire.py).
        Extension("takefive._speedups", ["src/takefive/_speedups.c"], optional=True),
        # Non-blocking libzmq calls for the runner (see takefive/_zmqutil.py). It links
        # nothing: it calls the libzmq pyzmq loaded, found at run time.
        Extension("takefive._zmqcall", ["src/takefive/_zmqcall.c"], optional=True),
    ]

setup(ext_modules=extensions)
