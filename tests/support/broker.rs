//! MQTT brokers for tests, and a subscriber that records what it hears.
//!
//! [`Broker::shared`] is the machine's broker on 127.0.0.1:1883 where one answers, otherwise a
//! Mosquitto of the test's own. [`Broker::own`] always starts one (from `PATH` or
//! `/usr/sbin`) on a free loopback port, with persistence in a temporary folder, so that a
//! test can stop and restart it without losing a persistent subscriber's session. Without
//! Mosquitto the test fails saying so; it never skips.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// The broker every test may share.
    pub fn shared() -> Broker {
        if TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], 1883)),
            Duration::from_millis(300),
        )
        .is_ok()
        {
            return Broker {
                port: 1883,
                child: None,
                dir: None,
            };
        }
        Broker::own()
    }

    /// A broker of this test's own, on a free port.
    pub fn own() -> Broker {
        Broker::own_with(|_| "allow_anonymous true\n".into())
    }

    /// A broker of this test's own that admits only `user` with `password`.
    pub fn own_with_password(user: &str, password: &str) -> Broker {
        Broker::own_with(|dir| {
            let file = dir.join("passwords");
            // mosquitto_passwd's file format: user:$7$… (PBKDF2-SHA512); made by the tool itself.
            let status = Command::new(Broker::tool("mosquitto_passwd"))
                .arg("-c")
                .arg("-b")
                .arg(&file)
                .arg(user)
                .arg(password)
                .status()
                .expect("running mosquitto_passwd");
            assert!(status.success(), "mosquitto_passwd failed");
            format!("allow_anonymous false\npassword_file {}\n", file.display())
        })
    }

    /// A broker whose folder `auth` may fill, returning the configuration's auth lines.
    fn own_with(auth: impl FnOnce(&std::path::Path) -> String) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto started as root runs as the `mosquitto` user: the folder must be
        // writable by it, or its persistence fails at every save (and a restart loses the
        // persistent subscriber's session) with nothing but a line in its own log.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let auth = auth(dir.path());
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{auth}persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut b = Broker {
            port,
            child: None,
            dir: Some(dir),
        };
        b.start();
        b
    }

    fn binary() -> PathBuf {
        Broker::tool("mosquitto")
    }

    /// A Mosquitto program, from `PATH` or the sbin folders.
    fn tool(name: &str) -> PathBuf {
        let candidates = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")]);
        for dir in candidates {
            let b = dir.join(name);
            if b.is_file() {
                return b;
            }
        }
        panic!(
            "this test needs `{name}` (a broker of its own), which is not installed \
             (Debian: apt-get install mosquitto; scripts/test.sh installs it)"
        );
    }

    /// Starts (or restarts) the broker of this test's own and waits until it accepts.
    pub fn start(&mut self) {
        let dir = self
            .dir
            .as_ref()
            .expect("only a broker of the test's own can be started");
        let child = Command::new(Broker::binary())
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker of this test's own (SIGTERM: it saves its persistence first).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// The `[brokers.NAME]` section for this broker.
    pub fn section(&self, name: &str) -> String {
        format!(
            "[brokers.{name}]\nhost = \"127.0.0.1\"\nport = {}\nack_timeout = \"2s\"\n",
            self.port
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a subscriber heard: (topic, payload).
pub type Heard = Arc<Mutex<Vec<(String, String)>>>;

/// Subscribes to `filters` at QoS 1 and records every message. With `persistent`, the session
/// outlives a broker restart (clean session off, a fixed client id), so that messages
/// published before it reconnects are kept for it.
pub async fn subscribe(port: u16, filters: &[&str], persistent: bool) -> Heard {
    let heard: Heard = Arc::default();
    let id = format!("test-sub-{}-{}", std::process::id(), rand_suffix());
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(!persistent);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
    let h = heard.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if !ack.session_present {
                        let many = filters
                            .iter()
                            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                        client.subscribe_many(many).await.unwrap();
                    } else if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    h.lock().unwrap().push((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                    ));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .expect("the subscriber did not get its SUBACK")
        .unwrap();
    heard
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Publishes `payload` to `topic` at QoS 1 as a client of its own, and waits for the PUBACK.
pub async fn publish(port: u16, topic: &str, payload: &str) {
    let id = format!("test-pub-{}-{}", std::process::id(), rand_suffix());
    let options = MqttOptions::new(id, "127.0.0.1", port);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
        .await
        .unwrap();
    let acked = async {
        loop {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = eventloop.poll().await {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), acked)
        .await
        .expect("no PUBACK");
}
