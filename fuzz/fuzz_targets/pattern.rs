//! Any bytes as a pattern (and the rest as an event): compiling and matching never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tugboat::routing::Pattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, event) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(p) = Pattern::parse(pattern)
        && let Ok(e) = serde_json::from_str::<serde_json::Value>(event)
    {
        let _ = p.matches(&e);
        let _ = p.first_mismatch(&e);
    }
});
