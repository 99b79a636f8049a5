//! Headless Chromium (Debian's) driven through `tests/browser/driver.mjs` (playwright-core):
//! one JSON command per line, one answer per line, so that a test keeps its whole scenario in
//! Rust. `scripts/browser-tools.sh` installs both; without them a test fails saying so.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use super::root;

pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Where screenshots go: `target/console/`.
pub fn screenshots() -> PathBuf {
    let dir = root().join("target/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    pub fn start() -> Browser {
        let chromium =
            std::env::var("TUGBOAT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "{chromium} is missing: run scripts/browser-tools.sh (installs Debian's chromium and playwright-core)"
        );
        assert!(
            root()
                .join("tests/browser/node_modules/playwright-core")
                .exists(),
            "tests/browser/node_modules/playwright-core is missing: run scripts/browser-tools.sh"
        );
        let mut child = Command::new("node")
            .arg(root().join("tests/browser/driver.mjs"))
            .current_dir(root().join("tests/browser"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed to drive the browser (tests/browser/driver.mjs)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut b = Browser {
            child,
            stdin,
            stdout,
        };
        let ready = b.read();
        assert_eq!(
            ready["value"], "ready",
            "the browser driver did not start: {ready}"
        );
        b
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the browser driver exited");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
    }

    /// Runs one command; its value, or the driver's error.
    pub fn try_op(&mut self, command: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let answer = self.read();
        if answer["ok"] == true {
            Ok(answer["value"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    pub fn op(&mut self, command: Value) -> Value {
        let shown = command.to_string();
        self.try_op(command)
            .unwrap_or_else(|e| panic!("browser {shown}: {e}"))
    }

    /// Loads `url`; the HTTP status.
    pub fn goto(&mut self, url: &str) -> u64 {
        self.op(json!({"op": "goto", "url": url}))
            .as_u64()
            .unwrap_or(0)
    }

    pub fn click(&mut self, selector: &str) {
        self.op(json!({"op": "click", "selector": selector}));
    }

    pub fn text(&mut self, selector: &str) -> String {
        self.op(json!({"op": "text", "selector": selector}))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn count(&mut self, selector: &str) -> u64 {
        self.op(json!({"op": "count", "selector": selector}))
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until `selector` (holding `text`, if given) is visible.
    pub fn wait(
        &mut self,
        selector: &str,
        text: Option<&str>,
        timeout_ms: u64,
    ) -> Result<(), String> {
        self.try_op(
            json!({"op": "wait", "selector": selector, "text": text, "timeout_ms": timeout_ms}),
        )
        .map(|_| ())
    }

    /// [`Browser::wait`], failing the test with what the page shows instead.
    pub fn expect(&mut self, selector: &str, text: Option<&str>, timeout_ms: u64) {
        if let Err(e) = self.wait(selector, text, timeout_ms) {
            let url = self.op(json!({"op": "url"}));
            let shown = self
                .try_op(json!({"op": "text", "selector": "main"}))
                .unwrap_or_default();
            let shot = self.screenshot("failed");
            panic!(
                "{selector} {text:?} not shown: {e}\npage {url}: {shown}\nscreenshot {}",
                shot.display()
            );
        }
    }

    pub fn eval(&mut self, js: &str) -> Value {
        self.op(json!({"op": "eval", "js": js}))
    }

    /// A full-page screenshot in `target/console/<name>.png`.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let path = screenshots().join(format!("{name}.png"));
        self.op(json!({"op": "screenshot", "path": path}));
        path
    }

    /// The dialogs (confirmations) shown since the last call; they were accepted.
    pub fn dialogs(&mut self) -> Vec<String> {
        let v = self.op(json!({"op": "dialogs", "accept": true}));
        serde_json::from_value(v).unwrap_or_default()
    }

    /// What pages wrote to the console and the errors they raised, since the last call.
    pub fn console(&mut self) -> Vec<String> {
        serde_json::from_value(self.op(json!({"op": "console"}))).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.stdin.flush();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
