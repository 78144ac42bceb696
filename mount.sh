#!/usr/bin/env bash
# Fresh Debian machine: install simfs and what it needs, then mount a target configfs.
#
#   ./mount.sh [MOUNTPOINT]      install (once) and mount, default /mnt/configfs
#   ./mount.sh --install-only    install only
#
# simfs goes into a virtual environment of its own (.venv in this folder) made from the
# system's python3 with its packages visible, so Debian's externally managed python3 is
# never touched by pip. `simfs` is linked onto PATH. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_need PKG...: install the Debian packages that are missing (apt-get update once).
apt_need() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  echo "mount.sh: installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The system's python3, not whatever python3 comes first on PATH: simfs's runtime packages
# (fusepy, sortedcontainers) come from Debian where it has them.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)

apt_need fuse3 libfuse2 python3-venv python3-fusepy python3-sortedcontainers \
  python3-gi python3-dbus

# install_simfs [EXTRAS]: the venv, simfs installed in it (editable: this checkout is the code).
install_simfs() {
  local spec=. stamp
  [ -n "${1:-}" ] && spec=".[$1]"
  [ -x .venv/bin/python ] || "$py" -m venv --system-site-packages .venv
  stamp=.venv/.simfs-installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${1:-base}
  if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
    touch "$stamp"
  fi
  local bindir=/usr/local/bin
  [ "$(id -u)" = 0 ] || { bindir=$HOME/.local/bin; mkdir -p "$bindir"; }
  ln -sf "$here/.venv/bin/simfs" "$bindir/simfs"
}

if [ "${1:-}" = --install-only ]; then install_simfs "${2:-}"; exit 0; fi
install_simfs
MP=${1:-/mnt/configfs}
mkdir -p "$MP"
"$here/.venv/bin/simfs" mount "$MP"
