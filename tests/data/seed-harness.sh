#!/bin/bash
# Runs the seed's v3.0 script unchanged, in a private mount namespace (unshare -m):
# simfs is mounted at /sys/kernel/config and /dev holds the nodes the script names,
# each one a loop device. Usage: seed-harness.sh WORKDIR MAJ:MIN MAJ:MIN MAJ:MIN
# (the loop devices standing in for /dev/lio-test/test0, /dev/sdd and /dev/sde).
set -u
W=$1
mount --make-rprivate /
mount -t tmpfs simfs-test /sys/kernel
mkdir /sys/kernel/config
mount -t tmpfs simfs-test /dev
mknod -m 666 /dev/null c 1 3
mknod -m 600 /dev/fuse c 10 229
mkdir /dev/lio-test
blk() { mknod -m 660 "$1" b "${2%:*}" "${2#*:}"; }
blk /dev/lio-test/test0 "$2"
blk /dev/sdd "$3"
blk /dev/sde "$4"
simfs mount --quiet --profile v3.0 --state-dir "$W/state" /sys/kernel/config || exit 1
# No module loading here: simfs is already "loaded", so modprobe succeeds quietly.
mkdir -p "$W/bin"; printf '#!/bin/sh\nexit 0\n' > "$W/bin/modprobe"; chmod +x "$W/bin/modprobe"
PATH="$W/bin:$PATH" bash "$W/seed.sh" > "$W/seed.out" 2>&1
echo "$?" > "$W/seed.rc"
(cd /sys/kernel/config/target/core && find . | sort > "$W/find.txt")
for d in iblock_0/lvm_test0 pscsi_0/sdd rd_mcp_0/ramdisk fileio_0/fileio; do
  cat "/sys/kernel/config/target/core/$d/info" > "$W/info.${d%%/*}"
done
simfs dmesg /sys/kernel/config > "$W/dmesg.txt"
simfs umount /sys/kernel/config
