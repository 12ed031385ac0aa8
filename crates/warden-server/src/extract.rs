//! Parsing requests at the edge: JSON bodies into typed DTOs (naming the failing field),
//! and query strings with repeatable and unknown parameters handled explicitly.

use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use warden_core::reason::ReasonCode;

use crate::error::ApiError;

/// Parse a JSON body: `415` unless the content type is JSON, `400 VALIDATION_FAILED`
/// naming the field (its JSON path) when it does not match `T`.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::new(
            ReasonCode::UnsupportedMediaType,
            "the body must be application/json",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "body".to_owned()
        } else {
            path
        };
        let inner = e.into_inner();
        // serde names a missing field in its message, not in the path.
        let message = inner.to_string();
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(missing) if field == "body" => missing.to_owned(),
            Some(missing) => format!("{field}.{missing}"),
            None => field,
        };
        ApiError::field(field, message)
    })
}

/// A parsed query string.
#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Parse, refusing parameters outside `allowed`.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ApiError::field(
                k.clone(),
                format!("unknown parameter (allowed: {})", allowed.join(", ")),
            ));
        }
        Ok(Self(pairs))
    }

    /// A parameter given at most once.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(ApiError::field(name, "given more than once"));
        }
        Ok(first)
    }

    /// Every value of a repeatable parameter.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Parse a parameter with `f`, naming it on failure.
    pub fn parsed<T, E: std::fmt::Display>(
        &self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(v) => f(v)
                .map(Some)
                .map_err(|e| ApiError::field(name, e.to_string())),
        }
    }

    /// `limit`: default `default`, 1..=`max`, never clamped.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.one("limit")? {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::field(
                    "limit",
                    format!("must be an integer from 1 to {max}"),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        queue: String,
        inner: Option<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        h
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = json_body::<Body>(&json_headers(), br#"{"inner": {"n": 1}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "queue");
        let e = json_body::<Body>(&json_headers(), br#"{"queue": "q", "inner": {"n": "x"}}"#)
            .unwrap_err();
        assert_eq!(e.errors[0].field, "inner.n");
        let e = json_body::<Body>(&json_headers(), br#"{"queue": "q", "extra": 1}"#).unwrap_err();
        assert_eq!(e.code, ReasonCode::ValidationFailed);
        let e = json_body::<Body>(&json_headers(), b"{not json").unwrap_err();
        assert_eq!(e.code, ReasonCode::ValidationFailed);
        let e = json_body::<Body>(&HeaderMap::new(), b"{}").unwrap_err();
        assert_eq!(e.code, ReasonCode::UnsupportedMediaType);
    }

    #[test]
    fn query_limits_are_validated_not_clamped() {
        let q = QueryParams::parse(Some("limit=0"), &["limit"]).unwrap();
        assert!(q.limit(100, 1000).is_err());
        let q = QueryParams::parse(Some("limit=1001"), &["limit"]).unwrap();
        assert!(q.limit(100, 1000).is_err());
        assert!(QueryParams::parse(Some("limt=5"), &["limit"]).is_err());
        let q = QueryParams::parse(Some("action=a&action=b"), &["action"]).unwrap();
        assert_eq!(q.all("action"), vec!["a", "b"]);
        assert!(q.one("action").is_err());
    }
}
