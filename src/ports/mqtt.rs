//! The MQTT port: a long-lived connection per configured broker, shared by every route that
//! publishes to it. `src/mqtt/` implements it over rumqttc; [`super::memory::MemoryMqtt`]
//! records publications for unit tests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How to reach one broker (`[brokers.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// Host name or address. Required.
    pub host: String,
    /// Default 1883, or 8883 with `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// The client id; a broker drops an older connection with the same id. Default
    /// `tugboat-<broker name>-<process id>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Never logged. Set it from the environment: `TUGBOAT__BROKERS__NAME__PASSWORD`.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Connect over TLS (a build with `--features mqtt-tls`), verifying the broker against the
    /// system's roots, or against `ca_file` when given.
    #[serde(default)]
    pub tls: bool,
    /// A PEM file of extra CA certificates to trust (a private broker's CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// MQTT keep-alive. Default 30 s.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// The longest wait for a broker's acknowledgement before the publish is retried.
    /// Default 10 s.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}

impl BrokerSettings {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 8883 } else { 1883 })
    }
}

/// MQTT quality of service: 0 (at most once, no acknowledgement) or 1 (at least once,
/// acknowledged by PUBACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

impl TryFrom<u8> for Qos {
    type Error = String;
    fn try_from(v: u8) -> Result<Qos, String> {
        match v {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            2 => Err("QoS 2 is not offered: QoS 1 with an idempotent subscriber is at-least-once already".into()),
            other => Err(format!("qos must be 0 or 1, got {other}")),
        }
    }
}

impl From<Qos> for u8 {
    fn from(q: Qos) -> u8 {
        match q {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub topic: String,
    pub payload: String,
    pub qos: Qos,
    pub retain: bool,
}

/// Why a publish did not count: `retryable` when the broker is down, the connection dropped
/// before the acknowledgement, or the acknowledgement timed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MqttError {
    pub message: String,
    pub retryable: bool,
}

/// A connection to one broker.
#[async_trait]
pub trait Broker: Send + Sync + std::fmt::Debug {
    /// Publishes; returns once the broker acknowledged it (PUBACK for QoS 1; written to the
    /// connection for QoS 0).
    async fn publish(&self, publication: Publication) -> Result<(), MqttError>;
}

/// Opens broker connections.
pub trait Mqtt: Send + Sync + std::fmt::Debug {
    /// The connection to broker `name`, opened on first use and then shared: asking again for
    /// the same name returns the same connection. Connecting happens in the background,
    /// retried with back-off; publishes while it is down fail as retryable.
    fn broker(&self, name: &str, settings: &BrokerSettings) -> Result<Arc<dyn Broker>, String>;
}
