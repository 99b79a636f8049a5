"""tugboat's launcher for the moto AWS emulator (server mode).

Starts moto on 127.0.0.1 (port 0 = a free port), sets the state that tugboat's tests and demo
rely on, warms every service tugboat calls (the first call to each is slow), then prints one
line `TUGBOAT_MOTO_READY http://127.0.0.1:PORT` on stdout.

With --exit-on-stdin-eof it stops when its standard input closes: a test process holds the
write end of that pipe, so the emulator goes away with the test binary however that ends.
This is also the place where later tests extend moto's models (see LOCAL-AWS.md).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request

from moto.server import ThreadedMotoServer

_LOG = threading.Lock()


def log_call(line: dict) -> None:  # type: ignore[type-arg]
    """One `TUGBOAT_CALL {...}` line on stderr, written whole: the server answers on many
    threads, and `print` writes the text and its newline apart, so two calls could share a
    line (and a test counting StopTask calls would miss one)."""
    text = "TUGBOAT_CALL " + json.dumps(line) + "\n"
    with _LOG:
        sys.stderr.write(text)
        sys.stderr.flush()


def post(endpoint: str, path: str, body: dict) -> None:
    req = urllib.request.Request(
        endpoint + path, data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(req, timeout=10).read()


def honour_run_task_client_token() -> None:
    """ECS RunTask is idempotent by clientToken in AWS: asked again with the same token, it
    returns the task it started and starts no other. moto 5.2.5 ignores the token, which would
    make a retried or resumed RunTask start a second task here but not in AWS; this restores
    AWS's behaviour (per account, region and token, for the emulator's lifetime)."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    original = EC2ContainerServiceResponse.run_task
    started: dict = {}
    lock = threading.Lock()

    def run_task(self):  # type: ignore[no-untyped-def]
        token = self._get_param("clientToken")
        if not token:
            return original(self)
        key = (self.current_account, self.region, token)
        with lock:
            if key not in started:
                started[key] = original(self)
            return started[key]

    EC2ContainerServiceResponse.run_task = run_task


def record_stop_task_calls() -> None:
    """Writes one line per ECS StopTask call to stderr (the emulator's log):
    `TUGBOAT_CALL {"call": "ecs:StopTask", "cluster": ..., "task": ...}`. Crash tests count
    them to show that compensation stops a task once, however often tugboat is killed. The
    call itself is moto's, unchanged."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    original = EC2ContainerServiceResponse.stop_task

    def stop_task(self):  # type: ignore[no-untyped-def]
        line = {
            "call": "ecs:StopTask",
            "cluster": self._get_param("cluster"),
            "task": self._get_param("task"),
        }
        log_call(line)
        return original(self)

    EC2ContainerServiceResponse.stop_task = stop_task


def record_describe_container_instances_calls() -> None:
    """Writes one line per ECS DescribeContainerInstances call to stderr:
    `TUGBOAT_CALL {"call": "ecs:DescribeContainerInstances", "cluster": ...}`. A drain's wait
    polls with it, so a test can wait for polls to have happened (rather than sleep) before it
    checks that the wait has not ended. The call itself is moto's, unchanged."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    original = EC2ContainerServiceResponse.describe_container_instances

    def describe_container_instances(self):  # type: ignore[no-untyped-def]
        line = {"call": "ecs:DescribeContainerInstances", "cluster": self._get_param("cluster")}
        log_call(line)
        return original(self)

    EC2ContainerServiceResponse.describe_container_instances = describe_container_instances


def restore_lifecycle_actions() -> None:
    """moto 5.2.5 keeps lifecycle hooks but has no lifecycle actions: CompleteLifecycleAction
    and RecordLifecycleActionHeartbeat are not implemented. As the AWS API reference describes
    them (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CompleteLifecycleAction.html,
    .../API_RecordLifecycleActionHeartbeat.html): the hook must exist on the group, the action is
    named by its token (or the instance id), and once completed it is no longer active, so a
    second completion or a heartbeat after it is a ValidationError "No active Lifecycle Action
    found …". Restored here for hooks that exist (an action is active from its first mention
    until completed); every call is logged as `TUGBOAT_CALL {"call": "autoscaling:…", …}`."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import EmptyResult

    completed: set = set()
    lock = threading.Lock()

    def action(self, call: str, complete: bool):  # type: ignore[no-untyped-def]
        group = self._get_param("AutoScalingGroupName")
        hook = self._get_param("LifecycleHookName")
        token = self._get_param("LifecycleActionToken") or self._get_param("InstanceId")
        line = {"call": call, "group": group, "hook": hook, "token": token,
                "result": self._get_param("LifecycleActionResult")}
        log_call(line)
        hooks = self.autoscaling_backend.describe_lifecycle_hooks(
            as_name=group, lifecycle_hook_names=[hook]
        )
        if not hooks:
            raise ValidationError(f"No Lifecycle Hook found with name {hook} for group {group}")
        key = (self.current_account, self.region, group, hook, token)
        with lock:
            if key in completed:
                raise ValidationError(f"No active Lifecycle Action found with token {token}")
            if complete:
                completed.add(key)
        return EmptyResult()

    AutoScalingResponse.complete_lifecycle_action = (
        lambda self: action(self, "autoscaling:CompleteLifecycleAction", True)
    )
    AutoScalingResponse.record_lifecycle_action_heartbeat = (
        lambda self: action(self, "autoscaling:RecordLifecycleActionHeartbeat", False)
    )


def restore_initial_health() -> None:
    """With TUGBOAT_MOTO_INITIAL_HEALTH=1, a registered target is `initial` (reason
    `Elb.RegistrationInProgress`) until its target group's health checks would have passed:
    HealthCheckIntervalSeconds x HealthyThresholdCount after its registration, as in AWS
    ("initial: the load balancer is in the process of registering the target or performing
    the initial health checks on the target"; a target becomes healthy after
    HealthyThresholdCount consecutive successful checks — Elastic Load Balancing User Guide,
    "Target health status" and "Health checks for Application Load Balancer target groups").
    moto reports `healthy` at once. Off by default: tests written against moto's instant
    health keep it; the console's tests turn it on to hold an `ecs_start` in its wait."""
    if os.environ.get("TUGBOAT_MOTO_INITIAL_HEALTH") != "1":
        return
    from moto.elbv2 import models

    registered: dict = {}
    lock = threading.Lock()
    register, deregister = models.FakeTargetGroup.register, models.FakeTargetGroup.deregister
    health_for = models.FakeTargetGroup.health_for

    def on_register(self, targets):  # type: ignore[no-untyped-def]
        register(self, targets)
        with lock:
            for t in targets:
                registered.setdefault((self.arn, t["Id"]), time.monotonic())

    def on_deregister(self, targets):  # type: ignore[no-untyped-def]
        deregister(self, targets)
        with lock:
            for t in targets:
                registered.pop((self.arn, t["Id"]), None)

    def health(self, target, ec2_backend):  # type: ignore[no-untyped-def]
        status = health_for(self, target, ec2_backend)
        with lock:
            since = registered.get((self.arn, target["Id"]))
        grace = int(self.health_check_interval_seconds) * int(self.healthy_threshold_count)
        if status.status == "healthy" and since is not None and time.monotonic() - since < grace:
            status.status = "initial"
            status.reason = "Elb.RegistrationInProgress"
            status.description = "Target registration is in progress"
        return status

    models.FakeTargetGroup.register = on_register
    models.FakeTargetGroup.deregister = on_deregister
    models.FakeTargetGroup.health_for = health


def record_scan_calls() -> None:
    """Writes one line per call the resource scan makes to stderr:
    `TUGBOAT_CALL {"call": "ec2:DescribeVolumes", "region": ...}` (and DescribeAddresses,
    DescribeInstances, DescribeSnapshots; `rds:DescribeDBInstances`,
    `cloudwatch:GetMetricData`; `dynamodb:Query`, `dynamodb:BatchWriteItem`), so that
    benches/resource_scan.rs can count the calls a scan makes per resource. The calls
    themselves are moto's, unchanged."""
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.dynamodb.responses import DynamoHandler
    from moto.rds.responses import RDSResponse
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore
    from moto.ec2.responses.elastic_ip_addresses import ElasticIPAddresses
    from moto.ec2.responses.instances import InstanceResponse

    def logged(cls, method: str, call: str) -> None:  # type: ignore[no-untyped-def]
        original = getattr(cls, method)

        def wrapper(self):  # type: ignore[no-untyped-def]
            line = {"call": call, "region": getattr(self, "region", None)}
            log_call(line)
            return original(self)

        setattr(cls, method, wrapper)

    logged(ElasticBlockStore, "describe_volumes", "ec2:DescribeVolumes")
    logged(ElasticBlockStore, "describe_snapshots", "ec2:DescribeSnapshots")
    logged(ElasticIPAddresses, "describe_addresses", "ec2:DescribeAddresses")
    logged(InstanceResponse, "describe_instances", "ec2:DescribeInstances")
    logged(RDSResponse, "describe_db_instances", "rds:DescribeDBInstances")
    logged(CloudWatchResponse, "get_metric_data", "cloudwatch:GetMetricData")
    logged(DynamoHandler, "query", "dynamodb:Query")
    logged(DynamoHandler, "batch_write_item", "dynamodb:BatchWriteItem")


def record_power_calls() -> None:
    """Writes one line per EC2 StopInstances/StartInstances and ECS UpdateService call to
    stderr: `TUGBOAT_CALL {"call": "ec2:StopInstances", "region": ..., "instances": [...]}`,
    `{"call": "ecs:UpdateService", "service": ..., "desiredCount": ...}`. auto_stop's crash
    tests count them to show that a step resumed after a `kill -9` stops nothing twice. The
    calls themselves are moto's, unchanged."""
    from moto.ec2.responses.instances import InstanceResponse
    from moto.ecs.responses import EC2ContainerServiceResponse

    def logged(cls, method: str, line) -> None:  # type: ignore[no-untyped-def]
        original = getattr(cls, method)

        def wrapper(self):  # type: ignore[no-untyped-def]
            log_call(line(self))
            return original(self)

        setattr(cls, method, wrapper)

    for method, call in [("stop_instances", "ec2:StopInstances"), ("start_instances", "ec2:StartInstances")]:
        logged(
            InstanceResponse,
            method,
            lambda self, call=call: {
                "call": call,
                "region": getattr(self, "region", None),
                "instances": self._get_param("InstanceIds", []),
            },
        )
    logged(
        EC2ContainerServiceResponse,
        "update_service",
        lambda self: {
            "call": "ecs:UpdateService",
            "region": getattr(self, "region", None),
            "cluster": self._get_param("cluster"),
            "service": self._get_param("service"),
            "desiredCount": self._get_param("desiredCount"),
        },
    )


def speak_rpc_v2_cbor() -> None:
    """Answers the Smithy RPC v2 CBOR protocol, which the AWS SDK for Rust speaks to CloudWatch
    (aws-sdk-cloudwatch; AWS serves it beside awsQuery and awsJson1_0:
    https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html) and moto 5.2 does not
    route: a `POST /service/<service>/operation/<Operation>` with a CBOR body is decoded, handed
    to moto as the same call in the JSON protocol (which moto serves), and its answer encoded
    back to CBOR with the `smithy-protocol: rpc-v2-cbor` header the SDK checks. Timestamps
    travel as CBOR tag 1 (epoch seconds) and blobs as byte strings, as the protocol says; the
    service model (botocore's) names which members are which."""
    import base64
    import io
    import re
    from datetime import datetime, timezone

    import botocore.session
    import cbor2
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    path = re.compile(r"^/service/([A-Za-z0-9_]+)/operation/([A-Za-z0-9_]+)$")
    # The services moto routes by their JSON target prefix, by the protocol's service name.
    services = {"GraniteServiceVersion20100801": "cloudwatch"}
    models = {}

    def to_json(value):  # type: ignore[no-untyped-def]
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(value).decode()
        if isinstance(value, dict):
            return {k: to_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [to_json(v) for v in value]
        return value

    def to_cbor(value, shape):  # type: ignore[no-untyped-def]
        if value is None or shape is None:
            return value
        kind = shape.type_name
        if kind == "timestamp":
            if isinstance(value, str):
                value = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            return cbor2.CBORTag(1, float(value))
        if kind == "blob" and isinstance(value, str):
            return base64.b64decode(value)
        if kind == "structure" and isinstance(value, dict):
            return {k: to_cbor(v, shape.members.get(k)) for k, v in value.items()}
        if kind == "list" and isinstance(value, list):
            return [to_cbor(v, shape.member) for v in value]
        if kind == "map" and isinstance(value, dict):
            return {k: to_cbor(v, shape.value) for k, v in value.items()}
        return value

    original = DomainDispatcherApplication.__call__

    def call(self, environ, start_response):  # type: ignore[no-untyped-def]
        m = path.match(environ.get("PATH_INFO", ""))
        if not m or environ.get("REQUEST_METHOD") != "POST" or m.group(1) not in services:
            return original(self, environ, start_response)
        target, operation = m.group(1), m.group(2)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        body = json.dumps(to_json(cbor2.loads(raw)) if raw else {}).encode()
        environ = dict(environ)
        environ.update(
            {
                "PATH_INFO": "/",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": f"{target}.{operation}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        answered = {}

        def capture(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
            answered["status"] = status
            return lambda _data: None

        chunks = original(self, environ, capture)
        text = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        status = answered.get("status", "500 Internal Server Error")
        answer = json.loads(text) if text.strip() else {}
        if status.startswith("2"):
            if target not in models:
                models[target] = botocore.session.get_session().get_service_model(services[target])
            shape = models[target].operation_model(operation).output_shape
            answer = to_cbor(answer, shape)
        elif "__type" in answer:
            # A JSON error's type may carry a namespace (`…#InvalidParameterValue`).
            answer["__type"] = str(answer["__type"]).split("#")[-1]
        encoded = cbor2.dumps(answer)
        start_response(
            status,
            [
                ("Content-Type", "application/cbor"),
                ("Content-Length", str(len(encoded))),
                ("smithy-protocol", "rpc-v2-cbor"),
            ],
        )
        return [encoded]

    DomainDispatcherApplication.__call__ = call


def warm(endpoint: str) -> None:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    for service, call in [
        ("sqs", lambda c: c.list_queues()),
        ("sns", lambda c: c.list_topics()),
        ("dynamodb", lambda c: c.list_tables()),
        ("ecs", lambda c: c.list_clusters()),
        ("elbv2", lambda c: c.describe_target_groups()),
        ("s3", lambda c: c.list_buckets()),
        ("ec2", lambda c: c.describe_vpcs()),
        ("events", lambda c: c.list_rules()),
        ("autoscaling", lambda c: c.describe_auto_scaling_groups()),
        ("rds", lambda c: c.describe_db_instances()),
        ("cloudwatch", lambda c: c.list_metrics()),
    ]:
        call(session.client(service, endpoint_url=endpoint))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()

    honour_run_task_client_token()
    record_stop_task_calls()
    record_describe_container_instances_calls()
    record_scan_calls()
    record_power_calls()
    speak_rpc_v2_cbor()
    restore_lifecycle_actions()
    restore_initial_health()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    # moto advances a task one state per DescribeTasks by default (RUNNING → STOPPED by the
    # 4th call); tugboat's waits need tasks that stay RUNNING until stopped.
    post(
        endpoint,
        "/moto-api/state-manager/set-transition",
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}},
    )
    warm(endpoint)

    print(f"TUGBOAT_MOTO_READY {endpoint}", flush=True)

    done = threading.Event()
    if args.exit_on_stdin_eof:
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
