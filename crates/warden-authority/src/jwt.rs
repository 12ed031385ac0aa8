//! Compact JWS (RFC 7515) with EdDSA (RFC 8037) only, and strict JWT validation.
//!
//! Verification order matters: the header is parsed only far enough to pick a
//! key (`alg` must be exactly `"EdDSA"`, `kid` must name a known key), then the
//! signature is checked over the exact ASCII `header.payload` bytes, and only
//! then is the payload decoded and its claims trusted.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::b64;
use crate::keys::{KeySet, SigningKey};

/// Longest token accepted, in bytes; bounds the work an unauthenticated caller can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was rejected; each variant is distinct so the server can log the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a well-formed compact JWS (segments, base64url, JSON shape, size).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is anything but exactly `"EdDSA"`.
    #[error("unsupported algorithm: only \"EdDSA\" is accepted")]
    UnsupportedAlgorithm,
    /// The header carries `crit`; we understand no extensions, so must refuse (RFC 7515 §4.1.11).
    #[error("token has a \"crit\" header, which is not supported")]
    CriticalHeader,
    /// The header's `kid` is not in the key set.
    #[error("unknown key id")]
    UnknownKeyId,
    /// The signature does not verify under the selected key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (allowing for leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future (allowing for leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is absent.
    #[error("missing claim: {0}")]
    MissingClaim(&'static str),
    /// A claim is present but has the wrong JSON type or an empty value.
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
}

impl JwtError {
    /// A stable snake_case code for logs and metrics (the message text may change).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::CriticalHeader => "critical_header",
            Self::UnknownKeyId => "unknown_key_id",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
        }
    }
}

/// What a verified token must satisfy; `now_unix` is passed in so verification stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Required exact value of `iss`.
    pub issuer: String,
    /// Value that `aud` (string, or array of strings) must contain.
    pub audience: String,
    /// Current time, seconds since the Unix epoch.
    pub now_unix: i64,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds; negative values count as 0.
    pub leeway_secs: i64,
}

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":"JWT","kid":..}`.
///
/// `claims` should be a JSON object; anything else yields a token that
/// [`verify_jwt`] rejects as malformed.
pub fn sign_jwt(key: &SigningKey, claims: &Value) -> String {
    // Built by hand so the header bytes are exactly the documented ones, in
    // this member order; `Value::from(kid)` renders a JSON-escaped string.
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"JWT","kid":{}}}"#,
        Value::from(key.kid())
    );
    sign_segments(key, header.as_bytes(), claims.to_string().as_bytes())
}

/// Encodes raw header and payload bytes and appends the Ed25519 signature.
fn sign_segments(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let mut token = b64::encode(header);
    token.push('.');
    token.push_str(&b64::encode(payload));
    let sig = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(sig));
    token
}

/// Verifies a compact EdDSA JWS and validates its registered claims, returning the payload.
///
/// Checks, in order: size; exactly three segments; header is strict
/// base64url of a JSON object without duplicate members; `alg` is exactly
/// `"EdDSA"`; no `crit`; `kid` is a string naming a key in `keys`; the
/// signature is strict base64url of 64 bytes and passes `verify_strict` over
/// the ASCII `header.payload`; the payload is strict base64url of a JSON
/// object without duplicate members; then `exp` (integer, > now − leeway),
/// `nbf` (optional integer, ≤ now + leeway), `iat` (integer), `iss` (==
/// issuer), `aud` (string or array of strings containing the audience), and
/// `sub`, `jti` (non-empty strings).
pub fn verify_jwt(
    token: &str,
    keys: &KeySet,
    v: &Validation,
) -> Result<Map<String, Value>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("token too long"));
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(JwtError::Malformed(
            "expected exactly three dot-separated segments",
        ));
    };

    let header = decode_object(header_b64).ok_or(JwtError::Malformed(
        "header is not base64url of a JSON object",
    ))?;
    // Compare the JSON string exactly: no case folding or trimming, so
    // `"eddsa"`, `"EdDSA "` and `"none"` are all just "not EdDSA".
    match header.get("alg") {
        None => return Err(JwtError::Malformed("header has no alg")),
        Some(Value::String(alg)) if alg == "EdDSA" => {}
        Some(_) => return Err(JwtError::UnsupportedAlgorithm),
    }
    if header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => kid,
        _ => return Err(JwtError::Malformed("header has no string kid")),
    };
    let key = keys.get(kid).ok_or(JwtError::UnknownKeyId)?;

    let sig = b64::decode(sig_b64).ok_or(JwtError::Malformed("signature is not base64url"))?;
    // The signing input is the token text itself up to the second dot, so
    // what we verify is byte-for-byte what the signer produced.
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verify(signing_input.as_bytes(), &sig) {
        return Err(JwtError::BadSignature);
    }

    // Only from here on is the payload authentic.
    let claims = decode_object(payload_b64).ok_or(JwtError::Malformed(
        "payload is not base64url of a JSON object",
    ))?;
    validate_claims(&claims, v)?;
    Ok(claims)
}

/// Validates the registered claims of an authentic payload.
fn validate_claims(claims: &Map<String, Value>, v: &Validation) -> Result<(), JwtError> {
    let leeway = v.leeway_secs.max(0);
    let exp = int_claim(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
    if exp <= v.now_unix.saturating_sub(leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = int_claim(claims, "nbf")?
        && nbf > v.now_unix.saturating_add(leeway)
    {
        return Err(JwtError::NotYetValid);
    }
    int_claim(claims, "iat")?.ok_or(JwtError::MissingClaim("iat"))?;

    if required_str(claims, "iss")? != v.issuer {
        return Err(JwtError::WrongIssuer);
    }
    let audience_ok = match claims.get("aud") {
        None => return Err(JwtError::MissingClaim("aud")),
        Some(Value::String(aud)) => *aud == v.audience,
        Some(Value::Array(auds)) => {
            let mut found = false;
            for aud in auds {
                let aud = aud.as_str().ok_or(JwtError::InvalidClaim("aud"))?;
                found |= aud == v.audience;
            }
            found
        }
        Some(_) => return Err(JwtError::InvalidClaim("aud")),
    };
    if !audience_ok {
        return Err(JwtError::WrongAudience);
    }
    required_str(claims, "sub")?;
    required_str(claims, "jti")?;
    Ok(())
}

/// Reads an optional integer claim; present but not an `i64` is invalid (floats included).
fn int_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(JwtError::InvalidClaim(name)),
    }
}

/// Reads a required non-empty string claim.
pub(crate) fn required_str<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, JwtError> {
    match claims.get(name) {
        None => Err(JwtError::MissingClaim(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(JwtError::InvalidClaim(name)),
    }
}

/// Strict base64url then a JSON object with unique member names, or `None`.
fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = b64::decode(segment)?;
    serde_json::from_slice::<UniqueObject>(&bytes)
        .ok()
        .map(|o| o.0)
}

/// A JSON object that refuses duplicate top-level member names.
///
/// serde_json keeps the last duplicate; other parsers keep the first. Refusing
/// duplicates means no component that re-reads this token (a proxy, an audit
/// tool) can see different `alg`, `kid` or claims than we did.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    if map.contains_key(&name) {
                        return Err(de::Error::custom("duplicate member name"));
                    }
                    let value = access.next_value::<Value>()?;
                    map.insert(name, value);
                }
                Ok(UniqueObject(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use sha2::{Digest as _, Sha256};

    const NOW: i64 = 1_750_000_000;
    const LEEWAY: i64 = 30;

    fn key() -> SigningKey {
        SigningKey::from_secret_bytes(None, &[42u8; 32])
    }

    fn keys() -> KeySet {
        KeySet::from(key().verifying_key())
    }

    fn validation() -> Validation {
        Validation {
            issuer: "https://warden.example".into(),
            audience: "warden-api".into(),
            now_unix: NOW,
            leeway_secs: LEEWAY,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://warden.example",
            "sub": "svc:deployer",
            "aud": "warden-api",
            "exp": NOW + 300,
            "iat": NOW,
            "jti": "01972c6e-0000-7000-8000-000000000000",
            "tenant": "acme",
            "scope": "jobs:write",
        })
    }

    fn with(mut base: Value, name: &str, v: Value) -> Value {
        base[name] = v;
        base
    }

    fn without(mut base: Value, name: &str) -> Value {
        base.as_object_mut().unwrap().remove(name);
        base
    }

    fn verify(token: &str) -> Result<Map<String, Value>, JwtError> {
        verify_jwt(token, &keys(), &validation())
    }

    fn verify_claims(c: Value) -> Result<Map<String, Value>, JwtError> {
        verify(&sign_jwt(&key(), &c))
    }

    /// Signs arbitrary header JSON text with our real key, to show that a
    /// valid signature never rescues a bad header or payload.
    fn signed_with_header(header: &str, payload: &Value) -> String {
        sign_segments(&key(), header.as_bytes(), payload.to_string().as_bytes())
    }

    fn our_header() -> String {
        format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, key().kid())
    }

    fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .into()
    }

    fn segments(token: &str) -> Vec<&str> {
        token.split('.').collect()
    }

    #[test]
    fn hmac_helper_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::SecretDigest::from_bytes(mac).to_hex(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn round_trip() {
        let token = sign_jwt(&key(), &claims());
        let got = verify(&token).unwrap();
        assert_eq!(Value::Object(got), claims());
    }

    #[test]
    fn header_is_exact() {
        let token = sign_jwt(&key(), &claims());
        let header = b64::decode(segments(&token)[0]).unwrap();
        assert_eq!(String::from_utf8(header).unwrap(), our_header());
        assert_eq!(segments(&token)[2].len(), 86, "64-byte signature");
        assert!(!token.contains('='));
    }

    #[test]
    fn kid_is_json_escaped_in_header() {
        let odd = SigningKey::from_secret_bytes(Some(r#"a"b\c"#.into()), &[42u8; 32]);
        let token = sign_jwt(&odd, &claims());
        let set = KeySet::from(odd.verifying_key());
        assert!(verify_jwt(&token, &set, &validation()).is_ok());
    }

    #[test]
    fn rejects_alg_none_with_empty_signature() {
        let h = b64::encode(r#"{"alg":"none","typ":"JWT"}"#);
        let p = b64::encode(claims().to_string());
        assert_eq!(
            verify(&format!("{h}.{p}.")),
            Err(JwtError::UnsupportedAlgorithm)
        );
        // Even naming our kid does not help.
        let h = b64::encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, key().kid()));
        assert_eq!(
            verify(&format!("{h}.{p}.")),
            Err(JwtError::UnsupportedAlgorithm)
        );
        // And the two-segment "unsecured" form is not even a JWS here.
        assert!(matches!(
            verify(&format!("{h}.{p}")),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_hs256_keyed_with_public_key() {
        // Classic algorithm confusion: HMAC the token with the public key as
        // the shared secret, hoping the verifier feeds its "key" to HMAC.
        let vk = key().verifying_key();
        let public_forms: [Vec<u8>; 3] = [
            vk.public_bytes().to_vec(),
            vk.to_jwk()["x"].as_str().unwrap().as_bytes().to_vec(),
            vk.to_jwk().to_string().into_bytes(),
        ];
        let p = b64::encode(claims().to_string());
        for secret in &public_forms {
            for alg in ["HS256", "EdDSA"] {
                let h = b64::encode(format!(
                    r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#,
                    vk.kid()
                ));
                let mac = hmac_sha256(secret, format!("{h}.{p}").as_bytes());
                let forged = format!("{h}.{p}.{}", b64::encode(mac));
                let expected = if alg == "HS256" {
                    JwtError::UnsupportedAlgorithm
                } else {
                    // Claiming EdDSA with a 32-byte MAC just fails verification.
                    JwtError::BadSignature
                };
                assert_eq!(verify(&forged), Err(expected), "alg {alg}");
            }
        }
    }

    #[test]
    fn rejects_every_other_alg_even_when_validly_signed() {
        let kid = key().kid().to_owned();
        for alg in [
            json!("none"),
            json!("None"),
            json!("HS256"),
            json!("RS256"),
            json!("ES256"),
            json!("EdDSA "),
            json!(" EdDSA"),
            json!("eddsa"),
            json!("EDDSA"),
            json!("Ed25519"),
            json!(["EdDSA"]),
            json!({"name":"EdDSA"}),
            json!(null),
            json!(1),
        ] {
            let header = json!({"alg": alg, "kid": kid}).to_string();
            let token = signed_with_header(&header, &claims());
            assert_eq!(
                verify(&token),
                Err(JwtError::UnsupportedAlgorithm),
                "alg {alg}"
            );
        }
        let token = signed_with_header(&format!(r#"{{"kid":"{kid}"}}"#), &claims());
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn rejects_crit_header() {
        let header = json!({"alg":"EdDSA","kid":key().kid(),"crit":["exp"],"exp":1}).to_string();
        let token = signed_with_header(&header, &claims());
        assert_eq!(verify(&token), Err(JwtError::CriticalHeader));
        let header = json!({"alg":"EdDSA","kid":key().kid(),"crit":[]}).to_string();
        let token = signed_with_header(&header, &claims());
        assert_eq!(verify(&token), Err(JwtError::CriticalHeader));
    }

    #[test]
    fn header_without_typ_is_fine() {
        let header = json!({"alg":"EdDSA","kid":key().kid()}).to_string();
        assert!(verify(&signed_with_header(&header, &claims())).is_ok());
    }

    #[test]
    fn rejects_missing_or_unknown_kid() {
        let token = signed_with_header(r#"{"alg":"EdDSA"}"#, &claims());
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));
        let token = signed_with_header(r#"{"alg":"EdDSA","kid":7}"#, &claims());
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));

        let stranger = SigningKey::from_secret_bytes(None, &[1u8; 32]);
        let token = sign_jwt(&stranger, &claims());
        assert_eq!(verify(&token), Err(JwtError::UnknownKeyId));

        // A stranger naming our kid is caught by the signature.
        let impostor = SigningKey::from_secret_bytes(Some(key().kid().to_owned()), &[1u8; 32]);
        assert_eq!(
            verify(&sign_jwt(&impostor, &claims())),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn rejects_flipped_signature_byte() {
        let token = sign_jwt(&key(), &claims());
        let parts = segments(&token);
        let sig = b64::decode(parts[2]).unwrap();
        for i in [0, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            let forged = format!("{}.{}.{}", parts[0], parts[1], b64::encode(&bad));
            assert_eq!(verify(&forged), Err(JwtError::BadSignature), "byte {i}");
        }
    }

    #[test]
    fn rejects_wrong_signature_length() {
        let token = sign_jwt(&key(), &claims());
        let parts = segments(&token);
        let sig = b64::decode(parts[2]).unwrap();
        for bad in [&sig[..63], &[][..], &[sig.as_slice(), &[0]].concat()[..]] {
            let forged = format!("{}.{}.{}", parts[0], parts[1], b64::encode(bad));
            assert_eq!(verify(&forged), Err(JwtError::BadSignature));
        }
    }

    #[test]
    fn rejects_payload_tampered_after_signing() {
        let token = sign_jwt(&key(), &claims());
        let parts = segments(&token);
        for tampered in [
            with(claims(), "sub", json!("svc:admin")),
            with(claims(), "exp", json!(NOW + 1_000_000)),
            with(claims(), "tenant", json!("other")),
        ] {
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                b64::encode(tampered.to_string()),
                parts[2]
            );
            assert_eq!(verify(&forged), Err(JwtError::BadSignature));
        }
        // Swapping in a different header (say, adding a harmless member) also breaks it.
        let other_header = b64::encode(json!({"alg":"EdDSA","kid":key().kid(),"x":1}).to_string());
        let forged = format!("{other_header}.{}.{}", parts[1], parts[2]);
        assert_eq!(verify(&forged), Err(JwtError::BadSignature));
    }

    #[test]
    fn rejects_trailing_garbage_and_wrong_segment_counts() {
        let token = sign_jwt(&key(), &claims());
        for bad in [
            format!("{token}."),
            format!("{token}.x"),
            format!("{token}x"),
            format!("{token}AA"),
            format!("{token}="),
            format!("{token}=="),
            format!("{token} "),
            format!("{token}\n"),
            format!(" {token}"),
        ] {
            assert!(verify(&bad).is_err(), "accepted {bad:?}");
        }
        let parts = segments(&token);
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            parts[0].to_owned(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
            format!("{}.{}.{}.", parts[0], parts[1], parts[2]),
        ] {
            assert!(
                matches!(verify(&bad), Err(JwtError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_padding_and_standard_alphabet() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let token = sign_jwt(&key(), &claims());
        let parts = segments(&token);
        // Padded signature (64 bytes => 86 chars, canonically "==" padded).
        let padded_sig = format!("{}.{}.{}==", parts[0], parts[1], parts[2]);
        assert!(matches!(verify(&padded_sig), Err(JwtError::Malformed(_))));

        // Payload encoded with padding or with the standard alphabet, then
        // *validly signed*: strict decoding must still refuse it.
        let header = our_header();
        // Six '?' (0x3F) always contain one 3-byte-aligned "???", which
        // encodes as "Pz8/"; trailing JSON whitespace forces padding.
        let mut payload = with(claims(), "x", json!("??????")).to_string();
        while payload.len().is_multiple_of(3) {
            payload.push(' ');
        }
        assert!(STANDARD.encode(&payload).contains('/'));
        assert!(URL_SAFE.encode(&payload).ends_with('='));
        for encoded_payload in [URL_SAFE.encode(&payload), STANDARD.encode(&payload)] {
            let mut token = b64::encode(&header);
            token.push('.');
            token.push_str(&encoded_payload);
            let sig = key().sign(token.as_bytes());
            token.push('.');
            token.push_str(&b64::encode(sig));
            assert!(
                matches!(verify(&token), Err(JwtError::Malformed(_))),
                "{encoded_payload}"
            );
        }
    }

    #[test]
    fn rejects_non_canonical_trailing_bits_in_signature() {
        // 64 bytes are 86 characters, the last carrying 2 data bits and 4
        // discarded bits. Changing only discarded bits would decode to the
        // same signature under a lax decoder; strict decoding must refuse it.
        let token = sign_jwt(&key(), &claims());
        let (rest, last) = token.split_at(token.len() - 1);
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = ALPHABET
            .iter()
            .position(|&c| c == last.as_bytes()[0])
            .unwrap();
        assert_eq!(
            idx & 0b1111,
            0,
            "canonical encoding leaves the low bits zero"
        );
        for low in 1..16 {
            let alias = ALPHABET[idx | low] as char;
            let forged = format!("{rest}{alias}");
            assert!(
                matches!(verify(&forged), Err(JwtError::Malformed(_))),
                "{alias}"
            );
        }
    }

    #[test]
    fn rejects_non_object_header_or_payload() {
        let token = signed_with_header("[1,2]", &claims());
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));
        let token = signed_with_header("not json", &claims());
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));
        for payload in [json!([1]), json!("x"), json!(null), json!(5)] {
            let token = sign_jwt(&key(), &payload);
            assert!(
                matches!(verify(&token), Err(JwtError::Malformed(_))),
                "{payload}"
            );
        }
        // Not JSON at all, but validly signed.
        let token = sign_segments(&key(), our_header().as_bytes(), b"\xff\xfe");
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn rejects_duplicate_members() {
        let kid = key().kid().to_owned();
        let header = format!(r#"{{"alg":"none","alg":"EdDSA","kid":"{kid}"}}"#);
        let token = signed_with_header(&header, &claims());
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));

        let payload = claims()
            .to_string()
            .replacen('{', r#"{"sub":"svc:admin","#, 1);
        let token = sign_segments(&key(), our_header().as_bytes(), payload.as_bytes());
        assert!(matches!(verify(&token), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn rejects_oversized_token() {
        let big = with(claims(), "pad", json!("a".repeat(MAX_TOKEN_LEN)));
        assert_eq!(
            verify_claims(big),
            Err(JwtError::Malformed("token too long"))
        );
    }

    #[test]
    fn expiry_boundaries() {
        // exp must be > now - leeway.
        assert_eq!(
            verify_claims(with(claims(), "exp", json!(NOW - LEEWAY))),
            Err(JwtError::Expired)
        );
        assert!(verify_claims(with(claims(), "exp", json!(NOW - LEEWAY + 1))).is_ok());
        assert_eq!(
            verify_claims(with(claims(), "exp", json!(NOW - 3600))),
            Err(JwtError::Expired)
        );
        assert_eq!(
            verify_claims(without(claims(), "exp")),
            Err(JwtError::MissingClaim("exp"))
        );
        for bad in [
            json!("9999999999"),
            json!(1.0e10),
            json!(null),
            json!(u64::MAX),
        ] {
            assert_eq!(
                verify_claims(with(claims(), "exp", bad)),
                Err(JwtError::InvalidClaim("exp"))
            );
        }
        // Negative leeway is treated as zero rather than shortening lifetimes oddly.
        let strict = Validation {
            leeway_secs: -100,
            ..validation()
        };
        let token = sign_jwt(&key(), &with(claims(), "exp", json!(NOW + 1)));
        assert!(verify_jwt(&token, &keys(), &strict).is_ok());
        // Extreme values do not overflow.
        let wild = Validation {
            now_unix: i64::MIN,
            leeway_secs: i64::MAX,
            ..validation()
        };
        assert!(verify_jwt(&token, &keys(), &wild).is_ok());
    }

    #[test]
    fn not_before_boundaries() {
        assert!(verify_claims(with(claims(), "nbf", json!(NOW + LEEWAY))).is_ok());
        assert_eq!(
            verify_claims(with(claims(), "nbf", json!(NOW + LEEWAY + 1))),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(
            verify_claims(with(claims(), "nbf", json!("0"))),
            Err(JwtError::InvalidClaim("nbf"))
        );
    }

    #[test]
    fn iat_required_integer() {
        assert_eq!(
            verify_claims(without(claims(), "iat")),
            Err(JwtError::MissingClaim("iat"))
        );
        assert_eq!(
            verify_claims(with(claims(), "iat", json!(1.5))),
            Err(JwtError::InvalidClaim("iat"))
        );
    }

    #[test]
    fn issuer_checks() {
        assert_eq!(
            verify_claims(with(claims(), "iss", json!("https://evil.example"))),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            verify_claims(with(claims(), "iss", json!("https://warden.example/"))),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            verify_claims(without(claims(), "iss")),
            Err(JwtError::MissingClaim("iss"))
        );
        assert_eq!(
            verify_claims(with(claims(), "iss", json!(["https://warden.example"]))),
            Err(JwtError::InvalidClaim("iss"))
        );
    }

    #[test]
    fn audience_checks() {
        assert_eq!(
            verify_claims(with(claims(), "aud", json!("other-api"))),
            Err(JwtError::WrongAudience)
        );
        assert!(verify_claims(with(claims(), "aud", json!(["x", "warden-api"]))).is_ok());
        assert_eq!(
            verify_claims(with(claims(), "aud", json!(["x", "y"]))),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(
            verify_claims(with(claims(), "aud", json!([]))),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(
            verify_claims(with(claims(), "aud", json!(["warden-api", 1]))),
            Err(JwtError::InvalidClaim("aud"))
        );
        assert_eq!(
            verify_claims(with(claims(), "aud", json!(7))),
            Err(JwtError::InvalidClaim("aud"))
        );
        assert_eq!(
            verify_claims(without(claims(), "aud")),
            Err(JwtError::MissingClaim("aud"))
        );
    }

    #[test]
    fn subject_and_jti_required_strings() {
        for name in ["sub", "jti"] {
            let expected_missing =
                JwtError::MissingClaim(if name == "sub" { "sub" } else { "jti" });
            assert_eq!(
                verify_claims(without(claims(), name)),
                Err(expected_missing)
            );
            for bad in [json!(1), json!(""), json!(null)] {
                assert!(matches!(
                    verify_claims(with(claims(), name, bad)),
                    Err(JwtError::InvalidClaim(n)) if n == name
                ));
            }
        }
    }

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            JwtError::Malformed("x"),
            JwtError::UnsupportedAlgorithm,
            JwtError::CriticalHeader,
            JwtError::UnknownKeyId,
            JwtError::BadSignature,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::WrongIssuer,
            JwtError::WrongAudience,
            JwtError::MissingClaim("x"),
            JwtError::InvalidClaim("x"),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(JwtError::code).collect();
        assert_eq!(codes.len(), all.len());
    }

    /// Bytes worth substituting: the base64url alphabet, its look-alikes, and separators.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            prop::sample::select(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. \0".to_vec()
            ),
            any::<u8>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any single-byte change to a valid token must be rejected. Strict
        /// base64url gives every segment exactly one accepted spelling, so
        /// even a change that a lax decoder would map to identical bytes fails.
        #[test]
        fn any_single_byte_change_is_rejected(
            index in any::<prop::sample::Index>(),
            replacement in interesting_byte(),
        ) {
            let token = sign_jwt(&key(), &claims());
            prop_assert!(verify(&token).is_ok());
            let mut bytes = token.clone().into_bytes();
            let i = index.index(bytes.len());
            prop_assume!(bytes[i] != replacement);
            bytes[i] = replacement;
            // A non-UTF-8 result cannot even be presented as a token.
            if let Ok(mutated) = String::from_utf8(bytes) {
                prop_assert!(verify(&mutated).is_err(), "accepted {mutated}");
            }
        }

        /// Any single-bit change inside the signature's bytes fails verification.
        #[test]
        fn any_signature_bit_flip_is_rejected(byte in 0usize..64, bit in 0u8..8) {
            let token = sign_jwt(&key(), &claims());
            let parts = segments(&token);
            let mut sig = b64::decode(parts[2]).unwrap();
            sig[byte] ^= 1 << bit;
            let forged = format!("{}.{}.{}", parts[0], parts[1], b64::encode(&sig));
            prop_assert_eq!(verify(&forged), Err(JwtError::BadSignature));
        }
    }
}
