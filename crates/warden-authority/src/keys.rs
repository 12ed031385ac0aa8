//! Ed25519 signing and verifying keys, key ids, and JWK / JWKS (RFC 8037).
//!
//! Key ids are derived from the public key: `kid` is the first 16 characters
//! of base64url-no-pad(SHA-256(public key bytes)) — 96 bits. Deriving it means
//! the same key always gets the same `kid` on every node and after every
//! restart, and a `kid` can never silently point at a different key.

use std::collections::HashSet;
use std::fmt;

use ed25519_dalek::Signer as _;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::{AuthorityError, Result, b64};

/// Derives the key id for an Ed25519 public key (see the module docs).
pub fn kid_for_public_key(public: &[u8; 32]) -> String {
    let mut kid = b64::encode(Sha256::digest(public));
    kid.truncate(16);
    kid
}

/// An Ed25519 private key with its key id; `Debug` shows only the kid.
#[derive(Clone)]
pub struct SigningKey {
    // `ed25519_dalek::SigningKey` zeroizes itself on drop (feature `zeroize`).
    inner: ed25519_dalek::SigningKey,
    kid: String,
}

impl SigningKey {
    /// Generates a fresh key from 32 bytes of OS randomness, with a derived kid.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(AuthorityError::Random)?;
        let key = Self::from_secret_bytes(None, &bytes);
        // Best effort: see `ClientSecret::generate`.
        bytes.fill(0);
        std::hint::black_box(&bytes);
        Ok(key)
    }

    /// Rebuilds a key from its stored 32-byte secret; `kid: None` derives it from the public key.
    pub fn from_secret_bytes(kid: Option<String>, bytes: &[u8; 32]) -> Self {
        let inner = ed25519_dalek::SigningKey::from_bytes(bytes);
        let kid = kid.unwrap_or_else(|| kid_for_public_key(inner.verifying_key().as_bytes()));
        Self { inner, kid }
    }

    /// Returns the 32-byte secret seed, for persisting the key; handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// Returns the key id placed in JWT headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Returns the public half, carrying the same kid.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            kid: self.kid.clone(),
            key: self.inner.verifying_key(),
        }
    }

    /// Signs `msg` with pure Ed25519 (RFC 8032), returning the 64-byte signature.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifyingKey {
    /// Builds a key from 32 public bytes; `kid: None` derives it. Rejects invalid and weak (small-order) points.
    pub fn from_public_bytes(kid: Option<String>, bytes: &[u8; 32]) -> Result<Self> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| AuthorityError::InvalidJwk("x is not a valid Ed25519 point".into()))?;
        // A small-order key would accept forged signatures under lax
        // verification; `verify_strict` refuses them anyway, but failing at
        // import gives an operator a clear error instead of silent rejections.
        if key.is_weak() {
            return Err(AuthorityError::InvalidJwk(
                "x is a weak (small-order) Ed25519 point".into(),
            ));
        }
        let kid = kid.unwrap_or_else(|| kid_for_public_key(bytes));
        Ok(Self { kid, key })
    }

    /// Returns the key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Returns the 32 public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Exports the key as an RFC 8037 JWK: `{"kty":"OKP","crv":"Ed25519","x",..,"kid","alg":"EdDSA","use":"sig"}`.
    pub fn to_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64::encode(self.key.as_bytes()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// Imports an RFC 8037 Ed25519 public JWK; anything else is an error.
    ///
    /// Rules: `kty` must be `"OKP"` and `crv` `"Ed25519"`; `x` must be strict
    /// base64url of 32 bytes; `d` (private key material) is refused; `alg`, if
    /// present, must be `"EdDSA"`; `use`, if present, must be `"sig"`; `kid`, if
    /// present, must be a non-empty string, otherwise it is derived.
    pub fn from_jwk(jwk: &Value) -> Result<Self> {
        let obj = jwk
            .as_object()
            .ok_or_else(|| AuthorityError::InvalidJwk("not a JSON object".into()))?;
        if !is_ed25519(obj) {
            return Err(AuthorityError::InvalidJwk(format!(
                "unsupported key type (kty {}, crv {}); only kty \"OKP\" with crv \"Ed25519\" is accepted",
                describe(obj.get("kty")),
                describe(obj.get("crv")),
            )));
        }
        if obj.contains_key("d") {
            return Err(AuthorityError::InvalidJwk(
                "contains private key material (\"d\"); publish only public keys".into(),
            ));
        }
        if let Some(alg) = obj.get("alg")
            && alg != "EdDSA"
        {
            return Err(AuthorityError::InvalidJwk(format!(
                "alg {} is not \"EdDSA\"",
                describe(Some(alg))
            )));
        }
        if let Some(usage) = obj.get("use")
            && usage != "sig"
        {
            return Err(AuthorityError::InvalidJwk(format!(
                "use {} is not \"sig\"",
                describe(Some(usage))
            )));
        }
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(kid)) if !kid.is_empty() => Some(kid.clone()),
            Some(_) => {
                return Err(AuthorityError::InvalidJwk(
                    "kid must be a non-empty string".into(),
                ));
            }
        };
        let x = obj
            .get("x")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthorityError::InvalidJwk("missing string x".into()))?;
        let x: [u8; 32] = b64::decode(x)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                AuthorityError::InvalidJwk("x must be base64url (no padding) of 32 bytes".into())
            })?;
        Self::from_public_bytes(kid, &x)
    }

    /// Checks a 64-byte Ed25519 signature with `verify_strict`; any other length is `false`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        // `verify_strict` additionally rejects non-canonical R and small-order
        // keys/points, closing the malleability gaps of plain RFC 8032 checks.
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("x", &b64::encode(self.key.as_bytes()))
            .finish()
    }
}

/// Whether a JWK object claims to be an Ed25519 key (`kty` OKP, `crv` Ed25519).
fn is_ed25519(obj: &Map<String, Value>) -> bool {
    obj.get("kty").is_some_and(|v| v == "OKP") && obj.get("crv").is_some_and(|v| v == "Ed25519")
}

/// Renders an optional JSON value for an error message, bounded in length.
fn describe(v: Option<&Value>) -> String {
    match v {
        None => "missing".to_owned(),
        Some(v) => {
            let mut s = v.to_string();
            if s.len() > 40 {
                let mut cut = 40;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push_str("..");
            }
            s
        }
    }
}

/// A set of verifying keys looked up by kid; kids are unique within a set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet(Vec<VerifyingKey>);

impl KeySet {
    /// Builds a key set, refusing duplicate kids (lookup would be ambiguous).
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self> {
        let mut seen = HashSet::new();
        for key in &keys {
            if !seen.insert(key.kid.as_str()) {
                return Err(AuthorityError::DuplicateKeyId(key.kid.clone()));
            }
        }
        Ok(Self(keys))
    }

    /// Returns the keys in publication order.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.0
    }

    /// Returns the key with this kid, if any.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|k| k.kid == kid)
    }

    /// Exports the set as a JWKS document: `{"keys":[...]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.0.iter().map(VerifyingKey::to_jwk).collect::<Vec<_>>() })
    }

    /// Parses a JWKS document, keeping only Ed25519 signature keys.
    ///
    /// Keys of other types (RSA, EC, X25519, `use: "enc"`) are skipped, since
    /// external issuers often publish several algorithms side by side. A key
    /// that *is* Ed25519 but malformed is an error: that is a broken issuer,
    /// not a key meant for someone else. No usable key at all is an error.
    pub fn from_jwks_json(json: &str) -> Result<KeySet> {
        let doc: Value = serde_json::from_str(json)
            .map_err(|e| AuthorityError::InvalidJwks(format!("not JSON: {e}")))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| AuthorityError::InvalidJwks("missing \"keys\" array".into()))?;
        let mut usable = Vec::new();
        for jwk in keys {
            let Some(obj) = jwk.as_object() else {
                return Err(AuthorityError::InvalidJwks(
                    "key entry is not an object".into(),
                ));
            };
            let for_signing = obj.get("use").is_none_or(|u| u == "sig");
            if is_ed25519(obj) && for_signing {
                usable.push(VerifyingKey::from_jwk(jwk)?);
            }
        }
        if usable.is_empty() {
            return Err(AuthorityError::NoUsableKeys);
        }
        Self::new(usable)
    }
}

impl From<VerifyingKey> for KeySet {
    /// A set holding a single key.
    fn from(key: VerifyingKey) -> Self {
        Self(vec![key])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_key() -> SigningKey {
        SigningKey::from_secret_bytes(None, &[7u8; 32])
    }

    #[test]
    fn kid_is_derived_from_public_key() {
        let k = fixed_key();
        let public = k.verifying_key().public_bytes();
        let expected = &b64::encode(Sha256::digest(public))[..16];
        assert_eq!(k.kid(), expected);
        assert_eq!(k.kid().len(), 16);
        // Deterministic across reconstructions.
        assert_eq!(
            SigningKey::from_secret_bytes(None, &k.secret_bytes()).kid(),
            k.kid()
        );
        let explicit = SigningKey::from_secret_bytes(Some("mine".into()), &[7u8; 32]);
        assert_eq!(explicit.kid(), "mine");
        assert_eq!(explicit.verifying_key().kid(), "mine");
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let secret = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public = hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let k = SigningKey::from_secret_bytes(None, &secret);
        assert_eq!(k.verifying_key().public_bytes(), public);
        let sig = k.sign(b"");
        assert_eq!(
            sig[..8],
            [0xe5, 0x56, 0x43, 0x00, 0xc3, 0x60, 0xac, 0x72],
            "signature prefix from RFC 8032"
        );
        assert!(k.verifying_key().verify(b"", &sig));
    }

    fn hex32(hex: &str) -> [u8; 32] {
        *crate::SecretDigest::from_hex(hex).unwrap().as_bytes()
    }

    #[test]
    fn generate_round_trips_through_secret_bytes() {
        let k = SigningKey::generate().unwrap();
        let again = SigningKey::from_secret_bytes(Some(k.kid().to_owned()), &k.secret_bytes());
        assert_eq!(again.verifying_key(), k.verifying_key());
        assert_ne!(SigningKey::generate().unwrap().kid(), k.kid());
    }

    #[test]
    fn debug_redacts_secret() {
        let k = fixed_key();
        let dbg = format!("{k:?}");
        assert!(dbg.contains(k.kid()));
        assert!(!dbg.contains(&b64::encode(k.secret_bytes())));
        assert!(!dbg.contains("7, 7"));
    }

    #[test]
    fn sign_and_verify() {
        let k = fixed_key();
        let vk = k.verifying_key();
        let sig = k.sign(b"hello");
        assert!(vk.verify(b"hello", &sig));
        assert!(!vk.verify(b"hellp", &sig));
        assert!(!vk.verify(b"hello", &sig[..63]));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!vk.verify(b"hello", &bad));
        let other = SigningKey::from_secret_bytes(None, &[8u8; 32]).verifying_key();
        assert!(!other.verify(b"hello", &sig));
    }

    #[test]
    fn jwk_round_trip_and_shape() {
        let vk = fixed_key().verifying_key();
        let jwk = vk.to_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], vk.kid());
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert_eq!(jwk.as_object().unwrap().len(), 6);
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap(), vk);
        // Without kid, the kid is derived — and matches ours.
        let mut no_kid = jwk.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_eq!(VerifyingKey::from_jwk(&no_kid).unwrap().kid(), vk.kid());
    }

    #[test]
    fn jwk_rejects_other_key_types() {
        let x = fixed_key().verifying_key().to_jwk()["x"].clone();
        let cases = [
            json!({"kty":"RSA","n":"AQAB","e":"AQAB"}),
            json!({"kty":"EC","crv":"P-256","x":x,"y":x}),
            json!({"kty":"OKP","crv":"X25519","x":x}),
            json!({"kty":"OKP","crv":"Ed448","x":x}),
            json!({"kty":"oct","k":x}),
            json!({"crv":"Ed25519","x":x}),
            json!("not an object"),
        ];
        for jwk in cases {
            let err = VerifyingKey::from_jwk(&jwk).unwrap_err();
            assert!(matches!(err, AuthorityError::InvalidJwk(_)), "{jwk}: {err}");
        }
        let err = VerifyingKey::from_jwk(&json!({"kty":"RSA"}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only kty \"OKP\" with crv \"Ed25519\""),
            "{err}"
        );
    }

    #[test]
    fn jwk_rejects_bad_ed25519_material() {
        let good = fixed_key().verifying_key().to_jwk();
        let with = |key: &str, v: Value| {
            let mut j = good.clone();
            j[key] = v;
            j
        };
        let x = good["x"].as_str().unwrap();
        let cases = [
            with("x", json!(format!("{x}="))),
            with("x", json!(&x[..42])),
            with("x", json!(x.replace('-', "+").replace('_', "/") + "+")),
            with("x", json!(1)),
            with("d", json!(x)),
            with("alg", json!("ES256")),
            with("use", json!("enc")),
            with("kid", json!(5)),
            with("kid", json!("")),
            // The identity point: small order, must be refused.
            with("x", json!(b64::encode(hex_identity()))),
        ];
        for jwk in cases {
            assert!(VerifyingKey::from_jwk(&jwk).is_err(), "accepted {jwk}");
        }
    }

    fn hex_identity() -> [u8; 32] {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    }

    #[test]
    fn jwks_round_trip_and_lookup() {
        let a = fixed_key().verifying_key();
        let b = SigningKey::from_secret_bytes(None, &[9u8; 32]).verifying_key();
        let set = KeySet::new(vec![a.clone(), b.clone()]).unwrap();
        let doc = set.jwks();
        assert_eq!(doc["keys"].as_array().unwrap().len(), 2);
        let parsed = KeySet::from_jwks_json(&doc.to_string()).unwrap();
        assert_eq!(parsed, set);
        assert_eq!(parsed.get(a.kid()), Some(&a));
        assert_eq!(parsed.get(b.kid()), Some(&b));
        assert_eq!(parsed.get("nope"), None);
        assert_eq!(KeySet::from(a.clone()).keys(), std::slice::from_ref(&a));
    }

    #[test]
    fn jwks_skips_foreign_keys_but_needs_one_usable() {
        let ours = fixed_key().verifying_key().to_jwk();
        let doc = json!({"keys":[
            {"kty":"RSA","kid":"r1","n":"AQAB","e":"AQAB","alg":"RS256"},
            {"kty":"EC","crv":"P-256","kid":"e1","x":"AA","y":"AA"},
            {"kty":"OKP","crv":"X25519","kid":"x1","x":"AA"},
            {"kty":"OKP","crv":"Ed25519","use":"enc","kid":"enc1","x":"AA"},
            ours,
        ]});
        let set = KeySet::from_jwks_json(&doc.to_string()).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert!(set.get("r1").is_none());

        let only_rsa = json!({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]});
        assert!(matches!(
            KeySet::from_jwks_json(&only_rsa.to_string()),
            Err(AuthorityError::NoUsableKeys)
        ));
        assert!(matches!(
            KeySet::from_jwks_json(r#"{"keys":[]}"#),
            Err(AuthorityError::NoUsableKeys)
        ));
        for bad in ["", "[]", r#"{"keys":{}}"#, r#"{"keys":[1]}"#] {
            assert!(matches!(
                KeySet::from_jwks_json(bad),
                Err(AuthorityError::InvalidJwks(_))
            ));
        }
        // A broken Ed25519 key is an issuer bug, not a foreign key: fail loudly.
        let broken = json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]});
        assert!(matches!(
            KeySet::from_jwks_json(&broken.to_string()),
            Err(AuthorityError::InvalidJwk(_))
        ));
    }

    #[test]
    fn duplicate_kids_rejected() {
        let a = fixed_key().verifying_key();
        assert!(matches!(
            KeySet::new(vec![a.clone(), a.clone()]),
            Err(AuthorityError::DuplicateKeyId(_))
        ));
        let doc = json!({"keys":[a.to_jwk(), a.to_jwk()]});
        assert!(KeySet::from_jwks_json(&doc.to_string()).is_err());
    }
}
