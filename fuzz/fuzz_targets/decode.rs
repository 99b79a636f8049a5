//! Any bytes as an SQS message body: decoding never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let _ = tugboat::events::decode(&body, "fuzz");
});
