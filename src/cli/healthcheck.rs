//! `tugboat healthcheck [--url URL] [--ready]`: asks the admin listener whether the service
//! is alive (`/healthz`) or ready (`/readyz`) and exits 0 or 1, for a container health check
//! in an image without curl. Without `--url` the address is `[admin] listen` from the
//! configuration (an unspecified address such as `0.0.0.0` is asked on loopback), or
//! `127.0.0.1:9090` when there is no configuration to read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::{CliError, load_config};

pub async fn run(
    config: &Path,
    url: Option<&str>,
    ready: bool,
    timeout: Duration,
) -> Result<(), CliError> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            let mut listen = load_config(config)
                .map(|c| c.admin.listen)
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9090)));
            if listen.ip().is_unspecified() {
                listen.set_ip(match listen.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                });
            }
            let path = if ready { "readyz" } else { "healthz" };
            format!("http://{listen}/{path}")
        }
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("healthy: HTTP {} from {url}", r.status().as_u16());
            Ok(())
        }
        Ok(r) => {
            let status = r.status().as_u16();
            let body: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            eprintln!("unhealthy: HTTP {status} from {url}: {body}");
            Err(CliError::Quiet(1))
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {}", crate::aws::chain(&e));
            Err(CliError::Quiet(1))
        }
    }
}
