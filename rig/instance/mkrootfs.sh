#!/bin/bash
# mkrootfs.sh DIR [MIRROR]
#
# Debootstraps a minimal Debian bookworm root filesystem into DIR (which must
# be missing or empty) and prepares it to be booted with systemd-nspawn as a
# simulated EC2 instance: units that slow a container's boot or fail in one are
# masked, journald forwards to the console so the console log tells what
# happened.
#
# MIRROR defaults to $MKROOTFS_MIRROR, else the first "deb" source of the host
# that serves bookworm (/etc/apt/sources.list.d/*.sources, *.list, then
# /etc/apt/sources.list).
#
# rig/instance.EnsureRootfs runs this script into a temporary directory,
# caches the result under a name derived from this file's content and renames
# it into place atomically; a human can run it directly the same way. Changing
# anything here (the package list, say) changes that name, so the next test
# run builds a fresh rootfs.
set -euo pipefail

SUITE=bookworm
# The packages the instance needs beyond minbase. Keep sorted.
PACKAGES=(
	ca-certificates
	curl
	dbus
	e2fsprogs
	iproute2
	mount
	procps
	systemd
	systemd-sysv
	util-linux
	xfsprogs
)
# Units that slow a container's boot, fail in one, or run periodic jobs that
# would disturb a test. Masked units that are not installed cost nothing.
MASK=(
	apt-daily-upgrade.timer
	apt-daily.timer
	dpkg-db-backup.timer
	e2scrub_all.timer
	e2scrub_reap.service
	fstrim.timer
	systemd-networkd-wait-online.service
	systemd-timesyncd.service
	xfs_scrub_all.timer
)

die() {
	echo "mkrootfs.sh: $*" >&2
	exit 1
}

# host_mirror prints the URI of the host's first enabled deb source for $SUITE.
host_mirror() {
	local f
	shopt -s nullglob
	for f in /etc/apt/sources.list.d/*.sources; do
		# deb822 paragraphs: Types, URIs, Suites, Enabled.
		awk -v suite="$SUITE" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" && uris != "") {
					split(uris, u, " "); print u[1]; found = 1; exit
				}
				types = ""; suites = ""; uris = ""; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
			}
			END { if (!found) flush() }
		' "$f" | head -n1
	done
	for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
		[ -f "$f" ] || continue
		# deb [opts] URI SUITE COMPONENTS...
		awk -v suite="$SUITE" '
			$1 != "deb" { next }
			{ i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ } }
			$(i + 1) == suite { print $i; exit }
		' "$f"
	done
}

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: mkrootfs.sh DIR [MIRROR]"
DIR=$1
MIRROR=${2:-${MKROOTFS_MIRROR:-}}
if [ -z "$MIRROR" ]; then
	MIRROR=$(host_mirror | head -n1)
	[ -n "$MIRROR" ] || die "no deb source for $SUITE in /etc/apt/sources.list.d or /etc/apt/sources.list; pass MIRROR"
fi
[ "$(id -u)" = 0 ] || die "must run as root"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
	die "$DIR is not empty"
fi
mkdir -p "$DIR"
# The directory becomes the container's /: make it world-readable even when
# the caller created it with mktemp.
chmod 0755 "$DIR"

echo "mkrootfs.sh: debootstrap $SUITE from $MIRROR into $DIR" >&2
include=$(IFS=,; echo "${PACKAGES[*]}")
debootstrap --variant=minbase --include="$include" "$SUITE" "$DIR" "$MIRROR"

# Unit masks and settings for running under systemd-nspawn.
for u in "${MASK[@]}"; do
	ln -sfn /dev/null "$DIR/etc/systemd/system/$u"
done
# The console log is what a failing test shows: the journal goes there
# (every service's output, and systemd's own messages), and systemd's
# coloured status lines, which would repeat its messages, do not.
mkdir -p "$DIR/etc/systemd/journald.conf.d" "$DIR/etc/systemd/system.conf.d"
cat >"$DIR/etc/systemd/journald.conf.d/50-rig-console.conf" <<'CONF'
[Journal]
ForwardToConsole=yes
MaxLevelConsole=info
CONF
cat >"$DIR/etc/systemd/system.conf.d/50-rig-console.conf" <<'CONF'
[Manager]
ShowStatus=no
CONF
# The machine name given to systemd-nspawn -M is the hostname.
rm -f "$DIR/etc/hostname"
# debootstrap copies the host's resolv.conf; nspawn provides its own.
rm -f "$DIR/etc/resolv.conf"
chroot "$DIR" apt-get clean
rm -rf "$DIR/var/lib/apt/lists/"* "$DIR/var/log/"*.log "$DIR/var/cache/debconf/"*-old
echo "mkrootfs.sh: done: $DIR" >&2
