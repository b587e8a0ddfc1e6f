#!/usr/bin/env bash
# Does this kernel keep what fdatasync acknowledged when the disk beneath starts failing?
#
# The durability hunt of 2026-12-07 found a dkv node (N=1, --fsync always) missing its last 1-3
# acknowledged writes after an ext4 file system in a loop device, whose sparse image sits on a
# tmpfs, filled that tmpfs and failed. This script asks the same of a 40-line program with no
# dkv in it: append 3 KB records, fdatasync after each, count the records acknowledged; when a
# write or fdatasync fails, make room, fsck, mount again, and count the records that are there.
# On this machine (Linux 6.18) the last acknowledged record was gone in every run, on ext4 with
# 1 KiB and 4 KiB blocks and on ext2: the loss is below dkv.
#
# Usage (root: it mounts a tmpfs and sets up a loop device): scripts/faults/loop-over-tmpfs.sh [ext4|ext2] [mkfs flags...]
# Prints "acknowledged N, found M" and exits 1 when M < N.
set -euo pipefail
fs=${1:-ext4}; shift || true
work=$(mktemp -d /tmp/dkv-loop-tmpfs.XXXXXX)
loop=""
cleanup() {
    mountpoint -q "$work/mnt" && umount "$work/mnt"
    [ -n "$loop" ] && losetup -d "$loop"
    mountpoint -q "$work/tmp" && umount "$work/tmp"
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/tmp" "$work/mnt"
mount -t tmpfs -o size=30M tmpfs "$work/tmp"
truncate -s 200M "$work/tmp/img"
loop=$(losetup -f --show "$work/tmp/img")
"mkfs.$fs" -q -F "$@" "$loop" > /dev/null
mount "$loop" "$work/mnt"

# Append records (sequence number, length, payload); fdatasync after each; print the last
# sequence number whose fdatasync returned 0, and why the next failed.
acked=$(python3 - "$work/mnt/journal" <<'PY'
import os, struct, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
payload, seq = b"x" * 3000, 0
while seq < 1_000_000:
    try:
        os.write(fd, struct.pack("<QQ", seq, len(payload)) + payload)
        os.fdatasync(fd)
    except OSError as e:
        print(seq - 1, file=sys.stdout); print(f"record {seq} failed: {e}", file=sys.stderr); break
    seq += 1
PY
)

mount -o remount,size=300M "$work/tmp"
umount "$work/mnt"
"fsck.$fs" -y "$loop" > /dev/null 2>&1 || echo "fsck exit $? (1: errors corrected)"
mount "$loop" "$work/mnt"
found=$(python3 - "$work/mnt/journal" <<'PY'
import struct, sys
data, off, last = open(sys.argv[1], "rb").read(), 0, -1
while off + 16 <= len(data):
    seq, n = struct.unpack_from("<QQ", data, off)
    if seq != last + 1 or data[off + 16 : off + 16 + n] != b"x" * n:
        break
    last, off = seq, off + 16 + n
print(last)
PY
)
echo "acknowledged $((acked + 1)), found $((found + 1)) (records 0..=$acked acknowledged, 0..=$found whole)"
[ "$found" -ge "$acked" ]
