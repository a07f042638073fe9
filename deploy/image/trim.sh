#!/bin/sh
# Trims the runtime root filesystem of the gpulse image to what the agent runs on: the last
# step of the runtime stage in Containerfile, whichever base it is given (python:slim or
# make image's Debian minbase). Packages go through dpkg so the package database stays
# true for image scanners; plain files that no package owns are deleted.
set -eu

# The package manager's front end and perl (which only apt's and debconf's scripts use).
# A read-only root filesystem never installs anything, and nothing the agent runs needs
# perl. --force-remove-essential: perl-base is marked essential for building systems.
remove=""
for pkg in apt libapt-pkg6.0 apt-utils debconf debconf-i18n perl perl-modules-5.36 libperl5.36 \
           perl-base usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl \
           e2fsprogs libext2fs2 libss2 logsave; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
    remove="$remove $pkg"
  fi
done
if [ -n "$remove" ]; then
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  dpkg --purge --force-remove-essential --force-depends $remove >/dev/null 2>&1 || \
    dpkg --purge --force-all $remove >/dev/null
fi

# Documentation, manuals, translations: nobody reads them in a DaemonSet pod.
rm -rf /usr/share/doc/* /usr/share/man /usr/share/info /usr/share/lintian /usr/share/common-licenses
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# glibc's iconv modules: Python decodes with its own codecs.
rm -rf /usr/lib/*-linux-gnu/gconv
# Python's installer and the parts of the standard library for people at a keyboard.
for lib in /usr/lib/python3.* /usr/local/lib/python3.*; do
  [ -d "$lib" ] || continue
  rm -rf "$lib"/ensurepip "$lib"/idlelib "$lib"/tkinter "$lib"/turtledemo "$lib"/turtle.py \
         "$lib"/lib2to3 "$lib"/pydoc_data "$lib"/test "$lib"/unittest/test "$lib"/config-3.*
  rm -rf "$lib"/site-packages/pip* "$lib"/site-packages/setuptools* "$lib"/site-packages/wheel* \
         "$lib"/site-packages/_distutils_hack "$lib"/site-packages/pkg_resources "$lib"/site-packages/distutils-precedence.pth
done
rm -f /usr/local/bin/pip* /usr/local/bin/idle3* /usr/local/bin/pydoc3* /usr/local/bin/2to3*
# Caches and logs of the build.
rm -rf /var/lib/apt /var/cache/apt /var/cache/debconf /var/cache/ldconfig/aux-cache /var/log/* /tmp/* /root/.cache
