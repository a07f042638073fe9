"""Builds ext/*.pyx into agent._<name> when Cython and a C compiler are available.

Without them the package still installs: agent.kernels falls back to the pure twins.
"""

import glob
import os

from setuptools import setup

ext_modules = []
if os.environ.get("GPULSE_NO_EXTENSIONS", "") in ("", "0"):
    try:
        from Cython.Build import cythonize
        from setuptools import Extension

        sources = sorted(glob.glob("ext/_*.pyx"))
        ext_modules = cythonize(
            [Extension("agent." + os.path.basename(p)[:-4], [p], extra_compile_args=["-O2"]) for p in sources],
            language_level=3,
            quiet=True,
        )
    except ImportError:
        ext_modules = []

setup(ext_modules=ext_modules)
