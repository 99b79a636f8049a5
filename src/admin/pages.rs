//! The console's pages: server-rendered HTML of the views in [`super::views`], a stylesheet
//! and one small script (live updates, confirmations), all compiled into the binary.
//!
//! Everything shown is escaped ([`esc`]): event bodies, ids and errors come from whoever
//! can send to a queue. The pages carry a Content-Security-Policy that allows no inline
//! script or style, so that a missed escape still could not run anything; bars and charts
//! are SVG shapes placed by attributes, not styles.

use std::fmt::Write as _;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::views::{DeadLettersView, InstanceView, RouteView, WorkflowsView};
use super::{ApiError, Console, encode};
use crate::journal::Status;
use crate::schedule::runner::ScheduleView;
use crate::workflows::BuiltPage;

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// What every page sends with it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

pub async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

pub fn html(page: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Not `no-referrer`: with it a browser sends `Origin: null` on the console's own forms.
            (header::REFERRER_POLICY, "same-origin"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

pub use crate::html::esc;
use crate::html::select;

fn time_of(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|| ms.to_string())
}

fn took(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        120_000..7_200_000 => format!("{:.1} min", ms as f64 / 60_000.0),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// The page around `body`: navigation, the action token, the stylesheet and the script.
fn layout(title: &str, active: &str, console: &Console, body: &str) -> String {
    let mut nav = String::new();
    let own = [
        ("/workflows", "Workflows"),
        ("/dead-letters", "Dead letters"),
        ("/routes", "Routes"),
    ];
    let workflows = console.pages.iter().map(|p| (p.spec.path, p.spec.title));
    for (path, name) in own.into_iter().chain(workflows) {
        let current = if name == active {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{path}\"{current}>{name}</a>");
    }
    let mode = if console.allow_actions {
        "<span class=\"mode on\">actions on</span>"
    } else {
        "<span class=\"mode\" title=\"set [admin] allow_actions = true to act from here\">read-only</span>"
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"tugboat-token\" content=\"{token}\">\
         <title>{title} · tugboat</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/console.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/workflows\">tugboat</a><nav>{nav}</nav>{mode}</header>\
         <main>{body}</main></body></html>\n",
        token = esc(console.token_for_page()),
        title = esc(title),
    )
}

pub fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} · tugboat</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main>\
         <h1>{code}</h1><p class=\"error\">{message}</p><p><a href=\"/workflows\">Workflows</a></p></main></body></html>\n",
        code = status,
        message = esc(message)
    );
    let mut r = html(body);
    *r.status_mut() = status;
    r
}

fn notice(text: Option<&str>) -> String {
    match text {
        Some(t) if t.starts_with("refused") => {
            format!("<p class=\"notice refused\" role=\"status\">{}</p>", esc(t))
        }
        Some(t) => format!("<p class=\"notice\" role=\"status\">{}</p>", esc(t)),
        None => String::new(),
    }
}

/// A form that POSTs an action with the token; `confirm` asks first.
fn action(
    console: &Console,
    path: &str,
    label: &str,
    confirm: Option<&str>,
    fields: &[(&str, &str)],
    back: &str,
) -> String {
    if !console.allow_actions {
        return String::new();
    }
    let mut hidden = format!(
        "<input type=\"hidden\" name=\"token\" value=\"{}\"><input type=\"hidden\" name=\"back\" value=\"{}\">",
        esc(console.token_for_page()),
        esc(back)
    );
    for (k, v) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
    }
    let confirm = confirm
        .map(|c| format!(" data-confirm=\"{}\"", esc(c)))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"{}\" class=\"action\"{confirm}>{hidden}<button type=\"submit\">{}</button></form>",
        esc(path),
        esc(label)
    )
}

fn status_badge(status: &str) -> String {
    format!("<span class=\"status {0}\">{0}</span>", esc(status))
}

/// One row of the instances table; `console.js` builds the same cells for live rows.
fn instance_row(out: &mut String, s: &crate::journal::Summary) {
    let detail = s
        .reason
        .as_deref()
        .or(s.last_error.as_deref())
        .unwrap_or("");
    let _ = write!(
        out,
        "<tr data-id=\"{id}\"><td><a href=\"/workflows/{href}\">{id}</a></td><td>{kind}</td><td>{route}</td>\
         <td>{status}</td><td>{step}</td><td class=\"num\">{steps}</td><td>{updated}</td><td class=\"detail\">{detail}</td></tr>",
        id = esc(&s.id),
        href = encode(&s.id),
        kind = esc(&s.workflow),
        route = esc(&s.route),
        status = status_badge(&s.status),
        step = esc(s.step.as_deref().unwrap_or("")),
        steps = s.steps,
        updated = time_of(s.updated_ms),
        detail = esc(detail),
    );
}

pub fn workflows(v: &WorkflowsView, console: &Console) -> String {
    let q = &v.query;
    let mut body = String::new();
    body.push_str(&notice(q.notice.as_deref()));
    // Counts per status: each a link that filters by it.
    body.push_str("<ul class=\"counts\">");
    let total: usize = v.counts.values().sum();
    let mut base = Vec::new();
    for (k, val) in [
        ("route", &q.route),
        ("kind", &q.kind),
        ("since", &q.since),
        ("q", &q.q),
    ] {
        if let Some(val) = val {
            base.push(format!("{k}={}", encode(val)));
        }
    }
    let link = |status: Option<&str>| {
        let mut parts = base.clone();
        if let Some(s) = status {
            parts.push(format!("status={s}"));
        }
        format!("/workflows?{}", parts.join("&"))
    };
    let _ = write!(
        body,
        "<li><a href=\"{}\"{}>all <b data-count=\"all\">{total}</b></a></li>",
        esc(&link(None)),
        if q.status.is_none() {
            " aria-current=\"true\""
        } else {
            ""
        }
    );
    for status in Status::NAMES {
        let n = v.counts.get(status).copied().unwrap_or(0);
        let _ = write!(
            body,
            "<li><a href=\"{}\"{}>{} <b data-count=\"{}\">{n}</b></a></li>",
            esc(&link(Some(status))),
            if q.status.as_deref() == Some(status) {
                " aria-current=\"true\""
            } else {
                ""
            },
            status_badge(status),
            esc(status)
        );
    }
    body.push_str("</ul>");
    // Filters.
    let route_names: Vec<String> = v.routes.iter().map(|r| r.name.clone()).collect();
    let statuses: Vec<String> = Status::NAMES.iter().map(|s| s.to_string()).collect();
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/workflows\">{}{}{}\
         <label>updated within <input name=\"since\" size=\"5\" placeholder=\"1h\" value=\"{}\"></label>\
         <label>id or event id <input name=\"q\" type=\"search\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        select("status", "status", q.status.as_deref(), &statuses),
        select("route", "route", q.route.as_deref(), &route_names),
        select("kind", "workflow", q.kind.as_deref(), &v.kinds),
        esc(q.since.as_deref().unwrap_or("")),
        esc(q.q.as_deref().unwrap_or("")),
    );
    let paused: Vec<&RouteView> = v.routes.iter().filter(|r| r.paused).collect();
    if !paused.is_empty() {
        let names: Vec<String> = paused.iter().map(|r| esc(&r.name)).collect();
        let _ = write!(
            body,
            "<p class=\"notice paused\">Paused: {} — their events wait in the queue (<a href=\"/routes\">routes</a>).</p>",
            names.join(", ")
        );
    }
    // The table, followed live.
    let mut follow = vec![format!("after={}", crate::journal::now_ms())];
    for (k, val) in [
        ("status", &q.status),
        ("route", &q.route),
        ("kind", &q.kind),
    ] {
        if let Some(val) = val {
            follow.push(format!("{k}={}", encode(val)));
        }
    }
    let _ = write!(
        body,
        "<p class=\"meta\"><span id=\"shown\">{}</span> of <span id=\"matching\">{}</span> shown, newest first · <span class=\"live\" id=\"live\">live</span></p>\
         <table id=\"instances\" data-live=\"/events?{}\" data-mode=\"workflows\" data-limit=\"{}\" data-q=\"{}\" data-since=\"{}\">\
         <thead><tr><th>id</th><th>workflow</th><th>route</th><th>status</th><th>step</th><th>steps</th><th>updated (UTC)</th><th>reason or last error</th></tr></thead><tbody>",
        v.instances.len(),
        v.matching,
        esc(&follow.join("&")),
        q.limit.unwrap_or(100),
        esc(q.q.as_deref().unwrap_or("")),
        esc(q.since.as_deref().unwrap_or("")),
    );
    for s in &v.instances {
        instance_row(&mut body, s);
    }
    body.push_str("</tbody></table>");
    if v.instances.is_empty() {
        body.push_str(
            "<p class=\"empty\">No instances match. Events appear here as they arrive.</p>",
        );
    }
    layout("Workflows", "Workflows", console, &body)
}

fn pretty(v: &Value) -> String {
    esc(&serde_json::to_string_pretty(v).unwrap_or_default())
}

pub fn instance(v: &InstanceView, console: &Console, note: Option<&str>) -> String {
    let r = &v.record;
    let mut body = notice(note);
    let _ = write!(
        body,
        "<h1 class=\"id\">{}</h1><dl class=\"facts\">\
         <dt>status</dt><dd>{}</dd><dt>workflow</dt><dd>{}</dd><dt>route</dt><dd>{}</dd><dt>queue</dt><dd>{}</dd>\
         <dt>message</dt><dd>{}</dd><dt>run</dt><dd>{}</dd><dt>created</dt><dd>{}</dd><dt>updated</dt><dd>{}</dd>",
        esc(&r.id),
        status_badge(r.status.name()),
        esc(&r.workflow),
        esc(&r.route),
        esc(&r.queue),
        esc(&r.message_id),
        r.generation,
        time_of(r.created_ms),
        time_of(r.updated_ms),
    );
    let reason = match &r.status {
        Status::Compensating { reason }
        | Status::Failed { reason }
        | Status::DeadLettered { reason }
        | Status::Cancelled { reason } => Some(reason),
        _ => None,
    };
    if let Some(reason) = reason {
        let _ = write!(
            body,
            "<dt>reason</dt><dd class=\"error\">{}</dd>",
            esc(reason)
        );
    }
    if let Some(c) = &r.cancel {
        let _ = write!(
            body,
            "<dt>cancelled</dt><dd>by {} at {}</dd>",
            esc(&c.by),
            time_of(c.at_ms)
        );
    }
    match (&v.trace_id, &v.trace_url) {
        (Some(id), Some(url)) => {
            let _ = write!(
                body,
                "<dt>trace</dt><dd><a href=\"{}\" rel=\"noreferrer\">{}</a></dd>",
                esc(url),
                esc(id)
            );
        }
        (Some(id), None) => {
            let _ = write!(body, "<dt>trace</dt><dd><code>{}</code></dd>", esc(id));
        }
        _ => {}
    }
    body.push_str(&state_path(&r.state));
    body.push_str("</dl>");
    let back = format!("/workflows/{}", encode(&r.id));
    if v.can_cancel {
        body.push_str(&action(
            console,
            &format!("/workflows/{}/cancel", encode(&r.id)),
            "Cancel",
            Some("Cancel this instance? Its compensation runs, then it ends as cancelled."),
            &[],
            &back,
        ));
    }
    if v.can_retry {
        body.push_str(&action(
            console,
            &format!("/workflows/{}/retry", encode(&r.id)),
            "Retry",
            Some("Retry this instance? Its event runs again as a new run, with new idempotency keys."),
            &[],
            &back,
        ));
    }
    // The timeline.
    let t = &v.timeline;
    let _ = write!(
        body,
        "<h2>Steps of run {}</h2><p class=\"meta\">{} → {} ({})</p><table class=\"timeline\" data-live=\"/events?id={}&amp;after={}\" data-mode=\"instance\">\
         <thead><tr><th>step</th><th>attempts</th><th class=\"axis\">time</th></tr></thead><tbody>",
        r.generation,
        time_of(t.start_ms),
        time_of(t.end_ms),
        took(t.end_ms.saturating_sub(t.start_ms)),
        esc(&encode(&r.id)),
        crate::journal::now_ms(),
    );
    for row in &t.rows {
        let mut bars = String::new();
        for b in &row.bars {
            let title = format!(
                "{} {}{}{}",
                time_of(b.started_ms),
                b.ended_ms
                    .map(|e| took(e.saturating_sub(b.started_ms)))
                    .unwrap_or_else(|| "running".into()),
                if b.error.is_some() { ": " } else { "" },
                b.error.as_deref().unwrap_or("")
            );
            let _ = write!(
                bars,
                "<rect class=\"bar {}\" x=\"{:.2}\" width=\"{:.2}\" y=\"2\" height=\"16\"><title>{}</title></rect>",
                b.state,
                b.left * 10.0,
                b.width * 10.0,
                esc(&title)
            );
        }
        let kind = if row.compensation {
            " <span class=\"tag\">compensation</span>"
        } else if row.sleep {
            " <span class=\"tag\">sleep</span>"
        } else {
            ""
        };
        let earlier = if row.earlier_attempts > 0 {
            format!(" ({} earlier not drawn)", row.earlier_attempts)
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr class=\"step {state}\" data-step=\"{name}\"><td><a href=\"#step-{anchor}\">{name}</a>{kind}</td><td class=\"num\">{}{earlier}</td>\
             <td class=\"axis\"><svg viewBox=\"0 0 1000 20\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{name}: {state}\">{bars}</svg></td></tr>",
            row.attempts,
            state = row.state,
            name = esc(&row.name),
            anchor = esc(&encode(&row.name)),
        );
    }
    body.push_str("</tbody></table>");
    if let Some(p) = &r.pending {
        let _ = write!(
            body,
            "<p class=\"meta\">next: <code>{}</code></p>",
            esc(&p.name)
        );
    }
    // Each step's input, output and error.
    body.push_str("<h2>Step details</h2>");
    for s in &r.steps {
        let _ = write!(
            body,
            "<details id=\"step-{}\" class=\"step-detail\"><summary>{}{} — {} attempt(s), key <code>{}</code></summary>",
            esc(&encode(&s.name)),
            esc(&s.name),
            if s.compensation {
                " (compensation)"
            } else {
                ""
            },
            s.attempts,
            esc(&s.key)
        );
        if let Some(i) = &s.input {
            let _ = write!(body, "<h3>input</h3><pre>{}</pre>", pretty(i));
        }
        if let Some(o) = &s.output {
            let _ = write!(body, "<h3>output</h3><pre>{}</pre>", pretty(o));
        }
        if let Some(e) = &s.last_error {
            let _ = write!(body, "<h3>error</h3><pre class=\"error\">{}</pre>", esc(e));
        }
        body.push_str("</details>");
    }
    for e in &r.earlier {
        let _ = write!(
            body,
            "<p class=\"meta\">run {}: {} at {}, {} step(s)</p>",
            e.generation,
            esc(&e.ended),
            time_of(e.ended_ms),
            e.steps.len()
        );
    }
    let _ = write!(
        body,
        "<h2>Event</h2><pre class=\"event\">{}</pre>",
        pretty(&r.input)
    );
    if r.params != Value::Null && r.params != Value::Object(Default::default()) {
        let _ = write!(
            body,
            "<h2>Route params</h2><pre>{}</pre>",
            pretty(&r.params)
        );
    }
    if let Some(o) = &r.output {
        let _ = write!(body, "<h2>Output</h2><pre>{}</pre>", pretty(o));
    }
    layout(&r.id, "Workflows", console, &body)
}

pub fn routes(
    v: &[RouteView],
    schedules: &Result<Vec<ScheduleView>, ApiError>,
    console: &Console,
    note: Option<&str>,
) -> String {
    let mut body = notice(note);
    body.push_str("<h1>Routes</h1><p class=\"meta\">A paused route's events wait in their queue (put back and looked at again every <code>[engine] pause_recheck</code>); a resume runs them.</p>");
    body.push_str("<table id=\"routes\"><thead><tr><th>route</th><th>workflow</th><th>state</th><th></th></tr></thead><tbody>");
    for r in v {
        let act = if r.paused {
            action(
                console,
                &format!("/routes/{}/resume", encode(&r.name)),
                "Resume",
                None,
                &[],
                "/routes",
            )
        } else {
            action(
                console,
                &format!("/routes/{}/pause", encode(&r.name)),
                "Pause",
                Some("Pause this route? Its events wait in the queue until it is resumed."),
                &[],
                "/routes",
            )
        };
        let _ = write!(
            body,
            "<tr data-route=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td>{act}</td></tr>",
            esc(&r.workflow),
            if r.paused {
                "<span class=\"status paused\">paused</span>"
            } else {
                "running"
            },
            name = esc(&r.name),
        );
    }
    body.push_str("</tbody></table>");
    schedules_section(&mut body, schedules, console);
    layout("Routes", "Routes", console, &body)
}

/// The schedules under the routes: expression, zone, queue, next fires, pause and resume.
fn schedules_section(
    body: &mut String,
    schedules: &Result<Vec<ScheduleView>, ApiError>,
    console: &Console,
) {
    body.push_str("<h2>Schedules</h2>");
    let list = match schedules {
        Ok(list) if list.is_empty() => {
            body.push_str("<p class=\"empty\">No <code>[[schedules]]</code> configured.</p>");
            return;
        }
        Ok(list) => list,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e.message));
            return;
        }
    };
    body.push_str("<p class=\"meta\">Every tick sends an event to the schedule's queue; a paused schedule fires nothing, and a resume does not fire the ticks it passed over.</p>");
    body.push_str("<table id=\"schedules\"><thead><tr><th>schedule</th><th>expression</th><th>zone</th><th>queue</th><th>next</th><th>state</th><th></th></tr></thead><tbody>");
    for s in list {
        let act = if !s.enabled {
            String::new()
        } else if s.paused {
            action(
                console,
                &format!("/schedules/{}/resume", encode(&s.name)),
                "Resume",
                None,
                &[],
                "/routes",
            )
        } else {
            action(
                console,
                &format!("/schedules/{}/pause", encode(&s.name)),
                "Pause",
                Some("Pause this schedule? It fires nothing until resumed."),
                &[],
                "/routes",
            )
        };
        let state = if !s.enabled {
            "<span class=\"status\">disabled</span>"
        } else if s.paused {
            "<span class=\"status paused\">paused</span>"
        } else {
            "running"
        };
        let _ = write!(
            body,
            "<tr data-schedule=\"{name}\"><td>{name}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td><td>{act}</td></tr>",
            esc(&s.expression),
            esc(&s.timezone),
            esc(&s.queue),
            esc(&s.next.join(", ")),
            name = esc(&s.name),
        );
    }
    body.push_str("</tbody></table>");
}

pub fn dead_letters(v: &DeadLettersView, console: &Console) -> String {
    let mut body = notice(v.notice.as_deref());
    body.push_str("<h1>Dead letters</h1>");
    for q in &v.queues {
        let Some(dlq) = &q.dlq else {
            let _ = write!(
                body,
                "<h2>{}</h2><p class=\"meta\">No dlq configured.</p>",
                esc(&q.queue)
            );
            continue;
        };
        let _ = write!(
            body,
            "<section class=\"dlq\" data-queue=\"{0}\"><h2>{0} <span class=\"meta\">→ {1}: {2} message(s)</span></h2>",
            esc(&q.queue),
            esc(dlq),
            q.letters.len()
        );
        if let Some(e) = &q.error {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(e));
        }
        if !q.letters.is_empty() {
            body.push_str(&action(
                console,
                &format!("/dead-letters/{}/redrive", encode(&q.queue)),
                "Redrive all",
                Some(&format!(
                    "Move every dead letter of {dlq} back to {}?",
                    q.queue
                )),
                &[],
                "/dead-letters",
            ));
        }
        body.push_str("<table class=\"letters\"><thead><tr><th>message</th><th>workflow</th><th>step</th><th>attempts</th><th>reason</th><th>failed at</th><th>now</th><th></th></tr></thead><tbody>");
        for l in &q.letters {
            let workflow = match &l.workflow_id {
                Some(id) => format!(
                    "<a href=\"/workflows/{}\">{}</a><br><span class=\"meta\">{} · route {} · run {}</span>",
                    encode(id),
                    esc(id),
                    esc(l.workflow.as_deref().unwrap_or("")),
                    esc(l.route.as_deref().unwrap_or("")),
                    esc(l.generation.as_deref().unwrap_or("")),
                ),
                None => "<span class=\"meta\">(not started: see the reason)</span>".into(),
            };
            let redrive_one = action(
                console,
                &format!("/dead-letters/{}/redrive", encode(&q.queue)),
                "Redrive",
                Some("Move this message back to its queue?"),
                &[("message_id", &l.message_id)],
                "/dead-letters",
            );
            let preview: String = l.body.chars().take(300).collect();
            let _ = write!(
                body,
                "<tr data-message=\"{mid}\"><td><code>{mid}</code><details><summary>body</summary><pre>{}</pre></details></td><td>{workflow}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"error\">{}</td><td>{}</td><td>{}</td><td>{redrive_one}</td></tr>",
                esc(&preview),
                esc(l.step.as_deref().unwrap_or("")),
                esc(l.attempts.as_deref().unwrap_or("")),
                esc(&l.reason),
                esc(l.failed_at.as_deref().unwrap_or("")),
                l.status_now
                    .as_deref()
                    .map(status_badge)
                    .unwrap_or_default(),
                mid = esc(&l.message_id),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    layout("Dead letters", "Dead letters", console, &body)
}

/// A page a workflow adds, in the console's layout.
pub fn workflow_page(view: &Value, page: &BuiltPage, console: &Console) -> String {
    let body = match (page.spec.body)(view) {
        Ok(body) => body,
        Err(e) => format!("<p class=\"error\">{}</p>", esc(&e)),
    };
    layout(page.spec.title, page.spec.title, console, &body)
}

/// The states an instance went through, when its state lists them as `path` (a definition's
/// run: `Route → Send → Pause`), as a fact of the instance page.
fn state_path(state: &serde_json::Value) -> String {
    let names = crate::contract::state_path(state);
    if names.is_empty() {
        return String::new();
    }
    let items: String = names
        .iter()
        .map(|n| format!("<li>{}</li>", esc(n)))
        .collect();
    format!("<dt>state path</dt><dd><ol class=\"path\">{items}</ol></dd>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_path_is_listed_escaped() {
        let out =
            state_path(&serde_json::json!({"path": ["Route", "<img src=x onerror=alert(1)>", 3]}));
        assert_eq!(
            out,
            "<dt>state path</dt><dd><ol class=\"path\"><li>Route</li><li>&lt;img src=x onerror=alert(1)&gt;</li></ol></dd>"
        );
        assert_eq!(state_path(&serde_json::json!({"n": 1})), "");
        assert_eq!(state_path(&serde_json::json!(7)), "");
    }

    #[test]
    fn path_parts_are_percent_encoded() {
        // Escaping is `crate::html`'s, tested there.
        assert_eq!(encode("r:a b/c"), "r:a%20b%2Fc");
    }

    #[test]
    fn a_row_shows_hostile_text_as_text() {
        let mut out = String::new();
        let s = crate::journal::Summary {
            id: "r:<img src=x onerror=alert(1)>".into(),
            workflow: "log".into(),
            route: "r\"><script>".into(),
            status: "failed".into(),
            reason: Some("<b>boom</b>".into()),
            event_id: None,
            steps: 1,
            step: None,
            generation: 0,
            created_ms: 0,
            updated_ms: 0,
            last_error: None,
            journaled: true,
        };
        instance_row(&mut out, &s);
        assert!(
            !out.contains("<img") && !out.contains("<script") && !out.contains("<b>"),
            "{out}"
        );
        assert!(out.contains("&lt;img src=x onerror=alert(1)&gt;"), "{out}");
    }
}
