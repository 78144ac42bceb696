#!/usr/bin/env bash
# Fresh machine: install what simfs needs, then mount a target configfs.
set -euo pipefail
MP=${1:-/mnt/configfs}
cd "$(dirname "$0")"
if ! command -v fusermount >/dev/null || ! ldconfig -p | grep -q libfuse.so.2; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 libfuse2
fi
python3 -m pip install -q -e .
mkdir -p "$MP"
simfs mount "$MP"
