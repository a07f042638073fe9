#!/bin/sh
# The builder stage of the gpulse image (Containerfile, and make image, which builds the same
# file): installs the agent from the source tree SRC into a virtualenv at PREFIX with the
# compiled hot path, then removes the build tools from it.
#
#   build-agent.sh PREFIX SRC [WHEELS]
#
# WHEELS, when it is a folder of wheels, is the only package source (no index): make image
# fills it on the host, so the build itself needs no network.
set -eu
prefix=$1 src=$2 wheels=${3:-}

python3 -m venv "$prefix"
py="$prefix/bin/python"
set -- --quiet --no-cache-dir --disable-pip-version-check
if [ -n "$wheels" ] && [ -d "$wheels" ]; then
  set -- "$@" --no-index --find-links "$wheels"
fi
"$py" -m pip install "$@" "setuptools>=77" wheel "cython>=3.0"
# --no-build-isolation: the build tools above are the ones used, offline included.
"$py" -m pip install "$@" --no-build-isolation "$src"
# The image promises the compiled kernels: a build that fell back to the pure twins fails here.
"$py" -c 'import sys, gpulse.kernels as k; sys.exit(0 if k.EXTENSIONS_LOADED else "gpulse: extensions did not build")'
# Keep gpulse and what it needs at run time; the build tools and their dependencies go.
extra=$("$py" - <<'PY'
import importlib.metadata as md
import re

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

need, todo = set(), ["gpulse"]
while todo:
    dist = norm(todo.pop())
    if dist in need:
        continue
    need.add(dist)
    try:
        reqs = md.requires(dist) or []
    except md.PackageNotFoundError:
        continue
    todo += [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in reqs if "extra ==" not in r]
print(" ".join(sorted({norm(d.metadata["Name"]) for d in md.distributions()} - need - {"pip"})))
PY
)
# shellcheck disable=SC2086 # a list of names
"$py" -m pip uninstall --quiet --yes $extra pip
rm -rf "$prefix"/include "$prefix"/share
find "$prefix" -name '*.so' -exec strip --strip-unneeded {} + 2>/dev/null || true
