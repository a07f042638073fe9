"""Builds ext/*.pyx into gpulse._<name> when Cython and a C++17 compiler are available.

The source folder is agent/, installed as the import package `gpulse`. Without Cython, a
compiler or Python's headers the package still installs: setup.py says so in one warning
and gpulse.kernels falls back to the pure twins (GPULSE_NO_EXTENSIONS=1 skips the build).
C++ because the encoder formats doubles with std::to_chars (shortest round-trip, no locale).
The extensions are translated and compiled in parallel, one job per CPU.
"""

import glob
import multiprocessing
import os
import shutil
import sys
import sysconfig

from setuptools import find_namespace_packages, setup
from setuptools.command.build_ext import build_ext

# Namespace discovery lists the data folders (identity/data, sim/scenarios) too, as setuptools asks.
PACKAGES = ["gpulse" + p[len("agent"):]
            for p in find_namespace_packages(include=["agent", "agent.*"], exclude=["*.__pycache__"])]
JOBS = max(1, min(len(glob.glob("ext/_*.pyx")) or 1, os.cpu_count() or 1))


def _warn(reason: str) -> None:
    print(f"gpulse: warning: {reason}: extensions not built; the agent runs on its pure-Python twins",
          file=sys.stderr)


def _missing_tool(compiler) -> str:
    """The first compiler or linker command of `compiler` that is not on PATH, else ''."""
    for attr in ("compiler_so", "compiler_cxx", "linker_so"):
        cmd = getattr(compiler, attr, None)
        if cmd and shutil.which(cmd[0]) is None:
            return cmd[0]
    return ""


class BuildExt(build_ext):
    """build_ext in parallel that falls back to the pure twins, with one warning, when the
    machine cannot compile: no C++ compiler, no Python headers, or a failed compile."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = JOBS

    def build_extensions(self) -> None:
        headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
        missing = _missing_tool(self.compiler)
        if missing:
            return self._fall_back(f"C++ compiler {missing!r} not found (install g++, or set CC and CXX)")
        if not os.path.exists(headers):
            return self._fall_back(f"Python headers not found ({headers}; install python3-dev)")
        try:
            super().build_extensions()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means the same fallback
            self._fall_back(f"compiling failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")

    def _fall_back(self, reason: str) -> None:
        _warn(reason)
        self.fell_back = True
        for ext in self.extensions:  # an earlier build's modules would shadow the twins with old code
            path = self.get_ext_fullpath(ext.name)
            if os.path.exists(path):
                os.remove(path)

    def copy_extensions_to_source(self) -> None:
        if not getattr(self, "fell_back", False):
            return super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_file, _ = self._get_inplace_equivalent(build_py, ext)
            if os.path.exists(inplace_file):
                os.remove(inplace_file)


ext_modules = []
if os.environ.get("GPULSE_NO_EXTENSIONS", "") in ("", "0"):
    try:
        from Cython.Build import cythonize
    except ImportError:
        if "build_ext" in sys.argv:
            _warn("Cython not installed")
    else:
        from setuptools import Extension

        sources = sorted(glob.glob("ext/_*.pyx"))
        ext_modules = cythonize(
            [
                Extension(
                    "gpulse." + os.path.basename(p)[:-4],
                    [p],
                    language="c++",
                    # -g0: Python's own CFLAGS ask for debug info, 7x the size of the module.
                    extra_compile_args=["-O2", "-g0", "-std=c++17"],
                )
                for p in sources
            ],
            language_level=3,
            quiet=True,
            # Cython's worker processes re-run nothing only when forked (3.14 defaults to forkserver).
            nthreads=JOBS if JOBS > 1 and multiprocessing.get_all_start_methods()[0] == "fork" else 0,
        )

setup(packages=PACKAGES, package_dir={"gpulse": "agent"}, ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
