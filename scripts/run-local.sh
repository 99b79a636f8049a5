#!/usr/bin/env bash
# Runs tugboat locally against the AWS emulator, end to end, from a fresh clone:
#   1. installs and starts the emulator (moto, pinned) on a free loopback port;
#   2. builds tugboat and applies the migrations (queues, DLQ, table, topics);
#   3. finds an MQTT broker (127.0.0.1:1883, or starts Mosquitto) with a subscriber on
#      fluxer/aws/#, and starts a local HTTP receiver (scripts/receiver.py);
#   4. starts `tugboat serve` with config/local.toml;
#   5. sends the sample events in samples/ (and one that cannot be decoded), and one event
#      with `aws events put-events` to tugboat's HTTP ingress; a schedule
#      (config/local.toml's heartbeat) fires its first tick as the service starts;
#   6. shows what happened: the journal, the notifications, the MQTT messages, the HTTP
#      deliveries, the resource scan's findings, the dead letters;
#   7. stops tugboat with SIGTERM (a graceful shutdown) and the emulator.
# Pass --keep to leave tugboat and the emulator running afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=false
[ "${1:-}" = "--keep" ] && keep=true

scripts/local-aws.sh stop >/dev/null 2>&1 || true
endpoint="$(scripts/local-aws.sh start)"
echo "== emulator at $endpoint"
export TUGBOAT_CONFIG=config/local.toml
# The key retries, redrives and agent notices are signed with ([security] signing_key): one of
# this run's own, never written to a file.
export TUGBOAT__SECURITY__SIGNING_KEY="${TUGBOAT__SECURITY__SIGNING_KEY:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}"
export TUGBOAT__AWS__ENDPOINT_URL="$endpoint"
export AWS_EC2_METADATA_DISABLED=true

# Cargo shows its progress: a first build compiles the AWS SDK and takes a few minutes.
echo "== cargo build --bin tugboat (a few minutes the first time)"
cargo build --bin tugboat
tugboat=target/debug/tugboat
rm -rf target/local/journal

echo "== tugboat migrate"
$tugboat migrate
echo "== tugboat migrate (again: nothing to change)"
$tugboat migrate

echo "== the demo ECS service: cluster, task definition and target group in the emulator"
aws() { scripts/local-aws.sh aws "$@"; }
vpc="$(aws ec2 describe-vpcs --filters Name=isDefault,Values=true --query 'Vpcs[0].VpcId' --output text)"
subnet="$(aws ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc" --query 'Subnets[0].SubnetId' --output text)"
sg="$(aws ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc" Name=group-name,Values=default --query 'SecurityGroups[0].GroupId' --output text)"
aws ecs create-cluster --cluster-name tugboat-demo >/dev/null
aws ecs register-task-definition --family tugboat-auth --network-mode awsvpc --requires-compatibilities FARGATE \
  --cpu 256 --memory 512 \
  --container-definitions '[{"name":"auth","image":"public.ecr.aws/nginx/nginx:latest","memory":512,"portMappings":[{"containerPort":8080}]}]' >/dev/null
aws elbv2 create-target-group --name tugboat-auth --protocol HTTP --port 8080 --vpc-id "$vpc" --target-type ip >/dev/null
export TUGBOAT__SERVICES__AUTH__SUBNETS="[\"$subnet\"]"
export TUGBOAT__SERVICES__AUTH__SECURITY_GROUPS="[\"$sg\"]"
echo "cluster tugboat-demo, task definition tugboat-auth, target group tugboat-auth (vpc $vpc, subnet $subnet)"

echo "== idle resources for the scan: an unattached 100 GiB gp3 volume and a free Elastic IP"
aws ec2 create-volume --availability-zone us-east-1a --size 100 --volume-type gp3 \
  --tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=forgotten-scratch}]' --query VolumeId --output text
aws ec2 allocate-address --query AllocationId --output text

mkdir -p target/local
helpers=()
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

echo "== MQTT broker and subscriber (seed plan 4)"
mqtt_port=1883
if ! answers 1883; then
  mosquitto="$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)"
  if [ -n "$mosquitto" ]; then
    mqtt_port="$(free_port)"
    "$mosquitto" -p "$mqtt_port" >target/local/mosquitto.log 2>&1 &
    helpers+=($!)
    for _ in $(seq 1 50); do answers "$mqtt_port" && break; sleep 0.1; done
    echo "started $mosquitto on 127.0.0.1:$mqtt_port"
  else
    echo "WARNING: no MQTT broker on 127.0.0.1:1883 and no mosquitto installed (apt-get install mosquitto):"
    echo "         the mqtt_publish routes will retry until their events reach the DLQ"
  fi
else
  echo "using the broker on 127.0.0.1:1883"
fi
export TUGBOAT__BROKERS__LOCAL__PORT="$mqtt_port"
: >target/local/mqtt.log
if command -v mosquitto_sub >/dev/null; then
  mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -t 'fluxer/aws/#' -v -q 1 >target/local/mqtt.log 2>&1 &
  helpers+=($!)
else
  echo "WARNING: mosquitto_sub is not installed (apt-get install mosquitto-clients): MQTT messages are not printed"
fi

echo "== HTTP receiver (seed plan 5)"
http_port="$(free_port)"
python3 scripts/receiver.py "$http_port" >target/local/receiver.log 2>&1 &
helpers+=($!)
export TUGBOAT__DESTINATIONS__ALERTS__URL="http://127.0.0.1:$http_port/hook"
export TUGBOAT__DESTINATIONS__ALERTS__AUTH__PASSWORD="local-demo"
for _ in $(seq 1 50); do answers "$http_port" && break; sleep 0.1; done
echo "scripts/receiver.py on 127.0.0.1:$http_port"

ingress_port="$(free_port)"
export TUGBOAT__INGRESS__LISTEN="127.0.0.1:$ingress_port"

log=target/local/serve.log
echo "== tugboat serve (log in $log)"
$tugboat serve 2>"$log" &
pid=$!
cleanup() {
  if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  for h in "${helpers[@]}"; do kill "$h" 2>/dev/null || true; done
  $keep || scripts/local-aws.sh stop
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== tugboat send: the sample events"
for f in samples/*.json; do
  echo "-- $f"
  $tugboat send --queue tugboat-events --attribute origin=run-local "$f"
done
echo "-- a body that is not an event (goes to the DLQ with the reason)"
echo '{"hello":"world"}' | $tugboat send --queue tugboat-events -

echo "== aws events put-events against tugboat's ingress (127.0.0.1:$ingress_port, the demo key)"
AWS_ACCESS_KEY_ID=localdemo AWS_SECRET_ACCESS_KEY=local-demo-secret AWS_DEFAULT_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true .venv/bin/aws events put-events --endpoint-url "http://127.0.0.1:$ingress_port" \
  --entries '[{"Source":"custom.app","DetailType":"Ingress Demo","Detail":"{\"from\":\"aws events put-events\"}"}]'

# Wait until every message has been settled.
for _ in $(seq 1 100); do
  left="$(scripts/local-aws.sh aws sqs get-queue-attributes --queue-url "$endpoint/123456789012/tugboat-events" \
    --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible \
    --query 'sum([Attributes.ApproximateNumberOfMessages, Attributes.ApproximateNumberOfMessagesNotVisible][].to_number(@))' --output text)"
  [ "$left" = "0" ] && break
  sleep 0.2
done

echo "== tugboat workflows list"
$tugboat workflows list
start="$($tugboat workflows list --route start-ecs-task --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["id"] if r else "")')"
if [ -n "$start" ]; then
  echo "== tugboat workflows show $start   (the ECS task for service auth)"
  $tugboat workflows show "$start"
  echo "== the task's IP and health, as the target group reports them"
  aws elbv2 describe-target-health --target-group-arn \
    "$(aws elbv2 describe-target-groups --names tugboat-auth --query 'TargetGroups[0].TargetGroupArn' --output text)" \
    --query 'TargetHealthDescriptions[].[Target.Id, Target.Port, TargetHealth.State]' --output text
fi
echo "== tugboat schedule list   (the heartbeat schedule's first tick ran as the service started)"
$tugboat schedule list
$tugboat workflows list --route scheduled
echo "== tugboat resources findings   (the resource-scan schedule's first tick scanned us-east-1)"
$tugboat resources findings
oom="$($tugboat workflows list --route ecs-oom-definition --json | python3 -c 'import json,sys; r=[w for w in json.load(sys.stdin) if w.get("steps")]; print(r[0]["id"] if r else "")')"
if [ -n "$oom" ]; then
  echo "== tugboat workflows show $oom   (config/flows/ecs-oom.asl.yaml: a definition, each Task a step)"
  $tugboat workflows show "$oom"
fi
echo "== the event sent through the ingress"
$tugboat workflows list --route ingress-demo
echo "== notifications published to tugboat-success (read from the tugboat-notifications queue)"
scripts/local-aws.sh aws sqs receive-message --queue-url "$endpoint/123456789012/tugboat-notifications" \
  --max-number-of-messages 10 --query 'Messages[].Body' --output text || true
echo "== MQTT messages the subscriber heard on fluxer/aws/# (topic, then body)"
cat target/local/mqtt.log
echo "== HTTP deliveries the receiver got (only the out-of-memory stop matches ecs-oom-http)"
cat target/local/receiver.log
echo "== tugboat dlq list --queue tugboat-events"
$tugboat dlq list --queue tugboat-events
echo "== metrics"
curl -fsS http://127.0.0.1:9090/metrics | grep -v '^#' | grep -v ' 0$' || true
if $keep; then
  trap - EXIT
  echo "== left running (--keep): tugboat (pid $pid, log in $log), the emulator at $endpoint"
  echo "console: http://127.0.0.1:9090/   stop: kill $pid; scripts/local-aws.sh stop"
  # This run's own key (the emulator's, nothing else's), for `tugboat dlq redrive` and retries.
  echo "the CLI from another shell: export TUGBOAT_CONFIG=$TUGBOAT_CONFIG TUGBOAT__AWS__ENDPOINT_URL=$endpoint \\"
  echo "  TUGBOAT__SECURITY__SIGNING_KEY=$TUGBOAT__SECURITY__SIGNING_KEY"
  exit 0
fi
echo "== stopping tugboat (SIGTERM)"
kill -TERM "$pid"
wait "$pid" && echo "tugboat exited with 0"
tail -n 3 "$log"
