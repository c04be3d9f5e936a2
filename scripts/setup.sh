#!/bin/bash
# Installs what the tests and the demo need on a fresh Debian 12 machine.
# Idempotent: installs only what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
have mkfs.xfs /usr/sbin/mkfs.xfs || need+=(xfsprogs)
have mkfs.ext4 /usr/sbin/mkfs.ext4 || need+=(e2fsprogs)
have losetup /usr/sbin/losetup || need+=(util-linux)
have sfdisk /usr/sbin/sfdisk || need+=(fdisk)
[ -x /usr/bin/aws ] || need+=(awscli)
have curl /usr/bin/curl || need+=(curl)
have systemd-analyze /usr/bin/systemd-analyze || need+=(systemd)
have flock /usr/bin/flock || need+=(util-linux)
have rpm /usr/bin/rpm || need+=(rpm)
have age /usr/bin/age || need+=(age)
if [ ${#need[@]} -gt 0 ]; then
	echo "setup: installing ${need[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: run as root (loop devices, mount and apt need it)" >&2
		exit 1
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		export PATH=/usr/local/go/bin:$PATH
	else
		echo "setup: Go is not installed (want Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod"))" >&2
		exit 1
	fi
fi
# Loop devices: the kernel makes them on demand through /dev/loop-control.
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null || true
[ -e /dev/loop-control ] || { echo "setup: no /dev/loop-control: loop devices are required" >&2; exit 1; }
