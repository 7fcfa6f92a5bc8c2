//! Pure signing logic: Standard Webhooks `v1`, lowercase hex, and `sha256=<hex>`.
//! No Postgres types here so the test vectors run as plain unit tests.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a secret cannot be used to sign.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretError {
    Empty,
    BadWhsec,
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::Empty => write!(f, "secret must not be empty"),
            SecretError::BadWhsec => {
                write!(f, "a secret starting with \"whsec_\" must continue with valid base64")
            }
        }
    }
}

/// The HMAC key of a secret for Standard Webhooks signatures: the base64 payload
/// of a `whsec_` secret, or the UTF-8 bytes of any other secret (so a
/// caller-supplied `ABC12345` works as the receiver expects).
pub fn standard_key(secret: &str) -> Result<Vec<u8>, SecretError> {
    if secret.is_empty() {
        return Err(SecretError::Empty);
    }
    match secret.strip_prefix("whsec_") {
        Some(b64) => match STANDARD.decode(b64) {
            Ok(key) if !key.is_empty() => Ok(key),
            _ => Err(SecretError::BadWhsec),
        },
        None => Ok(secret.as_bytes().to_vec()),
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `v1,<base64 HMAC(key, "{msg_id}.{timestamp}.{body}")>` as Standard Webhooks specifies.
pub fn standard(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, SecretError> {
    let key = standard_key(secret)?;
    let ts = timestamp.to_string();
    let mac = hmac_sha256(&key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

/// Lowercase hex HMAC of the body keyed with the secret's UTF-8 bytes — what
/// `hmac.new(secret.encode(), payload, sha256).hexdigest()` computes.
pub fn hex(secret: &str, body: &[u8]) -> String {
    to_hex(&hmac_sha256(secret.as_bytes(), &[body]))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

/// A new secret: `whsec_` + base64 of 32 bytes from the OS's CSPRNG.
pub fn generate_secret() -> Result<String, getrandom::Error> {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key)?;
    Ok(format!("whsec_{}", STANDARD.encode(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_spec_vector() {
        let sig = standard(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn plain_secret_is_used_as_utf8_bytes() {
        let a = standard("ABC12345", "id", 1, b"{}").unwrap();
        let key = standard_key("ABC12345").unwrap();
        assert_eq!(key, b"ABC12345");
        assert_ne!(a, standard("ABC12346", "id", 1, b"{}").unwrap());
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(standard_key(""), Err(SecretError::Empty));
        assert_eq!(standard_key("whsec_!!!"), Err(SecretError::BadWhsec));
        assert_eq!(standard_key("whsec_"), Err(SecretError::BadWhsec));
    }

    #[test]
    fn hex_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        assert_eq!(
            hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn generated_secrets_are_distinct_and_decodable() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(standard_key(&a).unwrap().len(), 32);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_secret_is_usable_or_refused_without_panicking(secret in ".{0,60}", body in ".{0,60}") {
                match standard(&secret, "msg_1", 1_700_000_000, body.as_bytes()) {
                    Ok(sig) => {
                        prop_assert!(sig.starts_with("v1,"));
                        prop_assert_eq!(STANDARD.decode(&sig[3..]).map(|m| m.len()).ok(), Some(32));
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
                prop_assert_eq!(hex(&secret, body.as_bytes()).len(), 64);
            }

            #[test]
            fn whsec_secrets_sign_with_their_decoded_key(key in prop::collection::vec(any::<u8>(), 1..64)) {
                let secret = format!("whsec_{}", STANDARD.encode(&key));
                prop_assert_eq!(standard_key(&secret), Ok(key));
            }

            #[test]
            fn every_byte_of_the_message_counts(body in prop::collection::vec(any::<u8>(), 1..64), i in any::<usize>()) {
                let mut changed = body.clone();
                let at = i % changed.len();
                changed[at] ^= 1;
                prop_assert_ne!(
                    standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", 1, &body),
                    standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", 1, &changed)
                );
            }
        }
    }
}
