//! Real database servers for the agent's handler tests: the machine's own on 127.0.0.1's
//! default ports where they run, otherwise servers this harness starts from the binaries on
//! `PATH` in a temporary folder on a free port. Neither → the test fails naming the server
//! and the Debian package that provides it; it never passes silently.
//! `TUGBOAT_TEST_OWN_DATABASES=1` starts the harness's own even where the machine's run (to
//! try that path).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server the harness started; stopped when dropped.
pub struct OwnServer {
    child: Option<Child>,
    stop: Option<Command>,
    _dir: tempfile::TempDir,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.stop.take() {
            let _ = c.status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn machines(port: u16) -> bool {
    std::env::var_os("TUGBOAT_TEST_OWN_DATABASES").is_none() && answers(port)
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16, what: &str) {
    let start = Instant::now();
    while !answers(port) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` from PATH or PostgreSQL's versioned folder.
fn find(program: &str) -> Option<std::path::PathBuf> {
    let mut places: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    places.push("/usr/sbin".into());
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        places.extend(entries.flatten().map(|e| e.path().join("bin")));
    }
    places
        .into_iter()
        .map(|p| p.join(program))
        .find(|p| p.is_file())
}

/// A PostgreSQL connection string for a superuser (CHECKPOINT needs one), and the server if
/// the harness started it.
pub fn postgres() -> (String, Option<OwnServer>) {
    if machines(5432) {
        return ("postgresql://postgres@127.0.0.1:5432/postgres".into(), None);
    }
    let (Some(initdb), Some(pg_ctl)) = (find("initdb"), find("pg_ctl")) else {
        panic!(
            "no PostgreSQL on 127.0.0.1:5432 and no initdb/pg_ctl to start one: install the postgresql package"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    // PostgreSQL refuses to run as root: as the postgres user then, which must own the folder.
    let as_user = |program: &std::path::Path| {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
    }
    let ok = as_user(&initdb)
        .args(["-U", "postgres", "--auth=trust", "-D"])
        .arg(&data)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "initdb failed in {}", data.display());
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {}",
        dir.path().display()
    );
    let ok = as_user(&pg_ctl)
        .args(["-w", "-D"])
        .arg(&data)
        .args(["-o", &options, "start"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "pg_ctl start failed");
    wait_for(port, "PostgreSQL");
    eprintln!("started PostgreSQL of the test's own on port {port}");
    let mut stop = as_user(&pg_ctl);
    stop.args(["-m", "immediate", "-D"]).arg(&data).arg("stop");
    (
        format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
        Some(OwnServer {
            child: None,
            stop: Some(stop),
            _dir: dir,
        }),
    )
}

/// A MySQL/MariaDB URL for a user with RELOAD (FLUSH TABLES needs it), and the server if the
/// harness started it.
pub fn mariadb() -> (String, Option<OwnServer>) {
    if machines(3306) {
        return ("mysql://root@127.0.0.1:3306/mysql".into(), None);
    }
    let (Some(install), Some(server)) = (find("mariadb-install-db"), find("mariadbd")) else {
        panic!(
            "no MariaDB on 127.0.0.1:3306 and no mariadb-install-db/mariadbd to start one: install the mariadb-server package"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let user = if is_root() { "root" } else { "" };
    let mut c = Command::new(&install);
    c.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !user.is_empty() {
        c.arg(format!("--user={user}"));
    }
    assert!(
        c.status().is_ok_and(|s| s.success()),
        "mariadb-install-db failed in {}",
        data.display()
    );
    let mut c = Command::new(&server);
    c.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}", dir.path().join("sock").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !user.is_empty() {
        c.arg(format!("--user={user}"));
    }
    let child = c.spawn().expect("starting mariadbd");
    wait_for(port, "MariaDB");
    eprintln!("started MariaDB of the test's own on port {port}");
    (
        format!("mysql://root@127.0.0.1:{port}/mysql"),
        Some(OwnServer {
            child: Some(child),
            stop: None,
            _dir: dir,
        }),
    )
}
