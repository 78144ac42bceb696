#!/bin/bash
# The seed's v3.0 script end to end, timed, against one kind of tree mounted at
# /sys/kernel/config in a private mount namespace (tests/data/seed-harness.sh's setup).
# Run as: unshare -m bench/seed_bench.sh KIND WORKDIR REPS MAJ:MIN MAJ:MIN MAJ:MIN
# KIND: simfs (simfs mount --profile v3.0) | fusepy (bench/baseline_fs.py, timeouts 0) |
# fusepy-cache (the same with fusepy's default caching) | tmpfs.
# Prints one line per rep: "mount_ns script_ns umount_ns rc".
set -u
KIND=$1 W=$2 REPS=$3
HERE=$(cd "$(dirname "$0")" && pwd)
mount --make-rprivate /
mount -t tmpfs simfs-bench /sys/kernel
mkdir /sys/kernel/config
mount -t tmpfs simfs-bench /dev
mknod -m 666 /dev/null c 1 3
mknod -m 600 /dev/fuse c 10 229
mkdir /dev/lio-test
blk() { mknod -m 660 "$1" b "${2%:*}" "${2#*:}"; }
blk /dev/lio-test/test0 "$4"
blk /dev/sdd "$5"
blk /dev/sde "$6"
mkdir -p "$W/bin"; printf '#!/bin/sh\nexit 0\n' > "$W/bin/modprobe"; chmod +x "$W/bin/modprobe"
MP=/sys/kernel/config
now() { date +%s%N; }
for rep in $(seq 1 "$REPS"); do
  t0=$(now)
  case $KIND in
    simfs) simfs mount --quiet --profile v3.0 --state-dir "$W/state.$rep" $MP || exit 1 ;;
    fusepy|fusepy-cache)
      python3 "$HERE/baseline_fs.py" $([ "$KIND" = fusepy-cache ] && echo --cache) $MP \
        > "$W/baseline.$rep.log" 2>&1 &
      until mountpoint -q $MP; do sleep 0.005; done ;;
    tmpfs)  # plus the default groups configfs would make with each device
      mount -t tmpfs bench $MP
      for d in iblock_0/lvm_test0 pscsi_0/sdd rd_mcp_0/ramdisk fileio_0/fileio; do
        mkdir -p $MP/target/core/$d/attrib $MP/target/core/$d/wwn
      done ;;
  esac
  t1=$(now)
  PATH="$W/bin:$PATH" bash "$W/seed.sh" > "$W/seed.$KIND.$rep.out" 2>&1
  rc=$?
  t2=$(now)
  case $KIND in
    simfs) simfs umount $MP ;;
    fusepy|fusepy-cache) fusermount -u $MP; wait ;;
    tmpfs) umount $MP ;;
  esac
  t3=$(now)
  echo "$((t1 - t0)) $((t2 - t1)) $((t3 - t2)) $rc"
done
