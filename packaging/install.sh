#!/bin/bash
# Install monagent into an AMI or a host: binary, config example, systemd
# units. Usage: packaging/install.sh BINARY [DESTDIR]
set -euo pipefail
bin=${1:?usage: install.sh BINARY [DESTDIR]}
dest=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
install -D -m 0755 "$bin" "$dest/usr/bin/monagent"
install -D -m 0644 "$here/systemd/monagent.service" "$dest/etc/systemd/system/monagent.service"
install -D -m 0644 "$here/systemd/monagent-reconcile.timer" "$dest/etc/systemd/system/monagent-reconcile.timer"
# The backup units stay disabled: the operator enables the timer once
# backup.location is set.
install -D -m 0644 "$here/systemd/monagent-backup.service" "$dest/etc/systemd/system/monagent-backup.service"
install -D -m 0644 "$here/systemd/monagent-backup.timer" "$dest/etc/systemd/system/monagent-backup.timer"
install -D -m 0600 "$here/packaging/config.example.yaml" "$dest/etc/monagent/config.example.yaml"
install -D -m 0644 "$here/README.md" "$dest/usr/share/doc/monagent/README.md"
if [ -z "$dest" ] && command -v systemctl >/dev/null; then
	systemctl daemon-reload
	systemctl enable monagent.service monagent-reconcile.timer
fi
