"""Builds ext/*.pyx into gpulse._<name> when Cython and a C++17 compiler are available.

The source folder is agent/, installed as the import package `gpulse`. Without Cython or a
compiler the package still installs: gpulse.kernels falls back to the pure twins.
C++ because the encoder formats doubles with std::to_chars (shortest round-trip, no locale).
"""

import glob
import os

from setuptools import find_packages, setup

PACKAGES = ["gpulse" + p[len("agent"):] for p in find_packages(include=["agent", "agent.*"])]

ext_modules = []
if os.environ.get("GPULSE_NO_EXTENSIONS", "") in ("", "0"):
    try:
        from Cython.Build import cythonize
        from setuptools import Extension

        sources = sorted(glob.glob("ext/_*.pyx"))
        ext_modules = cythonize(
            [
                Extension(
                    "gpulse." + os.path.basename(p)[:-4],
                    [p],
                    language="c++",
                    extra_compile_args=["-O2", "-std=c++17"],
                )
                for p in sources
            ],
            language_level=3,
            quiet=True,
        )
    except ImportError:
        ext_modules = []

setup(packages=PACKAGES, package_dir={"gpulse": "agent"}, ext_modules=ext_modules)
