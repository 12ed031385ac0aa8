//! Validated names and ids. Once one of these exists it is valid ("parse, don't validate").

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a name or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {message}")]
pub struct NameError {
    /// Which kind of value was being parsed (`tenant`, `queue`, …).
    pub what: &'static str,
    /// What is wrong with it, for the `errors[].message` of a 400.
    pub message: String,
}

fn name_error(what: &'static str, message: impl Into<String>) -> NameError {
    NameError {
        what,
        message: message.into(),
    }
}

macro_rules! pattern_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The pattern a valid value matches.
            pub const PATTERN: &'static str = $pattern;

            /// Parse, refusing anything that does not match [`Self::PATTERN`].
            pub fn parse(s: &str) -> Result<Self, NameError> {
                static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new($pattern).expect("valid pattern"));
                if RE.is_match(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(name_error($what, format!("must match {}", $pattern)))
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

pattern_name!(
    /// A queue's name, unique within its tenant.
    QueueName, "queue", r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
);
pattern_name!(
    /// A job's type, which workers select on.
    JobType, "type", r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
);
pattern_name!(
    /// A client's name, unique within its tenant.
    ClientName, "client name", r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
);

pattern_name!(
    /// A worker process's id in the agent registry, chosen by the worker.
    AgentId, "agent_id", r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
);

/// A tenant's name. Names starting with `_` are reserved for Warden's own logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// The pattern a customer tenant's name matches.
    pub const PATTERN: &'static str = r"^[a-z0-9][a-z0-9-]{0,62}$";
    /// The reserved tenant holding the authentication-failure log.
    pub const SYSTEM: &'static str = "_system";

    /// Parse a customer tenant name (reserved names are refused).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        static RE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(TenantId::PATTERN).expect("valid pattern"));
        if RE.is_match(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(name_error(
                "tenant",
                format!("must match {}", Self::PATTERN),
            ))
        }
    }

    /// Parse a tenant name, accepting the reserved `_system` tenant as well. Used where the
    /// value comes from our own signed tokens or the operator's CLI, never a request body.
    pub fn parse_including_reserved(s: &str) -> Result<Self, NameError> {
        if s == Self::SYSTEM {
            Ok(Self::system())
        } else {
            Self::parse(s)
        }
    }

    /// The `_system` tenant.
    pub fn system() -> Self {
        Self(Self::SYSTEM.to_owned())
    }

    /// Whether this is a reserved tenant.
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with('_')
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parse a hyphenated UUID string.
            pub fn parse(s: &str) -> Result<Self, NameError> {
                Uuid::try_parse(s)
                    .map(Self)
                    .map_err(|_| name_error($what, "must be a UUID"))
            }

            /// Wrap an existing UUID.
            pub const fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }

            /// The inner UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A job's id, unique within its tenant.
    JobId, "job id"
);
uuid_id!(
    /// An audit entry's id.
    AuditId, "audit id"
);
uuid_id!(
    /// A client's id (the OAuth `client_id`).
    ClientId, "client id"
);
uuid_id!(
    /// A schedule's id, unique within its tenant.
    ScheduleId, "schedule id"
);

impl JobId {
    /// Parse a client-chosen id for a new job: it must be a UUIDv7, so ids stay time-ordered.
    pub fn parse_new(s: &str) -> Result<Self, NameError> {
        let id = Self::parse(s)?;
        if id.0.get_version_num() == 7 {
            Ok(id)
        } else {
            Err(name_error("job id", "must be a UUIDv7"))
        }
    }
}

/// An idempotency key: 1–255 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parse, refusing empty, over-long or control-character keys.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
            return Err(name_error(
                "idempotency_key",
                "must be 1–255 characters without control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_follow_the_contract() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("a-1").is_ok());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("-acme").is_err());
        assert!(TenantId::parse("_system").is_err());
        assert!(TenantId::parse(&"a".repeat(64)).is_err());
        assert!(TenantId::parse(&"a".repeat(63)).is_ok());
        assert!(
            TenantId::parse_including_reserved("_system")
                .unwrap()
                .is_reserved()
        );
    }

    #[test]
    fn queue_names_follow_the_contract() {
        assert!(QueueName::parse("emails.high_prio-1").is_ok());
        assert!(QueueName::parse(".hidden").is_err());
        assert!(QueueName::parse("").is_err());
        assert!(QueueName::parse("a b").is_err());
    }

    #[test]
    fn client_chosen_job_ids_must_be_v7() {
        let v7 = JobId::new().to_string();
        assert!(JobId::parse_new(&v7).is_ok());
        assert!(JobId::parse_new("67e55044-10b1-426f-9247-bb680e5fe0c8").is_err());
        assert!(JobId::parse("not-a-uuid").is_err());
    }
}
