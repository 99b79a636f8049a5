//! Clients of one AWS service per region, made from the service's SDK configuration (its
//! credentials, endpoint and retry settings) on first use: the resource scan and auto-stop
//! work in any region a route names.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{Region, SdkConfig};

pub struct Regional<C> {
    sdk: SdkConfig,
    make: fn(&SdkConfig) -> C,
    clients: Mutex<HashMap<String, C>>,
}

impl<C> std::fmt::Debug for Regional<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let regions: Vec<String> = self
            .clients
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Regional")
            .field("regions", &regions)
            .finish_non_exhaustive()
    }
}

impl<C: Clone> Regional<C> {
    /// `make` builds a client from a configuration whose region is set.
    pub fn new(sdk: SdkConfig, make: fn(&SdkConfig) -> C) -> Regional<C> {
        Regional {
            sdk,
            make,
            clients: Mutex::default(),
        }
    }

    /// The client for `region`.
    pub fn get(&self, region: &str) -> C {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let sdk = self
                    .sdk
                    .to_builder()
                    .region(Region::new(region.to_string()))
                    .build();
                (self.make)(&sdk)
            })
            .clone()
    }
}
