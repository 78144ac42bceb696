#!/usr/bin/env bash
# Fresh Debian machine (root): install every tool the tests use — Debian packages for the
# real clients and peers, pytest and friends in simfs's own virtual environment — then run
# the whole suite. Arguments go to pytest (./test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in fuse3 libfuse2 python3-venv python3-fusepy python3-psutil \
         python3-sortedcontainers python3-gi python3-dbus util-linux mount psmisc procps \
         sg3-utils libiscsi-bin targetcli-fb dbus graphviz librsvg2-bin \
         tgt qemu-utils qemu-block-extra ceph-mon ceph-osd python3-rbd python3-rados; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} != 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

./mount.sh --install-only test
export PATH="$PWD/.venv/bin:$PATH"
examples=0
if [ $# = 0 ]; then
  # the example project (a tool tested with simfs's pytest fixtures) is a project of its
  # own, with its own pytest root: it runs first, the whole suite after it
  .venv/bin/python -m pytest -q -p no:cacheprovider examples/lioexport || examples=$?
fi
.venv/bin/python -m pytest -q "$@" && [ "$examples" = 0 ]
