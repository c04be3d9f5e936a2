#!/bin/bash
# Runs monagent bootstrap against the built-in simulated instance, from a
# blank data volume to a running monitoring stack: awssim (IMDSv2, EC2 with a
# loop-device volume, SSM, CloudFormation, S3 with the seed stack bundle, and
# the Compose plugin download) on loopback, a host root under $DEMO_DIR, and
# the real Docker engine running the stack's locally built images. Then a
# second run shows that a converged host is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
DEMO_DIR=${DEMO_DIR:-/tmp/monagent-demo}
PORT=${PORT:-18090}
CACHE=${MONAGENT_RIG_CACHE:-/var/cache/monagent-rig}

fixtures=$(cd ../shared/fixtures/seed-stack 2>/dev/null && pwd) || {
	echo "demo: the seed stack bundle is not beside the checkout (../shared/fixtures/seed-stack)" >&2
	exit 1
}
echo "== rig: Docker engine, Compose plugin, images (cached after the first run)"
rig/docker/dockerd.sh ensure
plugin=$(rig/docker/compose-plugin.sh)
rig/images/build.sh --no-plugin >/dev/null

CGO_ENABLED=0 go build -trimpath -o bin/monagent ./cmd/monagent
CGO_ENABLED=0 go build -trimpath -o bin/awssim ./cmd/awssim

# The seed stack publishes fixed host ports: one copy at a time on this
# machine, shared with the rig's own stack test.
mkdir -p "$CACHE"
exec 9>"$CACHE/seed-stack-test.lock"
flock -w 900 9 || { echo "demo: another seed stack run holds $CACHE/seed-stack-test.lock" >&2; exit 1; }

cleanup() {
	if [ -d "$DEMO_DIR/root/opt/monitoring" ]; then
		DOCKER_CONFIG="$DEMO_DIR/root/usr/local/lib/docker" docker compose --project-name monitoring \
			--project-directory "$DEMO_DIR/root/opt/monitoring" down --volumes >/dev/null 2>&1 || true
	fi
	umount "$DEMO_DIR/root/data" 2>/dev/null || true
	[ -n "${sim:-}" ] && kill "$sim" 2>/dev/null && wait "$sim" 2>/dev/null || true
}
cleanup
rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR/root/etc" "$DEMO_DIR/sim" "$DEMO_DIR/files"
printf '# demo host fstab\nproc /proc proc defaults 0 0\n' >"$DEMO_DIR/root/etc/fstab"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$DEMO_DIR/root/etc/passwd"
cp "$plugin" "$DEMO_DIR/files/docker-compose"
sha=$(sha256sum "$plugin" | cut -d' ' -f1)
sed "s#@FIXTURES@#$fixtures#" scripts/demo-scenario.yaml >"$DEMO_DIR/scenario.yaml"
sed "s#@PORT@#$PORT#; s#@PLUGIN_SHA256@#$sha#" scripts/demo-config.yaml >"$DEMO_DIR/config.yaml"

./bin/awssim --addr "127.0.0.1:$PORT" --data "$DEMO_DIR/sim" --root "$DEMO_DIR/root" \
	--scenario "$DEMO_DIR/scenario.yaml" --files "$DEMO_DIR/files" >"$DEMO_DIR/awssim.log" 2>&1 &
sim=$!
trap cleanup EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/_sim/health" >/dev/null && break; sleep 0.1; done

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=eu-west-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$PORT"
mon() { ./bin/monagent --root "$DEMO_DIR/root" --config "$DEMO_DIR/config.yaml" --log-format console "$@"; }

echo "== monagent bootstrap (first boot)"
start=$(date +%s.%N)
mon bootstrap
echo "== boot to a running stack: $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s"
echo "== monagent status"
mon status
echo "== CloudFormation events (AWS CLI)"
/usr/bin/aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stack-events \
	--stack-name Monitoring-Compute-production --query 'StackEvents[].[LogicalResourceId,ResourceStatus,ResourceStatusReason]' --output text
echo "== containers"
docker ps --filter label=com.docker.compose.project=monitoring --format 'table {{.Names}}\t{{.Status}}'
echo "== monagent reconcile (second run: everything converged, nothing done)"
mon reconcile
echo "== monagent smoke"
mon smoke || true
echo "demo done: host root $DEMO_DIR/root; the stack is taken down and /data unmounted on exit"
