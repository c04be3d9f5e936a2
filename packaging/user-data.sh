#!/bin/bash
# Minimal EC2 user-data: monagent is baked into the AMI with its config at
# /etc/monagent/config.yaml. Bootstrap attaches and mounts the data volume,
# sends the CloudFormation signal (FAILURE at once if anything before it
# fails), then installs Docker and brings the stack up.
set -euo pipefail
exec /usr/bin/monagent bootstrap --config /etc/monagent/config.yaml
