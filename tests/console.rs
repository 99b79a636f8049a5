//! The console in a real browser (Debian's headless Chromium, driven by playwright-core
//! through `tests/browser/driver.mjs`) against `tugboat serve` on the emulator: the pages,
//! live updates, the escaping of hostile events, and the actions (redrive, cancel, retry,
//! pause, resume) from the page and from the CLI. Screenshots of every page go to
//! `target/console/`.
//!
//! The emulator here restores AWS's `initial` target health (`TUGBOAT_MOTO_INITIAL_HEALTH`,
//! see `scripts/moto_launcher.py`), so that an `ecs_start` can be caught waiting for health.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::browser::Browser;
use support::service::{Service, create_queue, depth, send, until};
use support::{clients, run, tugboat, unique};

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    queue_url: String,
    dlq_url: String,
    cluster: String,
    slow_group: String,
    /// Whether the `fragile` destination accepts deliveries (it refuses with 400 until told).
    accepting: Arc<AtomicBool>,
}

/// Starts the emulator with AWS's `initial` target health restored.
fn emulator_with_initial_health() {
    support::emulator_with_env(&[("TUGBOAT_MOTO_INITIAL_HEALTH", "1")]);
}

async fn setup(allow_actions: bool) -> Setup {
    emulator_with_initial_health();
    let support::Network {
        vpc,
        subnet,
        security_group: sg,
    } = support::network();
    let p = unique("console");
    let cluster = format!("{p}-cluster");
    support::ecs_cluster(&cluster).await;
    let family = format!("{p}-auth");
    support::fargate_task_definition(&family, "auth").await;
    let tag = p.replace("console-", "").replace('-', "");
    // Healthy 10 s after registration (AWS's smallest interval, 5 s, times 2 checks).
    let fast = format!("f{tag}");
    support::ip_target_group_checked(&fast, &vpc, Some((5, 2))).await;
    // Initial for 50 minutes: an ecs_start for it waits until cancelled.
    let slow = format!("s{tag}");
    let slow_group = support::ip_target_group_checked(&slow, &vpc, Some((300, 10))).await;
    let queue = format!("{p}-q");
    let queue_url = create_queue(&queue).await;
    let dlq_url = create_queue(&format!("{p}-dlq")).await;

    let accepting = Arc::new(AtomicBool::new(false));
    let gate = accepting.clone();
    let hook = support::serve_on_thread(axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let open = gate.load(Ordering::SeqCst);
            async move {
                if open {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::BAD_REQUEST
                }
            }
        }),
    ));

    let dir = tempfile::tempdir().unwrap();
    let service = |name: &str, group: &str| {
        format!(
            "[services.{name}]\ncluster = \"{cluster}\"\ntask_definition = \"{family}\"\ntarget_group = \"{group}\"\n\
             container_name = \"auth\"\ncontainer_port = 8080\nsubnets = [\"{subnet}\"]\nsecurity_groups = [\"{sg}\"]\n\n"
        )
    };
    let extra = format!(
        "[[queues]]\nname = \"{queue}\"\ndlq = \"{p}-dlq\"\nvisibility_timeout = \"20s\"\nreceive_wait = \"1s\"\n\n\
         [[routes]]\nname = \"start-ecs-task\"\npattern = {{ source = [\"custom.app\"], detail-type = [\"Start ECS Task\"] }}\n\
         workflow = \"ecs_start\"\nparams = {{ poll_interval = \"1s\", running_timeout = \"30s\", healthy_timeout = \"60s\" }}\n\n\
         [[routes]]\nname = \"ecs-task-events\"\npattern = {{ source = [\"aws.ecs\"], detail-type = [\"ECS Task State Change\"] }}\n\
         workflow = \"ecs_task_event\"\n\n\
         [[routes]]\nname = \"spot-interruption\"\npattern = {{ source = [\"aws.ec2\"], detail-type = [\"EC2 Spot Instance Interruption Warning\"] }}\n\
         workflow = \"log\"\n\n\
         [[routes]]\nname = \"instance-state\"\npattern = {{ source = [\"aws.ec2\"], detail-type = [\"EC2 Instance State-change Notification\"] }}\n\
         workflow = \"log\"\n\n\
         [[routes]]\nname = \"hostile\"\npattern = {{ source = [\"custom.hostile\"] }}\nworkflow = \"log\"\n\n\
         [[routes]]\nname = \"pausable\"\npattern = {{ source = [\"custom.pausable\"] }}\nworkflow = \"log\"\n\n\
         [[routes]]\nname = \"fragile\"\npattern = {{ source = [\"custom.fragile\"] }}\nworkflow = \"http_deliver\"\nparams = {{ destination = \"fragile\" }}\n\n\
         [[schedules]]\nname = \"nightly\"\ncron = \"0 2 ? * * *\"\ntimezone = \"Europe/Berlin\"\n\n\
         [schedules.event]\nsource = \"custom.nightly\"\ndetail-type = \"Nightly\"\n\n\
         [destinations.fragile]\nurl = \"http://127.0.0.1:{hook}/hook\"\n\n\
         {}{}\
         [engine]\npause_recheck = \"30s\"\n\n\
         [journal]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\nallow_actions = {allow_actions}\n",
        service("auth", &fast),
        service("slow", &slow),
        dir.path().join("journal").display()
    );
    let config = support::write_config(dir.path(), &[], &extra);
    Setup {
        _dir: dir,
        config,
        queue_url,
        dlq_url,
        cluster,
        slow_group,
        accepting,
    }
}

/// The admin listener's JSON at `path`.
fn api(service: &Service, path: &str) -> Value {
    let admin = service.admin.as_ref().unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", &format!("http://{admin}{path}")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn record(service: &Service, id: &str) -> Value {
    api(service, &format!("/workflows/{}", id.replace(' ', "%20")))["record"].clone()
}

/// Waits until instance `id` has status `status`; its record.
async fn until_status(service: &Service, id: &str, status: &str, timeout: Duration) -> Value {
    until(&format!("{id} {status}"), timeout, async || {
        record(service, id)["status"] == status
    })
    .await;
    record(service, id)
}

/// The one instance of route `route`; waits for it.
async fn instance_of(service: &Service, route: &str) -> String {
    let mut id = String::new();
    until(
        &format!("an instance of {route}"),
        Duration::from_secs(20),
        async || {
            let listed = api(service, &format!("/workflows?route={route}"));
            match listed["instances"][0]["id"].as_str() {
                Some(found) => {
                    id = found.to_owned();
                    true
                }
                None => false,
            }
        },
    )
    .await;
    id
}

/// `tugboat ARGS` against the running service (its admin port is chosen at start).
fn cli(setup: &Setup, service: &Service, args: &[&str]) -> support::Output {
    run(tugboat(&setup.config)
        .env("TUGBOAT__ADMIN__LISTEN", service.admin.as_ref().unwrap())
        .args(args))
}

fn send_sample(setup: &Setup, sample: &str) {
    let queue = setup.queue_url.rsplit('/').next().unwrap();
    let out =
        run(tugboat(&setup.config).args(["send", "--queue", queue, &format!("samples/{sample}")]));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn event(source: &str, id: &str, detail: Value) -> String {
    json!({"version": "0", "id": id, "source": source, "detail-type": "Console test",
        "account": "123456789012", "time": "2026-11-30T00:00:00Z", "region": "us-east-1",
        "resources": [], "detail": detail})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_follows_and_operates_the_service_in_a_browser() {
    let s = setup(true).await;
    let service = Service::start(&s.config, None);
    let base = format!("http://{}", service.admin.as_ref().unwrap());
    let mut browser = Browser::start();

    // The run-local samples are listed.
    for sample in [
        "start-ecs-task.json",
        "spot-interruption-warning.json",
        "ec2-instance-state-change.json",
        "ecs-task-stopped-oom.json",
    ] {
        send_sample(&s, sample);
    }
    assert_eq!(browser.goto(&format!("{base}/workflows")), 200);
    for route in [
        "start-ecs-task",
        "spot-interruption",
        "instance-state",
        "ecs-task-events",
    ] {
        let row = format!("tr[data-id^=\"{route}:\"]");
        if browser.wait(&row, None, 1).is_err() {
            // Not yet run when the page loaded: live updates bring it.
            browser
                .wait(&row, None, 20_000)
                .unwrap_or_else(|e| panic!("{route} never listed: {e}"));
        }
    }

    // A new event appears without a reload within 2 s.
    browser.eval("window.__sameDocument = true");
    let sent = Instant::now();
    send(&s.queue_url, &event("custom.pausable", "live-1", json!({}))).await;
    let live_row = "tr[data-id=\"pausable:live-1\"]";
    // The intake's long poll (receive_wait 1 s) is part of the 2 s.
    let _ = browser.try_op(json!({"op": "wait", "selector": live_row, "timeout_ms": 2000}));
    let waited = sent.elapsed();
    assert!(
        browser.count(live_row) == 1,
        "the new instance was not shown within 2 s ({waited:?})"
    );
    assert_eq!(
        browser.eval("window.__sameDocument === true"),
        true,
        "the page reloaded"
    );
    // The counts at the top move too, once the new instance has finished (its row shows
    // as soon as it starts; under load it may still be running here).
    let counted = Instant::now();
    let succeeded = loop {
        let n: u64 = browser
            .text("[data-count=\"succeeded\"]")
            .trim()
            .parse()
            .unwrap();
        if n >= 4 || counted.elapsed() > Duration::from_secs(10) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(succeeded >= 4, "succeeded count {succeeded}");
    assert_eq!(
        browser.eval("window.__sameDocument === true"),
        true,
        "the page reloaded"
    );
    browser.screenshot("workflows");

    // The instance page of an ecs_start shows every step of its run.
    let start = instance_of(&service, "start-ecs-task").await;
    let r = until_status(&service, &start, "succeeded", Duration::from_secs(60)).await;
    browser.goto(&format!("{base}/workflows/{start}"));
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for expected in ["run-task", "wait-running#1", "register-target", "notify"] {
        assert!(steps.contains(&expected), "{expected} not in {steps:?}");
    }
    assert!(
        steps.iter().any(|s| s.starts_with("sleep-healthy")),
        "the wait for health (targets start `initial`) is a step: {steps:?}"
    );
    for step in &steps {
        assert_eq!(
            browser.count(&format!("tr.step[data-step=\"{step}\"] svg rect.bar")),
            r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == *step)
                .unwrap()["tries"]
                .as_array()
                .map_or(1, |t| t.len() as u64),
            "one bar per attempt of {step}"
        );
    }
    assert!(
        browser.count("tr.step rect.bar.sleep") >= 1,
        "sleeps are drawn as sleeps"
    );
    assert!(browser.text("pre.event").contains("Start ECS Task"));
    browser.screenshot("instance");

    // An event whose fields hold markup is shown as text and runs nothing.
    let hostile = event(
        "custom.hostile",
        "hostile-1",
        json!({"note": "<script>window.__pwned = 1</script>",
               "img": "<img src=x onerror=\"window.__pwned = 2\">",
               "quote": "\"><svg onload=\"window.__pwned = 3\">"}),
    );
    send(&s.queue_url, &hostile).await;
    let hostile_id = "hostile:hostile-1";
    until_status(&service, hostile_id, "succeeded", Duration::from_secs(20)).await;
    browser.goto(&format!("{base}/workflows/{hostile_id}"));
    let shown = browser.text("pre.event");
    assert!(
        shown.contains("<script>window.__pwned = 1</script>") && shown.contains("<img src=x"),
        "the event is shown as text: {shown}"
    );
    assert_eq!(browser.count("main script, main img, main svg[onload]"), 0);
    browser.goto(&format!("{base}/workflows?route=hostile"));
    assert_eq!(browser.eval("typeof window.__pwned"), "undefined");
    let errors: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|m| m.starts_with("pageerror"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    // A failed delivery is dead-lettered; the dead-letter page redrives it and it succeeds.
    send(
        &s.queue_url,
        &event("custom.fragile", "fragile-1", json!({"n": 1})),
    )
    .await;
    let fragile = "fragile:fragile-1";
    until_status(&service, fragile, "dead_lettered", Duration::from_secs(30)).await;
    until("the DLQ copy", Duration::from_secs(10), async || {
        depth(&s.dlq_url).await.0 == 1
    })
    .await;
    browser.goto(&format!("{base}/dead-letters"));
    let letter = format!("tr[data-message]:has(a[href=\"/workflows/{fragile}\"])");
    browser.expect(&letter, None, 5000);
    assert!(browser.text(&letter).contains("400"), "the reason is shown");
    browser.screenshot("dead-letters");
    s.accepting.store(true, Ordering::SeqCst);
    browser.dialogs();
    browser.click(&format!("{letter} form.action button"));
    browser.expect("p.notice", Some("redrove 1 message"), 10_000);
    assert_eq!(browser.dialogs().len(), 1, "the redrive asked first");
    let r = until_status(&service, fragile, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(r["generation"], 1, "a redrive is a new run");
    assert_eq!(depth(&s.dlq_url).await, (0, 0), "the DLQ is empty");

    // Cancelling an ecs_start that waits for health stops its task and ends it cancelled.
    let slow = json!({"source": "custom.app", "detail-type": "Start ECS Task", "id": "slow-1",
        "version": "0", "detail": {"service": "slow"}});
    send(&s.queue_url, &slow.to_string()).await;
    let slow_id = "start-ecs-task:slow-1".to_owned();
    until(
        "the slow task registered",
        Duration::from_secs(30),
        async || {
            record(&service, &slow_id)["steps"]
                .as_array()
                .is_some_and(|s| {
                    s.iter()
                        .any(|x| x["name"] == "register-target" && x["output"].is_object())
                })
        },
    )
    .await;
    let task_arn = record(&service, &slow_id)["state"]["task_arn"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.goto(&format!("{base}/workflows/{slow_id}"));
    browser.screenshot("instance-waiting");
    browser.click("form.action[action$=\"/cancel\"] button");
    browser.expect("p.notice", Some("cancelling"), 5000);
    let r = until_status(&service, &slow_id, "cancelled", Duration::from_secs(15)).await;
    assert!(
        r["steps"].as_array().unwrap().iter().any(|x| x["name"]
            .as_str()
            .unwrap()
            .starts_with("compensate:")
            && x["compensation"] == true),
        "the compensation ran: {r}"
    );
    assert_eq!(r["cancel"]["by"], "the console", "{r}");
    let tasks = clients()
        .await
        .ecs
        .describe_tasks()
        .cluster(&s.cluster)
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        tasks.tasks()[0].last_status(),
        Some("STOPPED"),
        "its task was stopped"
    );
    let health = clients()
        .await
        .elbv2
        .describe_target_health()
        .target_group_arn(&s.slow_group)
        .send()
        .await
        .unwrap();
    assert!(
        health.target_health_descriptions().is_empty(),
        "its target was deregistered: {health:?}"
    );
    browser.expect(".facts .status.cancelled", None, 5000);
    browser.screenshot("instance-cancelled");
    until(
        "the slow message settled",
        Duration::from_secs(10),
        async || depth(&s.queue_url).await == (0, 0),
    )
    .await;

    // The CLI takes the same path: retry the cancelled instance (its next run waits again),
    // then cancel that run.
    let out = cli(&s, &service, &["workflows", "retry", &slow_id]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("run 1"), "{}", out.stdout);
    until(
        "the retried run waiting",
        Duration::from_secs(30),
        async || {
            let r = record(&service, &slow_id);
            r["generation"] == 1 && r["status"] == "running"
        },
    )
    .await;
    let out = cli(&s, &service, &["workflows", "cancel", &slow_id]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let r = until_status(&service, &slow_id, "cancelled", Duration::from_secs(15)).await;
    assert_eq!(r["generation"], 1);
    assert_eq!(r["cancel"]["by"], "the CLI", "{r}");
    let out = cli(&s, &service, &["workflows", "cancel", &slow_id]);
    assert_eq!(out.code, 1, "a second cancel is refused");
    assert!(out.stderr.contains("cancelled"), "{}", out.stderr);

    // A paused route's events wait in the queue and run after a resume.
    browser.goto(&format!("{base}/routes"));
    browser.click("tr[data-route=\"pausable\"] form.action button");
    browser.expect("tr[data-route=\"pausable\"] .status.paused", None, 5000);
    send(
        &s.queue_url,
        &event("custom.pausable", "paused-1", json!({})),
    )
    .await;
    until(
        "the paused event received",
        Duration::from_secs(10),
        async || {
            service
                .lines()
                .iter()
                .any(|l| l.contains("a paused route matched"))
        },
    )
    .await;
    // The intake decided when it logged the match: the event is held, not run.
    assert!(
        record(&service, "pausable:paused-1").is_null(),
        "it did not run"
    );
    let (visible, hidden) = depth(&s.queue_url).await;
    assert_eq!(visible + hidden, 1, "it waits in the queue");
    browser.screenshot("routes");
    let resumed = Instant::now();
    browser.click("tr[data-route=\"pausable\"] form.action button");
    until_status(
        &service,
        "pausable:paused-1",
        "succeeded",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        resumed.elapsed() < Duration::from_secs(10),
        "a resume brings the held message back at once, not at the 30 s recheck"
    );
    let out = cli(&s, &service, &["route", "list"]);
    assert!(
        out.stdout.contains("pausable") && !out.stdout.contains("paused"),
        "{}",
        out.stdout
    );

    // A schedule is listed under the routes, and paused and resumed from the same page.
    browser.goto(&format!("{base}/routes"));
    browser.expect(
        "tr[data-schedule=\"nightly\"]",
        Some("cron(0 2 ? * * *)"),
        5000,
    );
    browser.click("tr[data-schedule=\"nightly\"] form.action button");
    browser.expect("tr[data-schedule=\"nightly\"] .status.paused", None, 5000);
    assert_eq!(api(&service, "/schedules")[0]["paused"], true);
    browser.screenshot("routes-schedule-paused");
    browser.click("tr[data-schedule=\"nightly\"] form.action button");
    browser.expect(
        "tr[data-schedule=\"nightly\"] form.action[action$=\"/pause\"]",
        None,
        5000,
    );
    assert_eq!(api(&service, "/schedules")[0]["paused"], false);

    // Every status of this run on one page (the README's picture).
    browser.goto(&format!("{base}/workflows"));
    browser.screenshot("workflows-all");

    // The other pages render (and their JSON is the same handler's).
    assert_eq!(browser.goto(&format!("{base}/interruptions")), 200);
    browser.screenshot("interruptions-none");
    assert_eq!(browser.goto(&format!("{base}/costs")), 200);
    assert!(browser.text("main").contains("cur_ingest"));
    assert!(api(&service, "/interruptions")["pools"].is_array());
    assert!(api(&service, "/costs")["days"].is_array());
    assert!(api(&service, "/dead-letters")["queues"].is_array());

    // A page following live updates does not hold up a shutdown.
    browser.goto(&format!("{base}/workflows"));
    browser.expect("#live.on", None, 5000);
    let (code, log) = service.terminate();
    assert_eq!(code, 0, "{log}");
}

/// POSTs to the admin listener with `headers`; the status code and the body.
fn post(admin: &str, path: &str, headers: &[&str]) -> (String, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/stderr",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(format!("http://{admin}{path}")).output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_are_off_unless_allowed_and_need_the_token_and_a_known_host() {
    let s = setup(false).await;
    let service = Service::start(&s.config, None);
    let admin = service.admin.clone().unwrap();
    send(&s.queue_url, &event("custom.hostile", "h-2", json!({}))).await;
    until_status(
        &service,
        "hostile:h-2",
        "succeeded",
        Duration::from_secs(20),
    )
    .await;
    let mut browser = Browser::start();
    browser.goto(&format!("http://{admin}/routes"));
    assert_eq!(
        browser.count("form.action"),
        0,
        "no buttons when actions are off"
    );
    assert!(browser.text("header").contains("read-only"));

    let token = api(&service, "/api/session")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let act = |path: &str, headers: &[&str]| post(&admin, path, headers);
    let with_token = format!("x-tugboat-token: {token}");
    let (code, body) = act("/routes/pausable/pause", &[&with_token]);
    assert_eq!(code, "403");
    assert!(body.contains("allow_actions"), "{body}");
    let out = cli(&s, &service, &["route", "pause", "pausable"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("allow_actions"), "{}", out.stderr);

    // With actions on: the token, the host and the origin are checked.
    drop(service);
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("allow_actions = false", "allow_actions = true");
    std::fs::write(&s.config, text).unwrap();
    let service = Service::start(&s.config, None);
    let admin = service.admin.clone().unwrap();
    let token = api(&service, "/api/session")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let with_token = format!("x-tugboat-token: {token}");
    let act = |path: &str, headers: &[&str]| post(&admin, path, headers);
    assert_eq!(act("/routes/pausable/pause", &[]).0, "403", "no token");
    assert_eq!(
        act("/routes/pausable/pause", &["x-tugboat-token: wrong"]).0,
        "403"
    );
    let (code, body) = act(
        "/routes/pausable/pause",
        &[&with_token, "Host: evil.example:80"],
    );
    assert_eq!(code, "403", "a rebound host name");
    assert!(body.contains("[admin] hosts"), "{body}");
    let (code, _) = act(
        "/routes/pausable/pause",
        &[&with_token, "Origin: http://evil.example"],
    );
    assert_eq!(code, "403", "another site's page");
    assert_eq!(act("/routes/nowhere/pause", &[&with_token]).0, "404");
    assert_eq!(act("/workflows/nope/cancel", &[&with_token]).0, "404");
    let (code, body) = act("/workflows/hostile:h-2/cancel", &[&with_token]);
    assert_eq!(code, "409", "{body}");
    assert!(body.contains("succeeded"), "{body}");
    let (code, body) = act("/workflows/hostile:h-2/retry", &[&with_token]);
    assert_eq!(
        code, "409",
        "only a dead-lettered or cancelled instance is retried: {body}"
    );
    let (code, body) = act("/routes/pausable/pause", &[&with_token]);
    assert_eq!(code, "200", "{body}");
    // Bad filters are refused with the reason.
    let bad = api(&service, "/workflows?status=weird");
    assert!(bad["error"].as_str().unwrap().contains("status"), "{bad}");
    let bad = api(&service, "/workflows?since=yesterday");
    assert!(bad["error"].as_str().unwrap().contains("since"), "{bad}");
    // A pause survives a restart (the journal keeps it).
    drop(service);
    let service = Service::start(&s.config, None);
    let routes = api(&service, "/routes");
    let pausable = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pausable")
        .unwrap();
    assert_eq!(pausable["paused"], true, "{routes}");
}

/// A `cur_ingest` instance as it ends: what it ingested for one payer's period, with an
/// anomaly.
fn cur_record(period: &str) -> tugboat::journal::Record {
    let mut r = tugboat::journal::Record::new(
        &format!("cost-reports:{period}"),
        "cur_ingest",
        tugboat::journal::Origin {
            route: "cost-reports".into(),
            queue: "q".into(),
            message_id: "m".into(),
            trace: None,
        },
        json!({"source": "aws.s3"}),
        json!({}),
    );
    r.status = tugboat::journal::Status::Succeeded;
    r.output = Some(
        json!({"bucket": "b", "key": "k", "ingested": {"parts": 1, "line_items": 9,
        "payers": [{"payer": "111111111111", "period": period, "anomalies": [
            {"type": "anomaly", "payer": "111111111111", "account": "222222222222",
             "service": "AmazonEC2", "day": format!("{period}-03"), "cost": 90.0,
             "expected": 10.0, "impact": 80.0, "impact_percent": 800.0}]}]}}),
    );
    r
}

/// A `spot_drain` instance for a spot warning in `zone`.
fn spot_record(n: u32, zone: &str) -> tugboat::journal::Record {
    let mut r = tugboat::journal::Record::new(
        &format!("spot:{n}"),
        "spot_drain",
        tugboat::journal::Origin::default(),
        json!({}),
        json!({}),
    );
    r.status = tugboat::journal::Status::Succeeded;
    r.state = json!({"notice": {"kind": "spot-interruption", "source": "aws.ec2",
        "instances": [format!("i-{n}")], "noticed_ms": 1_796_000_000_000u64 + n as u64 * 3_600_000,
        "ends_ms": null, "zone": zone, "instance_type": "m5.large"}});
    r
}

#[actix_rt::test]
async fn the_costs_and_interruptions_pages_show_the_cost_table_and_the_journal() {
    let queue = Arc::new(tugboat::ports::memory::MemoryQueue::new("q"));
    let queues = Arc::new(tugboat::ports::memory::MemoryQueues::default());
    queues.add(queue.clone());
    let mut deps = tugboat::app::Dependencies::memory(queues);
    let journal = Arc::new(tugboat::journal::memory::MemoryJournal::default());
    deps.journal = Some(journal.clone());
    let costs = deps.ports.costs.clone();
    let day =
        |d: &str, account: &str, service: &str, cost: &str| tugboat::ports::costs::DailyCost {
            day: d.into(),
            payer: "111111111111".into(),
            account: account.into(),
            service: service.into(),
            region: "us-east-1".into(),
            currency: "USD".into(),
            cost: cost.into(),
        };
    let rows = vec![
        day("2026-10-01", "222222222222", "AmazonEC2", "10"),
        day("2026-10-02", "222222222222", "AmazonEC2", "12.5"),
        day("2026-10-03", "222222222222", "AmazonEC2", "90"),
        day("2026-10-01", "333333333333", "AmazonS3", "1.25"),
        day(
            "2026-10-03",
            "333333333333",
            "<script>alert(1)</script>",
            "2",
        ),
    ];
    costs
        .replace_period("costs", "111111111111", "2026-10", &rows)
        .await
        .unwrap();
    use tugboat::journal::Journal;
    journal.put(&cur_record("2026-10")).await.unwrap();
    for (n, zone) in [(1, "us-east-1a"), (2, "us-east-1a"), (3, "us-east-1b")] {
        journal.put(&spot_record(n, zone)).await.unwrap();
    }
    // The resource scan's findings: two accounts, a hostile detail.
    let finding =
        |account: &str, resource: &str, cost: f64, age: u64| tugboat::ports::resources::Finding {
            account: account.into(),
            region: "us-east-1".into(),
            kind: tugboat::ports::resources::FindingKind::UnattachedVolume,
            resource: resource.into(),
            detail: "<img src=x onerror=alert(1)>".into(),
            size_gib: Some(100),
            age_days: Some(age),
            monthly_cost: cost,
            currency: "USD".into(),
            price: "price table ebs:gp3 0.08/GiB-month".into(),
            name: None,
        };
    let findings = deps.ports.findings.clone();
    findings
        .replace(
            "findings",
            "222222222222",
            "us-east-1",
            &[
                finding("222222222222", "vol-a", 8.0, 3),
                finding("222222222222", "vol-b", 2.0, 400),
            ],
        )
        .await
        .unwrap();
    findings
        .replace(
            "findings",
            "333333333333",
            "us-east-1",
            &[finding("333333333333", "vol-c", 4.0, 10)],
        )
        .await
        .unwrap();
    let config = "[aws]\nregion = \"us-east-1\"\n\n[[queues]]\nname = \"q\"\nreceive_wait = \"1s\"\n\n\
        [cur]\ntable = \"costs\"\n\n[resources]\ntable = \"findings\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[shutdown]\ndeadline = \"2s\"\n";
    let app = support::app::spawn_app(config, deps).await;
    let base = format!("http://{}", app.admin);
    let client = reqwest::Client::new();
    let get = async |path: &str| -> Value {
        client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let v = get("/costs").await;
    assert_eq!(v["period"], "2026-10", "{v}");
    assert_eq!(
        v["services"],
        json!(["AmazonEC2", "<script>alert(1)</script>", "AmazonS3"]),
        "{v}"
    );
    assert_eq!(v["days"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["total"], 115.75, "{v}");
    assert_eq!(v["anomalies"][0]["service"], "AmazonEC2");
    let one = get("/costs?account=333333333333").await;
    assert_eq!(one["total"], 3.25, "{one}");
    assert!(
        one["anomalies"].as_array().unwrap().is_empty(),
        "the anomaly is the other account's"
    );
    let f = get("/findings").await;
    assert_eq!(f["monthly_cost"], 14.0, "{f}");
    assert_eq!(
        f["findings"][0]["resource"], "vol-a",
        "costliest first: {f}"
    );
    assert_eq!(f["accounts"][0]["monthly_cost"], 10.0, "{f}");
    let by_age = get("/findings?sort=age").await;
    assert_eq!(by_age["findings"][0]["resource"], "vol-b", "{by_age}");
    let bad = client
        .get(format!("{base}/findings?sort=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "a bad sort is a bad request");
    let h = get("/interruptions").await;
    assert_eq!(h["interruptions"], 3, "{h}");
    assert_eq!(h["pools"][0]["zone"], "us-east-1a", "{h}");

    // In the browser: the chart has a bar per day and service, the service name is text.
    let pages = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::start();
        browser.goto(&format!("{base}/costs"));
        let bars = browser.count("#daily rect[class^=\"s\"]");
        let total = browser.text("#total");
        let anomalies = browser.count("#anomalies tbody tr");
        let legend = browser.text("ul.legend");
        let pwned = browser.eval(
            "typeof window.alert === 'function' && document.querySelectorAll('main script').length",
        );
        browser.screenshot("costs");
        browser.goto(&format!("{base}/interruptions"));
        let pools = browser.count("#pools tbody tr");
        browser.screenshot("interruptions");
        browser.goto(&format!("{base}/findings?sort=age"));
        let rows = browser.count("#findings tbody tr");
        let oldest = browser.text("#findings tbody tr:first-child");
        let injected = browser.count("main img");
        browser.screenshot("findings");
        (
            bars,
            total,
            anomalies,
            legend,
            pwned,
            pools,
            (rows, oldest, injected),
        )
    })
    .await
    .unwrap();
    let (bars, total, anomalies, legend, pwned, pools, (rows, oldest, injected)) = pages;
    assert_eq!(rows, 3, "a row per finding");
    assert!(oldest.contains("vol-b"), "sorted by age: {oldest}");
    assert!(
        oldest.contains("<img src=x onerror=alert(1)>"),
        "the detail is text: {oldest}"
    );
    assert_eq!(injected, 0, "no element from a finding's text");
    assert_eq!(bars, 5, "one bar per (day, service) with a cost");
    assert_eq!(total, "115.75");
    assert_eq!(anomalies, 1);
    assert!(legend.contains("<script>alert(1)</script>"), "{legend}");
    assert_eq!(pwned, 0);
    assert_eq!(pools, 2);
    app.stop().await;
}
