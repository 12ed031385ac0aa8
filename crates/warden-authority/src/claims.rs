//! The typed claims Warden issues, and reads back out of verified tokens.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warden_core::scopes::WarrantClaims;

use crate::jwt::{JwtError, required_str};

/// Claims carried by a Warden operator token.
///
/// Serialises with `tenant` under that name; [`Claims::from_map`] can read it
/// from another claim name for external issuers. Warrant claims record why an
/// elevated action was requested and are omitted when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the principal the token speaks for.
    pub sub: String,
    /// Audience this token is for (first entry if the issuer sent an array).
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued-at, seconds since the Unix epoch.
    pub iat: i64,
    /// Unique token id, for audit and revocation.
    pub jti: String,
    /// Tenant the token is confined to.
    pub tenant: String,
    /// Space-separated granted scopes (RFC 8693 style).
    pub scope: String,
    /// Roles granted to the subject; absent means none.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The warrant claims (reason and ticket per elevated scope), absent when not given.
    #[serde(flatten)]
    pub warrant: WarrantClaims,
}

impl Claims {
    /// Reads claims from a payload returned by [`crate::verify_jwt`], taking the tenant from `tenant_claim`.
    ///
    /// Unknown claims are ignored. `roles` may be absent or `null` (no roles);
    /// warrant claims may be absent or `null`. Type errors are reported as
    /// [`JwtError::InvalidClaim`] so they log like any other token rejection;
    /// errors about the tenant claim name it `"tenant"` whatever `tenant_claim` is.
    pub fn from_map(map: Map<String, Value>, tenant_claim: &str) -> Result<Claims, JwtError> {
        let text = |name: &'static str| required_str(&map, name).map(str::to_owned);
        let int = |name: &'static str| match map.get(name) {
            None => Err(JwtError::MissingClaim(name)),
            Some(v) => v.as_i64().ok_or(JwtError::InvalidClaim(name)),
        };
        let optional = |name: &'static str| match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JwtError::InvalidClaim(name)),
        };

        let aud = match map.get("aud") {
            None => return Err(JwtError::MissingClaim("aud")),
            Some(Value::String(aud)) if !aud.is_empty() => aud.clone(),
            // Verification already checked that the configured audience is
            // among the entries; we keep the first as the representative.
            Some(Value::Array(auds)) => match auds.first() {
                Some(Value::String(aud)) if !aud.is_empty() => aud.clone(),
                _ => return Err(JwtError::InvalidClaim("aud")),
            },
            Some(_) => return Err(JwtError::InvalidClaim("aud")),
        };
        let tenant = match map.get(tenant_claim) {
            None => return Err(JwtError::MissingClaim("tenant")),
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(_) => return Err(JwtError::InvalidClaim("tenant")),
        };
        // An empty scope is legitimate (a token that may do nothing scoped).
        let scope = match map.get("scope") {
            None => return Err(JwtError::MissingClaim("scope")),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(JwtError::InvalidClaim("scope")),
        };
        let roles = match map.get("roles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|r| match r {
                    Value::String(r) if !r.is_empty() => Ok(r.clone()),
                    _ => Err(JwtError::InvalidClaim("roles")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(JwtError::InvalidClaim("roles")),
        };

        Ok(Claims {
            iss: text("iss")?,
            sub: text("sub")?,
            aud,
            exp: int("exp")?,
            iat: int("iat")?,
            jti: text("jti")?,
            tenant,
            scope,
            roles,
            warrant: WarrantClaims {
                operator_reason: optional("operator_reason")?,
                operator_ticket: optional("operator_ticket")?,
                quota_reason: optional("quota_reason")?,
                quota_ticket: optional("quota_ticket")?,
                backfill_reason: optional("backfill_reason")?,
                backfill_ticket: optional("backfill_ticket")?,
            },
        })
    }

    /// Serialises the claims to the JSON object passed to [`crate::sign_jwt`].
    pub fn to_json(&self) -> Value {
        // Only strings, integers and string vectors: serialisation cannot fail.
        serde_json::to_value(self).expect("Claims always serialise to JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySet, SigningKey, Validation, sign_jwt, verify_jwt};
    use serde_json::json;

    fn sample() -> Claims {
        Claims {
            iss: "https://warden.example".into(),
            sub: "user:ada".into(),
            aud: "warden-api".into(),
            exp: 2_000_000_300,
            iat: 2_000_000_000,
            jti: "01972c6e-0000-7000-8000-000000000000".into(),
            tenant: "acme".into(),
            scope: "jobs:write quota:admin".into(),
            roles: vec!["operator".into()],
            warrant: WarrantClaims {
                quota_reason: Some("Black Friday load".into()),
                quota_ticket: Some("OPS-1234".into()),
                ..WarrantClaims::default()
            },
        }
    }

    fn as_map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn serialises_without_absent_warrants() {
        let v = sample().to_json();
        let obj = v.as_object().unwrap();
        assert_eq!(obj["tenant"], "acme");
        assert_eq!(obj["roles"], json!(["operator"]));
        assert_eq!(obj["quota_ticket"], "OPS-1234");
        for absent in [
            "operator_reason",
            "operator_ticket",
            "backfill_reason",
            "backfill_ticket",
        ] {
            assert!(!obj.contains_key(absent), "{absent}");
        }
        let back: Claims = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn round_trips_through_a_signed_token() {
        let key = SigningKey::from_secret_bytes(None, &[3u8; 32]);
        let token = sign_jwt(&key, &sample().to_json());
        let v = Validation {
            issuer: "https://warden.example".into(),
            audience: "warden-api".into(),
            now_unix: 2_000_000_100,
            leeway_secs: 0,
        };
        let map = verify_jwt(&token, &KeySet::from(key.verifying_key()), &v).unwrap();
        assert_eq!(Claims::from_map(map, "tenant").unwrap(), sample());
    }

    #[test]
    fn custom_tenant_claim_and_external_shapes() {
        let mut m = as_map(sample().to_json());
        m.remove("tenant");
        m.remove("roles");
        m.insert("https://idp.example/org".into(), json!("globex"));
        m.insert("aud".into(), json!(["warden-api", "other"]));
        m.insert("email".into(), json!("ada@example.com"));
        let c = Claims::from_map(m.clone(), "https://idp.example/org").unwrap();
        assert_eq!(c.tenant, "globex");
        assert_eq!(c.aud, "warden-api");
        assert!(c.roles.is_empty());
        // Reading with the default name now fails: the tenant is not there.
        assert_eq!(
            Claims::from_map(m, "tenant"),
            Err(JwtError::MissingClaim("tenant"))
        );
    }

    #[test]
    fn null_roles_and_warrants_mean_absent() {
        let mut m = as_map(sample().to_json());
        m.insert("roles".into(), Value::Null);
        m.insert("operator_reason".into(), Value::Null);
        let c = Claims::from_map(m, "tenant").unwrap();
        assert!(c.roles.is_empty());
        assert_eq!(c.warrant.operator_reason, None);
    }

    #[test]
    fn rejects_missing_and_mistyped_claims() {
        for name in ["iss", "sub", "aud", "exp", "iat", "jti", "tenant", "scope"] {
            let mut m = as_map(sample().to_json());
            m.remove(name);
            assert_eq!(
                Claims::from_map(m, "tenant"),
                Err(JwtError::MissingClaim(name)),
                "{name}"
            );
        }
        let cases = [
            ("iss", json!(1)),
            ("sub", json!("")),
            ("aud", json!([])),
            ("aud", json!([1])),
            ("exp", json!("1")),
            ("iat", json!(1.5)),
            ("tenant", json!(["acme"])),
            ("tenant", json!("")),
            ("scope", json!(["jobs:write"])),
            ("roles", json!("operator")),
            ("roles", json!(["operator", 1])),
            ("quota_reason", json!(42)),
        ];
        for (name, bad) in cases {
            let mut m = as_map(sample().to_json());
            m.insert(name.into(), bad.clone());
            assert_eq!(
                Claims::from_map(m, "tenant"),
                Err(JwtError::InvalidClaim(name)),
                "{name} = {bad}"
            );
        }
    }

    #[test]
    fn empty_scope_is_allowed() {
        let mut m = as_map(sample().to_json());
        m.insert("scope".into(), json!(""));
        assert_eq!(Claims::from_map(m, "tenant").unwrap().scope, "");
    }
}
