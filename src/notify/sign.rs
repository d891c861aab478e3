//! The webhook signature (pure): `X-Ccr-Signature: sha256=<hex>` is the HMAC-SHA256, keyed
//! by the sink's secret, of `"{timestamp}.{body}"`, where `timestamp` is the
//! `X-Ccr-Timestamp` header (Unix seconds) and `body` the exact request body bytes.
//! Signing the timestamp lets a receiver refuse a replayed request (docs/notify.md).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Ccr-Signature";
/// Header carrying the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Ccr-Timestamp";

type HmacSha256 = Hmac<Sha256>;

/// The MAC of `"{timestamp}.{body}"` under `secret`.
fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Ccr-Signature` value: `sha256=` and the lowercase hex HMAC.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` is the signature of `body` at `timestamp` (constant-time compare), as a
/// receiver checks it; it should also refuse a `timestamp` too far from its own clock.
pub fn verify(secret: &[u8], timestamp: u64, body: &[u8], header: &str) -> bool {
    let Some(digest) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&digest).is_ok()
}
