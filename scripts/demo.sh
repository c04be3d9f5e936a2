#!/bin/bash
# Runs monagent bootstrap against the built-in simulated instance: awssim
# (IMDSv2, EC2 with a loop-device volume, SSM, CloudFormation, S3) on
# loopback, and a host root under $DEMO_DIR. Then a second run shows that a
# converged host is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
DEMO_DIR=${DEMO_DIR:-/tmp/monagent-demo}
PORT=${PORT:-18090}

CGO_ENABLED=0 go build -trimpath -o bin/monagent ./cmd/monagent
CGO_ENABLED=0 go build -trimpath -o bin/awssim ./cmd/awssim
rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR/root/etc" "$DEMO_DIR/sim"
printf '# demo host fstab\nproc /proc proc defaults 0 0\n' >"$DEMO_DIR/root/etc/fstab"
# The stack bundle is served from the scripts bucket when the fixture sits
# beside the checkout; without it the bucket is simply empty (no step of this
# version reads it).
fixtures=$(cd ../shared/fixtures/seed-stack 2>/dev/null && pwd || true)
if [ -n "$fixtures" ]; then
	sed "s#@FIXTURES@#$fixtures#" scripts/demo-scenario.yaml >"$DEMO_DIR/scenario.yaml"
else
	echo "demo: no ../shared/fixtures/seed-stack beside the checkout: the scripts bucket stays empty"
	sed '/dirs:/,$d' scripts/demo-scenario.yaml >"$DEMO_DIR/scenario.yaml"
fi

./bin/awssim --addr "127.0.0.1:$PORT" --data "$DEMO_DIR/sim" --root "$DEMO_DIR/root" \
	--scenario "$DEMO_DIR/scenario.yaml" >"$DEMO_DIR/awssim.log" 2>&1 &
sim=$!
cleanup() {
	umount "$DEMO_DIR/root/data" 2>/dev/null || true
	kill "$sim" 2>/dev/null && wait "$sim" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/_sim/health" >/dev/null && break; sleep 0.1; done

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=eu-west-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$PORT"
mon() { ./bin/monagent --root "$DEMO_DIR/root" --config scripts/demo-config.yaml --log-format console "$@"; }

echo "== monagent bootstrap (first boot)"
mon bootstrap
echo "== monagent status"
mon status
echo "== CloudFormation events (AWS CLI)"
/usr/bin/aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stack-events \
	--stack-name Monitoring-Compute-production --query 'StackEvents[].[LogicalResourceId,ResourceStatus,ResourceStatusReason]' --output text
echo "== fstab"
cat "$DEMO_DIR/root/etc/fstab"
echo "== monagent reconcile (second run: everything converged, nothing done)"
mon reconcile
echo "== monagent smoke"
mon smoke || true
echo "demo done: host root $DEMO_DIR/root (unmounted on exit)"
