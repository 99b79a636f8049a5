//! The MQTT adapter: the [`Mqtt`] port over rumqttc.
//!
//! One connection per broker, shared by every route that publishes to it, driven by one task
//! that polls rumqttc's event loop. A publish is handed to rumqttc's request queue and counts
//! only when its acknowledgement comes back: for QoS 1 the broker's PUBACK for its packet id,
//! for QoS 0 the packet written to the socket. rumqttc reports an outgoing publish's packet id
//! in the order the publishes were queued, which is how an acknowledgement finds its caller
//! (queueing and remembering the caller happen under one lock, so the orders agree).
//!
//! When the connection drops, every publish still waiting fails as retryable (the step
//! retries; a publish the broker did get may then arrive twice — at-least-once) and the task
//! reconnects with jittered back-off on a fresh session, so that nothing from the old one is
//! resent behind the workflow's back. While it is down, publishes fail at once as retryable.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use secrecy::ExposeSecret;
use tokio::sync::{oneshot, watch};

use crate::ports::mqtt::{Broker, BrokerSettings, Mqtt, MqttError, Publication, Qos};

/// Publishes that rumqttc may hold queued before new ones are refused (as retryable).
const REQUEST_CAPACITY: usize = 1024;
/// QoS 1 publishes on the wire awaiting PUBACK.
const INFLIGHT: u16 = 100;
/// The largest packet sent: room for any SQS message (256 KiB) as a payload, with its topic.
/// rumqttc's default is 10 KiB, and a larger publish fails the whole connection — every
/// publish waiting on it, and again on each retry — so an oversized one is refused up front.
const MAX_PACKET: usize = 320 * 1024;
/// Incoming packets are acknowledgements only.
const MAX_INCOMING: usize = 10 * 1024;

/// Opens one connection per broker name and hands out the same one afterwards.
#[derive(Debug, Default)]
pub struct MqttConnector {
    brokers: Mutex<HashMap<String, Arc<Connection>>>,
}

impl Mqtt for MqttConnector {
    fn broker(&self, name: &str, settings: &BrokerSettings) -> Result<Arc<dyn Broker>, String> {
        let mut brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = brokers.get(name) {
            return Ok(c.clone());
        }
        let options = options(name, settings)?;
        let connection = Arc::new(Connection {
            name: name.to_string(),
            ack_timeout: settings.ack_timeout,
            link: Mutex::new(Link::default()),
            up: watch::Sender::new(false),
        });
        tokio::spawn(drive(Arc::downgrade(&connection), options));
        brokers.insert(name.to_string(), connection.clone());
        Ok(connection)
    }
}

/// The client options for broker `name` (also the agent's peer watcher's).
pub(crate) fn options(name: &str, s: &BrokerSettings) -> Result<MqttOptions, String> {
    let client_id = s
        .client_id
        .clone()
        .unwrap_or_else(|| format!("tugboat-{name}-{}", std::process::id()));
    let mut o = MqttOptions::new(client_id, s.host.clone(), s.port());
    o.set_keep_alive(s.keep_alive);
    o.set_clean_session(true);
    o.set_inflight(INFLIGHT);
    o.set_request_channel_capacity(REQUEST_CAPACITY);
    o.set_max_packet_size(MAX_INCOMING, MAX_PACKET);
    if let Some(user) = &s.username {
        let password = s
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        o.set_credentials(user.clone(), password);
    }
    if s.tls {
        tls(&mut o, name, s)?;
    }
    Ok(o)
}

#[cfg(feature = "mqtt-tls")]
fn tls(o: &mut MqttOptions, name: &str, s: &BrokerSettings) -> Result<(), String> {
    use rumqttc::{TlsConfiguration, Transport};
    let config = match &s.ca_file {
        // The system's trust store.
        None => TlsConfiguration::Native,
        Some(ca_file) => TlsConfiguration::SimpleNative {
            ca: std::fs::read(ca_file)
                .map_err(|e| format!("brokers.{name}.ca_file {ca_file}: {e}"))?,
            client_auth: None,
        },
    };
    o.set_transport(Transport::tls_with_config(config));
    Ok(())
}

#[cfg(not(feature = "mqtt-tls"))]
fn tls(_: &mut MqttOptions, name: &str, _: &BrokerSettings) -> Result<(), String> {
    Err(format!(
        "brokers.{name}.tls: this build has no MQTT TLS; build with `--features mqtt-tls` (README, Dependencies, says what it adds)"
    ))
}

/// One broker's shared connection.
#[derive(Debug)]
struct Connection {
    name: String,
    ack_timeout: Duration,
    link: Mutex<Link>,
    /// Whether a session is live; publishers wait on it (within `ack_timeout`) rather than
    /// fail at once while the connection is being made.
    up: watch::Sender<bool>,
}

/// The live session, if any, and the callers waiting on it.
#[derive(Default)]
struct Link {
    client: Option<AsyncClient>,
    /// Queued publishes whose packet id rumqttc has not reported yet, oldest first.
    queued: VecDeque<oneshot::Sender<Result<(), String>>>,
    /// QoS 1 publishes on the wire, by packet id, awaiting PUBACK.
    inflight: HashMap<u16, oneshot::Sender<Result<(), String>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.client.is_some())
            .field("queued", &self.queued.len())
            .field("inflight", &self.inflight.len())
            .finish()
    }
}

impl Link {
    /// The session ended: every caller still waiting learns it.
    fn fail_all(&mut self, why: &str) {
        self.client = None;
        for tx in self
            .queued
            .drain(..)
            .chain(self.inflight.drain().map(|(_, tx)| tx))
        {
            let _ = tx.send(Err(why.to_string()));
        }
    }
}

fn retryable(message: String) -> MqttError {
    MqttError {
        message,
        retryable: true,
    }
}

#[async_trait]
impl Broker for Connection {
    async fn publish(&self, p: Publication) -> Result<(), MqttError> {
        // Fixed header (≤ 5), topic length (2), packet id (2), topic, payload.
        let size = 9 + p.topic.len() + p.payload.len();
        if size > MAX_PACKET {
            return Err(MqttError {
                message: format!(
                    "broker {}: a publish of {size} bytes is over the {MAX_PACKET}-byte packet limit",
                    self.name
                ),
                retryable: false,
            });
        }
        // A topic name a broker refuses (MQTT 3.1.1 §4.7.3: no wildcards, no NUL, not empty)
        // makes it close the connection every route on this broker shares: refused here.
        if p.topic.is_empty() || p.topic.contains(['\0', '+', '#']) {
            return Err(MqttError {
                message: format!(
                    "broker {}: {:?} is not a topic name a publish may use (empty, or a wildcard or NUL in it)",
                    self.name, p.topic
                ),
                retryable: false,
            });
        }
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let qos = match p.qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
        };
        let mut up = None;
        let rx = loop {
            {
                let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(client) = &link.client {
                    let (tx, rx) = oneshot::channel();
                    // Moved, not copied: the publication is this call's.
                    let Publication {
                        topic,
                        payload,
                        retain,
                        ..
                    } = p;
                    client
                        .try_publish(topic, qos, retain, payload.into_bytes())
                        .map_err(|e| retryable(format!("broker {}: {e}", self.name)))?;
                    link.queued.push_back(tx);
                    break rx;
                }
            }
            // Not connected: wait for the session (watched only on this path).
            let up = up.get_or_insert_with(|| self.up.subscribe());
            if tokio::time::timeout_at(deadline, up.wait_for(|live| *live))
                .await
                .is_err()
            {
                return Err(retryable(format!("broker {} is not connected", self.name)));
            }
            // Live again, or about to be marked down: look once more.
            tokio::task::yield_now().await;
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(why))) => Err(retryable(format!("broker {}: {why}", self.name))),
            Ok(Err(_)) => Err(retryable(format!(
                "broker {}: the connection closed before the acknowledgement",
                self.name
            ))),
            Err(_) => Err(retryable(format!(
                "broker {}: no acknowledgement within {}",
                self.name,
                humantime::format_duration(self.ack_timeout)
            ))),
        }
    }
}

/// Keeps broker `connection` connected for as long as anyone holds it.
async fn drive(connection: Weak<Connection>, options: MqttOptions) {
    let mut failures = 0u32;
    loop {
        let (client, mut eventloop) = AsyncClient::new(options.clone(), REQUEST_CAPACITY);
        let name = match connection.upgrade() {
            Some(c) => c.name.clone(),
            None => return,
        };
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!(broker = %name, "MQTT connected");
                let Some(c) = connection.upgrade() else {
                    return;
                };
                c.link.lock().unwrap_or_else(|e| e.into_inner()).client = Some(client);
                c.up.send_replace(true);
                drop(c);
                let why = serve(&connection, &mut eventloop).await;
                let Some(c) = connection.upgrade() else {
                    return;
                };
                tracing::warn!(broker = %name, error = %why, "MQTT connection lost; reconnecting");
                c.link
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fail_all(&why);
            }
            Ok(other) => {
                tracing::warn!(broker = %name, event = ?other, "MQTT: unexpected first event")
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(broker = %name, error = %e, failures, "MQTT broker unreachable; retrying");
                }
            }
        }
        tokio::time::sleep(reconnect_delay(failures)).await;
    }
}

/// Full-jitter back-off from 100 ms up to 5 s between connection attempts.
fn reconnect_delay(failures: u32) -> Duration {
    let bound = (0.1 * 2f64.powi(failures.min(10) as i32)).min(5.0);
    Duration::from_secs_f64(rand::rng().random_range(0.05..=bound.max(0.05)))
}

/// Polls one session until it fails; returns why.
async fn serve(connection: &Weak<Connection>, eventloop: &mut EventLoop) -> String {
    loop {
        let event = match eventloop.poll().await {
            Ok(e) => e,
            Err(e) => return format!("connection lost: {e}"),
        };
        let Some(c) = connection.upgrade() else {
            return "no longer used".into();
        };
        let mut link = c.link.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let Some(tx) = link.queued.pop_front() else {
                    continue;
                };
                if pkid == 0 {
                    // QoS 0: written and flushed is all the acknowledgement there is.
                    let _ = tx.send(Ok(()));
                } else {
                    link.inflight.insert(pkid, tx);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(tx) = link.inflight.remove(&ack.pkid) {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::Incoming(Packet::Disconnect) => return "the broker disconnected".into(),
            _ => {}
        }
    }
}
