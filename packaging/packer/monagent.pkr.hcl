# monagent: Packer template FRAGMENT (HCL2) that installs monagent's package
# into an AMI. It is not a whole template and is not run in this
# repository (Packer is not available here): copy it beside your AMI
# template (the one with the `packer {}` block and your amazon-ebs source,
# named below) and build the package first with `make package` (dist/):
#
#   packer build -var monagent_package=dist/monagent-1.2.3-1.x86_64.rpm .
#
# It uploads the .deb or .rpm and installs it with apt-get or dnf, which
# run dpkg -i / rpm -i and also fetch its dependencies and recommended
# packages (util-linux, mount; xfsprogs and e2fsprogs for the volume step).
# The package enables monagent.service and monagent-reconcile.timer without
# starting them: nothing runs on the build instance; monagent runs from the
# first boot of an instance launched from the AMI.
#
# /etc/monagent/config.yaml is left as the package installed it (the
# commented example, a conffile / %config(noreplace)). The real
# configuration is either written by user-data before `exec monagent
# bootstrap` (packaging/README.md), or baked by adding a file provisioner
# of your own after this one, for example:
#
#   provisioner "file" {
#     source      = "config/monitoring-production.yaml"
#     destination = "/tmp/monagent-config.yaml"
#   }
#   provisioner "shell" {
#     inline = ["sudo install -m 0600 -o root -g root /tmp/monagent-config.yaml /etc/monagent/config.yaml"]
#   }
#
# Package upgrades never overwrite an edited /etc/monagent/config.yaml.

variable "monagent_package" {
  type        = string
  description = "Path of the monagent .deb or .rpm built by `make package` (dist/...)."
  validation {
    condition     = can(regex("\\.(deb|rpm)$", var.monagent_package))
    error_message = "The monagent_package variable must name a .deb or an .rpm file."
  }
}

locals {
  monagent_remote_package = "/tmp/${basename(var.monagent_package)}"
}

build {
  # Your AMI's source, defined in your own template, for example
  #   source "amazon-ebs" "monitoring" { ami_name = "monitoring-{{timestamp}}" ... }
  sources = ["source.amazon-ebs.monitoring"]

  provisioner "file" {
    source      = var.monagent_package
    destination = local.monagent_remote_package
  }

  provisioner "shell" {
    environment_vars = [
      "MONAGENT_PACKAGE=${local.monagent_remote_package}",
    ]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E bash '{{ .Path }}'"
    inline = [
      "set -euo pipefail",
      "case \"$MONAGENT_PACKAGE\" in",
      "*.deb)",
      "  export DEBIAN_FRONTEND=noninteractive",
      "  timeout 600 apt-get update || { echo \"monagent: apt-get update failed\" >&2; exit 1; }",
      "  timeout 600 apt-get install -y \"$MONAGENT_PACKAGE\" || { echo \"monagent: apt-get install $MONAGENT_PACKAGE failed\" >&2; exit 1; } ;;",
      "*.rpm)",
      "  timeout 600 dnf install -y \"$MONAGENT_PACKAGE\" || { echo \"monagent: dnf install $MONAGENT_PACKAGE failed\" >&2; exit 1; } ;;",
      "esac",
      "rm -f \"$MONAGENT_PACKAGE\"",
      "/usr/bin/monagent version",
      "for u in monagent.service monagent-reconcile.timer; do",
      "  [ \"$(systemctl is-enabled \"$u\")\" = enabled ] || { echo \"monagent: $u is not enabled\" >&2; exit 1; }",
      "  if systemctl is-active --quiet \"$u\"; then echo \"monagent: $u is running on the build instance\" >&2; exit 1; fi",
      "done",
      "# Every instance starts with an empty /var/lib/monagent: its first run is its first boot.",
      "rm -f /var/lib/monagent/state.json",
    ]
  }
}
