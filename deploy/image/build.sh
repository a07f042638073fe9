#!/bin/bash
# Builds the gpulse image without a container registry and writes it as an OCI archive:
#
#   deploy/image/build.sh build/image/gpulse-0.1.0.oci.tar      (make image runs this)
#
# 1. Debian bases from mmdebstrap (minbase): a builder with python3-dev and g++, a runtime
#    with python3; each made an image by `buildah from scratch` + `buildah add` + `buildah
#    commit`, and kept in the store below under a tag that hashes its recipe, so later builds
#    in this checkout reuse them.
# 2. The wheels of the agent's dependencies, downloaded on this machine with its own pip
#    configuration for the bases' Python.
# 3. The Containerfile at the repository root, built by buildah on those two bases with
#    nothing fetched: the same recipe `podman build .` follows with the pinned python:slim.
#
# Needs root, mmdebstrap, buildah, a Debian mirror (deb.debian.org, or DEBIAN_MIRROR) and the
# package index pip is configured with.
# Environment: PYTHON (a Python with pip and gpulse installed; default .venv/bin/python),
# DEBIAN_SUITE (bookworm), DEBIAN_MIRROR, IMAGE_STORE (build/image/store).
set -euo pipefail

out=${1:?usage: deploy/image/build.sh OUT.oci.tar}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
python=${PYTHON:-.venv/bin/python}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-}
store=${IMAGE_STORE:-build/image/store}
case $store in /*) ;; *) store=$root/$store ;; esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
name=ghcr.io/gpulse/gpulse:$version
case $suite in
  bookworm) pyver=3.11 ;;
  trixie) pyver=3.13 ;;
  *) echo "build.sh: DEBIAN_SUITE=$suite: its Python version is not known here (bookworm, trixie)" >&2; exit 2 ;;
esac

die() { echo "build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap and buildah's vfs store run as root)"
for tool in mmdebstrap buildah; do
  command -v $tool >/dev/null || die "$tool not found (apt-get install mmdebstrap buildah podman runc)"
done

buildah=(buildah --root "$store" --runroot "$store.run" --storage-driver vfs)
work=$(mktemp -d /var/tmp/gpulse-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { printf '%s %s\n' "$(date +%T)" "$*"; }

# --- 1. bases -------------------------------------------------------------------------------
# usrmerge would pull in perl; the merged-usr hook lays out /usr without it.
hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
base() {  # base NAME PACKAGES -> prints the image tag, building it when the store lacks it
  local tag key tar ctr
  key=$(printf '%s\n' "$suite" "$mirror" "$2" "${hooks[*]}" "$(mmdebstrap --version)" | sha256sum | cut -c1-12)
  tag=localhost/gpulse-base-$1:$key
  if ! "${buildah[@]}" inspect --type image "$tag" >/dev/null 2>&1; then
    step "mmdebstrap $suite $1 base: $2" >&2
    tar=$work/$1.tar
    mmdebstrap --quiet --variant=minbase "${hooks[@]}" --include="$2" "$suite" "$tar" ${mirror:+"$mirror"} \
      </dev/null >"$work/$1.log" 2>&1 || { tail -20 "$work/$1.log" >&2; die "mmdebstrap $1 base failed"; }
    ctr=$("${buildah[@]}" from scratch)
    "${buildah[@]}" add "$ctr" "$tar" / >/dev/null
    "${buildah[@]}" commit --quiet --rm "$ctr" "$tag" >/dev/null
    rm -f "$tar"
  fi
  echo "$tag"
}
builder=$(base builder python3,python3-venv,python3-dev,g++)
runtime=$(base runtime python3,ca-certificates)

# --- 2. wheels for the bases' Python ----------------------------------------------------------
step "wheels for CPython $pyver"
reqs=$("$python" -c 'import importlib.metadata as m; print("\n".join(r for r in m.requires("gpulse") if "extra ==" not in r))') \
  || die "$python has no gpulse installed (make runtime)"
platforms=(--platform manylinux2014_x86_64)
for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
mkdir -p build/image/wheels
# shellcheck disable=SC2046 # one requirement per line
"$python" -m pip download --quiet --disable-pip-version-check --dest build/image/wheels --only-binary=:all: \
  --python-version "$pyver" --implementation cp --abi "cp${pyver/./}" --abi abi3 --abi none "${platforms[@]}" \
  "setuptools>=77" wheel "cython>=3.0" $(echo "$reqs" | sed 's/ //g') 2>&1 | grep -v 'is ignored' >&2 || true
ls build/image/wheels/grpcio-*.whl >/dev/null 2>&1 || die "pip download found no grpcio wheel for CPython $pyver"

# --- 3. the Containerfile, offline ------------------------------------------------------------
# Offline because nothing in it fetches: pip takes only the wheels (--no-index), and the
# builder base has g++. (Chroot isolation cannot take --network none; it shares the host's.)
# The context: the source tree as git sees it (tracked and untracked, not ignored) plus the wheels.
ctx=$work/context
mkdir -p "$ctx/build"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$ctx" -xf -
else
  tar --exclude=./build --exclude=./.venv --exclude=./.git -cf - . | tar -C "$ctx" -xf -
fi
cp -r build/image/wheels "$ctx/build/wheels"
# Up to date when the archive was built from the same context and bases.
inputs=$({ echo "$builder $runtime"; (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } \
  | sha256sum | cut -c1-16)
if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ] && \
   "${buildah[@]}" inspect --type image "$name" >/dev/null 2>&1; then
  step "$out is up to date"
  exit 0
fi
step "buildah bud Containerfile -> $name"
"${buildah[@]}" bud --quiet --isolation chroot --network host --layers=false \
  --build-arg BUILDER_BASE="$builder" --build-arg RUNTIME_BASE="$runtime" --build-arg VERSION="$version" \
  -f "$ctx/Containerfile" -t "$name" "$ctx" >/dev/null
mkdir -p "$(dirname "$out")"
rm -f "$out" "$out.inputs"
"${buildah[@]}" push --quiet "$name" "oci-archive:$out:$name"
echo "$inputs" >"$out.inputs"
"${buildah[@]}" rmi --prune >/dev/null 2>&1 || true  # the previous build, now untagged
size=$("${buildah[@]}" images --format '{{.Size}}' "$name")
step "$out: $name, $size unpacked, $(du -h "$out" | cut -f1) archive"
