//! Typed configuration, built in a documented order: defaults → TOML file (`--config`) →
//! `WARDEN_*` environment variables (`__` for nesting, e.g. `WARDEN_AUTH__TICKET_PATTERN`)
//! → command-line flags. `warden serve --print-config` shows the result, secrets redacted.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use warden_core::scopes::TicketPattern;

/// The longest an elevated token may live (DESIGN.md §5): 15 minutes.
pub const MAX_ELEVATED_TTL_SECS: u64 = 15 * 60;

/// Everything `warden serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`--listen`, `WARDEN_LISTEN`).
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite database (`--data-dir`, `WARDEN_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite (`--database-url`).
    pub database_url: Option<String>,
    /// Seals the token and checkpoint signing keys in the store (`WARDEN_MASTER_KEY`: 32
    /// random bytes in base64). Best given in the environment, not in a file.
    pub master_key: Option<String>,
    /// The URL clients reach this server at; the tokens' `iss`.
    pub public_url: String,
    /// Token authority settings.
    pub auth: AuthConfig,
    /// HTTP settings.
    pub http: HttpConfig,
    /// Embedded SQLite settings.
    pub sqlite: SqliteConfig,
    /// The scheduler (cron) and backfill.
    pub schedules: SchedulesConfig,
    /// Job housekeeping.
    pub jobs: JobsConfig,
    /// The audit ledger.
    pub ledger: LedgerConfig,
    /// Alert rules over the audit log and their webhook.
    pub alerts: crate::alerts::AlertsConfig,
    /// Log output: `json` (default) or `text`.
    pub log_format: String,
}

/// Token authority settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The `aud` of issued tokens and the audience accepted.
    pub audience: String,
    /// Lifetime of ordinary tokens, seconds.
    pub token_ttl_secs: u64,
    /// Lifetime of elevated tokens, seconds (at most 900).
    pub elevated_token_ttl_secs: u64,
    /// Regex tickets must match.
    pub ticket_pattern: String,
    /// Failed client authentications from one address within a minute before 429.
    pub max_failed_client_auth_per_minute: u32,
    /// Outside issuers whose tokens are accepted.
    pub issuers: Vec<ExternalIssuer>,
}

/// An outside token issuer (`[[auth.issuers]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuer {
    /// The tokens' `iss`.
    pub issuer: String,
    /// The audience its tokens must carry.
    pub audience: String,
    /// A JWKS file…
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// …or URL (`https://` or `http://`; fetched at start and every 5 minutes). HTTPS
    /// trusts the system's root certificates plus `ca_file`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM certificates to trust (besides the system's) when fetching `jwks_url`: the
    /// private CA of an issuer inside an air-gapped site.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The claim naming the tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

/// HTTP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Request body limit, bytes.
    pub body_limit_bytes: usize,
    /// Body limit for batch enqueue and bulk replay, bytes.
    pub bulk_body_limit_bytes: usize,
}

/// Embedded SQLite settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// `FULL` (default): a commit is on disk before it is acknowledged, surviving power
    /// loss. `NORMAL`: survives a killed process, may lose the last commits on an OS crash.
    pub synchronous: String,
}

/// Job housekeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Finished jobs (succeeded, dead letter, canceled) move out of the hot table this
    /// many seconds after they finished. They stay listable, showable and replayable;
    /// claims and the periodic loops no longer see them.
    pub archive_after_secs: u64,
    /// Moved jobs are deleted, with their timelines, this many seconds after they
    /// finished; 0 (the default) keeps them for ever. A deleted job can no longer be shown
    /// or replayed; its audit entries stay. A job another job depends on is kept.
    pub done_retention_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            archive_after_secs: 3600,
            done_retention_secs: 0,
        }
    }
}

/// The audit ledger (DESIGN.md §4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// The host part of every checkpoint origin (`<host>/audit/<tenant>`) and the name of
    /// the checkpoint signing key. Unset: the host and port of `public_url`. Changing it
    /// starts new origins: keep it stable once checkpoints have been handed out.
    pub host: Option<String>,
    /// How often (seconds) the leader re-verifies each log's most recent entries against
    /// the stored tree and its newest checkpoint; 0 turns the self-check off.
    pub self_check_secs: u64,
    /// How many of the most recent entries each self-check re-verifies.
    pub self_check_entries: u64,
    /// Seconds an entry's body stays in the log before retention moves it to an archive
    /// file (its leaf hash stays, so proofs and verification hold). Default 90 days; 0
    /// keeps bodies for ever.
    pub retention_secs: u64,
    /// Per-tenant retention periods (seconds), overriding `retention_secs`.
    pub retention_secs_per_tenant: std::collections::BTreeMap<String, u64>,
    /// How often (seconds) the leader runs retention.
    pub retention_interval_secs: u64,
    /// Where archive files go (one directory per tenant). Default: `<data_dir>/audit-archive`.
    /// With several nodes on PostgreSQL, point every node at the same shared directory.
    pub archive_dir: Option<PathBuf>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            host: None,
            self_check_secs: 60,
            self_check_entries: 10_000,
            retention_secs: 90 * 86_400,
            retention_secs_per_tenant: std::collections::BTreeMap::new(),
            retention_interval_secs: 3_600,
            archive_dir: None,
        }
    }
}

/// The scheduler (cron) and backfill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulesConfig {
    /// Fire times missed while no node ran the scheduler are produced when it comes back if
    /// they are at most this old (seconds); older ones are skipped, logged, and left for an
    /// explicit backfill — a server down for a week does not flood its queues.
    pub catchup_secs: u64,
    /// The most runs one backfill may produce; a larger range is `400 VALIDATION_FAILED`.
    pub backfill_max_runs: usize,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        Self {
            catchup_secs: 3600,
            backfill_max_runs: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: PathBuf::from("./warden-data"),
            database_url: None,
            master_key: None,
            public_url: "http://127.0.0.1:8080".into(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            sqlite: SqliteConfig::default(),
            schedules: SchedulesConfig::default(),
            jobs: JobsConfig::default(),
            ledger: LedgerConfig::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            log_format: "json".into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            audience: "warden".into(),
            token_ttl_secs: 3600,
            elevated_token_ttl_secs: MAX_ELEVATED_TTL_SECS,
            ticket_pattern: TicketPattern::DEFAULT.into(),
            max_failed_client_auth_per_minute: 20,
            issuers: Vec::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            body_limit_bytes: 1 << 20,
            bulk_body_limit_bytes: 16 << 20,
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            synchronous: "FULL".into(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Parsing or merging failed.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of its allowed range.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Environment variables the client commands and tests read; not server configuration.
const CLIENT_SIDE_ENV: &[&str] = &[
    "WARDEN_URL",
    "WARDEN_CLIENT_ID",
    "WARDEN_CLIENT_SECRET",
    "WARDEN_CONFIG",
    "WARDEN_LOG",
    // Read by `warden keys reseal` only.
    "WARDEN_NEW_MASTER_KEY",
];

impl Config {
    /// Load: defaults, then `file` (if any), then the environment, then `overrides` (flags).
    pub fn load(file: Option<&Path>, overrides: &serde_json::Value) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        // Unknown variables are warned about by the caller, not fatal: skip them here.
        let unknown = Self::unknown_env_vars(std::env::vars().map(|(k, _)| k));
        fig = fig
            .merge(
                Env::prefixed("WARDEN_")
                    .filter(move |k| {
                        let full = format!("WARDEN_{}", k.as_str().to_ascii_uppercase());
                        !unknown.contains(&full)
                            && !CLIENT_SIDE_ENV.contains(&full.as_str())
                            && !full.starts_with("WARDEN_TEST_")
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides.clone()));
        let config: Config = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The ledger's host: `ledger.host`, else `public_url` without scheme and path.
    pub fn ledger_host(&self) -> String {
        if let Some(h) = &self.ledger.host {
            return h.clone();
        }
        let url = self.public_url.as_str();
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_owned()
    }

    /// Check ranges figment cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.auth.elevated_token_ttl_secs == 0
            || self.auth.elevated_token_ttl_secs > MAX_ELEVATED_TTL_SECS
        {
            return Err(ConfigError::Invalid(format!(
                "auth.elevated_token_ttl_secs must be 1..={MAX_ELEVATED_TTL_SECS}"
            )));
        }
        if self.auth.token_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "auth.token_ttl_secs must be positive".into(),
            ));
        }
        TicketPattern::new(&self.auth.ticket_pattern)
            .map_err(|e| ConfigError::Invalid(format!("auth.ticket_pattern: {e}")))?;
        for i in &self.auth.issuers {
            if i.jwks_file.is_some() == i.jwks_url.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "issuer {}: give exactly one of jwks_file, jwks_url",
                    i.issuer
                )));
            }
            if i.ca_file.is_some() && i.jwks_url.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "issuer {}: ca_file applies to jwks_url only",
                    i.issuer
                )));
            }
            if let Some(url) = &i.jwks_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ConfigError::Invalid(format!(
                    "issuer {}: jwks_url must be an https:// or http:// URL",
                    i.issuer
                )));
            }
        }
        self.store_options()?;
        if self.schedules.backfill_max_runs == 0 || self.schedules.backfill_max_runs > 100_000 {
            return Err(ConfigError::Invalid(
                "schedules.backfill_max_runs must be 1..=100000".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "json" | "text") {
            return Err(ConfigError::Invalid(
                "log_format must be json or text".into(),
            ));
        }
        Ok(())
    }

    /// The store URL: the PostgreSQL URL if given, else the SQLite file under `data_dir`.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("warden.db").display()
            ),
        }
    }

    /// How to open the store this configuration names (its URL, SQLite durability, the
    /// master key), for the server and the store-side commands alike.
    pub fn store_options(&self) -> Result<warden_store::StoreOptions, ConfigError> {
        let mut options = warden_store::StoreOptions::new(self.store_url());
        options.sqlite_synchronous = self.sqlite.synchronous.clone();
        options.master_key = self
            .master_key
            .as_deref()
            .map(warden_store::sealing::MasterKey::from_base64)
            .transpose()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(options)
    }

    /// The configuration as TOML-ish JSON with secrets redacted, for `--print-config`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        if let Some(url) = &self.database_url {
            v["database_url"] = warden_store::redact_url(url).into();
        }
        if self.master_key.is_some() {
            v["master_key"] = "***".into();
        }
        v
    }

    /// `WARDEN_*` variables in `vars` that name no configuration key (warned about at start).
    pub fn unknown_env_vars(vars: impl Iterator<Item = String>) -> Vec<String> {
        let known = serde_json::to_value(Config::default()).expect("serializes");
        vars.filter(|k| k.starts_with("WARDEN_"))
            .filter(|k| !CLIENT_SIDE_ENV.contains(&k.as_str()) && !k.starts_with("WARDEN_TEST_"))
            .filter(|k| {
                let path: Vec<String> = k["WARDEN_".len()..]
                    .to_ascii_lowercase()
                    .split("__")
                    .map(str::to_owned)
                    .collect();
                let mut node = &known;
                for p in &path {
                    match node.get(p) {
                        Some(n) => node = n,
                        None => return true,
                    }
                }
                false
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("warden.toml");
        std::fs::write(&file, "public_url = \"https://warden.example\"\nlisten = \"127.0.0.1:9000\"\n[auth]\nticket_pattern = \"^OPS-[0-9]+$\"\n").unwrap();
        let c = Config::load(
            Some(&file),
            &serde_json::json!({"listen": "127.0.0.1:9001"}),
        )
        .unwrap();
        assert_eq!(c.public_url, "https://warden.example");
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.auth.ticket_pattern, "^OPS-[0-9]+$");
        assert_eq!(c.auth.audience, "warden");
    }

    #[test]
    fn elevated_tokens_cannot_be_configured_beyond_15_minutes() {
        let err = Config::load(
            None,
            &serde_json::json!({"auth": {"elevated_token_ttl_secs": 901}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("elevated_token_ttl_secs"));
    }

    #[test]
    fn the_master_key_is_redacted_and_must_be_32_bytes_of_base64() {
        let mut c = Config {
            master_key: Some("c2VjcmV0LW1hc3Rlci1rZXktb2YtMzItYnl0ZXMhISE=".into()),
            ..Config::default()
        };
        c.validate().unwrap();
        assert!(c.store_options().unwrap().master_key.is_some());
        let shown = c.redacted().to_string();
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("\"master_key\":\"***\""), "{shown}");
        c.master_key = Some("too-short".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("WARDEN_MASTER_KEY must be 32 random bytes"),
            "{e}"
        );
    }

    #[test]
    fn database_passwords_are_redacted() {
        let c = Config {
            database_url: Some("postgres://u:hunter2@db/w".into()),
            ..Config::default()
        };
        assert!(!c.redacted().to_string().contains("hunter2"));
    }

    #[test]
    fn unknown_env_vars_are_found_and_client_side_ones_are_known() {
        let vars = [
            "WARDEN_LISTEN",
            "WARDEN_URL",
            "WARDEN_AUTH__AUDIENCE",
            "WARDEN_LISTEM",
            "WARDEN_TEST_DATABASE_URL",
        ];
        assert_eq!(
            Config::unknown_env_vars(vars.iter().map(|s| s.to_string())),
            vec!["WARDEN_LISTEM".to_string()]
        );
    }
}
