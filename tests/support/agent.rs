//! `tugboat agent` as a child process of a test: its output lines collected, its reports
//! (the JSON lines with `handlers`) read back, stopped with SIGTERM.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub struct Agent {
    pub child: Child,
    pub out: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    pub fn start(config: &std::path::Path) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tugboat"))
            .args(["agent", "--config"])
            .arg(config)
            .env_remove("TUGBOAT_CONFIG")
            .env("TUGBOAT_AGENT_SIGNING_KEY", super::SIGNING_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    out.lock().unwrap().push(line);
                }
            });
        }
        Agent { child, out }
    }

    pub fn reports(&self) -> Vec<Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("handlers").is_some())
            .collect()
    }

    pub fn saw(&self, text: &str) -> bool {
        self.out.lock().unwrap().iter().any(|l| l.contains(text))
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A test that fails before `stop` leaves no agent running behind it.
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unused_imports)] // Not every test binary waits.
pub use super::wait::until_blocking as until;

pub fn later(secs: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
