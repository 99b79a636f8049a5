//! A report manifest (`<report>-Manifest.json`): the parts that make up one report.

use serde::Deserialize;

/// What a manifest says about its report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The report's parts, as keys in its bucket (legacy CUR writes them with a leading `/`).
    pub report_keys: Vec<String>,
    #[serde(default)]
    pub bucket: String,
    #[serde(default)]
    pub billing_period: Option<BillingPeriod>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BillingPeriod {
    pub start: String,
    pub end: String,
}

impl Manifest {
    /// Parses a manifest named `name` in errors.
    pub fn parse(text: &[u8], name: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(text)
            .map_err(|e| format!("{name}: not a report manifest: {e}"))?;
        if m.report_keys.is_empty() {
            return Err(format!(
                "{name}: the manifest lists no report parts (reportKeys)"
            ));
        }
        Ok(m)
    }

    /// The parts' keys without a leading `/`.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.report_keys.iter().map(|k| k.trim_start_matches('/'))
    }

    /// Whether `key` names a manifest.
    pub fn is_manifest_key(key: &str) -> bool {
        key.ends_with("-Manifest.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_list_their_parts_and_bad_ones_are_refused() {
        let m = Manifest::parse(
            br#"{"reportKeys": ["/r/20180801-20180901/id/r-1.csv.gz"], "bucket": "b", "billingPeriod": {"start": "20180801T000000.000Z", "end": "20180901T000000.000Z"}}"#,
            "r-Manifest.json",
        )
        .unwrap();
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["r/20180801-20180901/id/r-1.csv.gz"]
        );
        assert!(Manifest::is_manifest_key("a/b/r-Manifest.json"));
        assert!(!Manifest::is_manifest_key("a/b/r-1.csv.gz"));
        let e = Manifest::parse(b"{}", "m.json").unwrap_err();
        assert!(e.starts_with("m.json: not a report manifest"), "{e}");
        let e = Manifest::parse(br#"{"reportKeys": []}"#, "m.json").unwrap_err();
        assert!(e.contains("no report parts"), "{e}");
        assert!(Manifest::parse(b"not json", "m.json").is_err());
    }
}
