//! The token authority: warrants, JWKS, forged tokens, revocation, the failure log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warden_core::scopes::Role;

use crate::helpers::{TestApp, apps};

fn decode_part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn operator_token_carries_its_warrant_and_verifies_against_the_jwks() {
    for app in apps().await {
        let c = app.client("acme", "ops-bot", &[Role::Operator]).await;
        let a = app
            .token_request(
                &c,
                &[
                    ("scope", "orch:operate"),
                    ("operator_reason", "maintenance"),
                    ("operator_ticket", "TICKET-123"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(a.headers["cache-control"], "no-store");
        assert_eq!(a.body["token_type"], "Bearer");
        assert_eq!(a.body["expires_in"], 900, "elevated tokens live 15 minutes");
        let token = a.body["access_token"].as_str().unwrap();

        // Verify with ed25519-dalek directly, from the published JWKS: no Warden code involved.
        let jwks = app
            .send(Method::GET, "/.well-known/jwks.json", None, None)
            .await
            .body;
        let header = decode_part(token, 0);
        assert_eq!(header["alg"], "EdDSA");
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("kid in JWKS");
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        let key = VerifyingKey::from_bytes(
            &B64.decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .unwrap();
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let sig = Signature::from_slice(&B64.decode(sig).unwrap()).unwrap();
        key.verify(signed.as_bytes(), &sig)
            .expect("signature verifies");

        let claims = decode_part(token, 1);
        assert_eq!(claims["operator_reason"], "maintenance");
        assert_eq!(claims["operator_ticket"], "TICKET-123");
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(claims["aud"], "warden");
        assert_eq!(claims["scope"], "orch:operate");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            900
        );
        for k in ["iss", "sub", "jti", "roles"] {
            assert!(!claims[k].is_null(), "claim {k}");
        }

        // Issuing it was audited.
        let read = app.token(&c, &[]).await;
        let issued = app.audit(&read, "action=token.issue").await;
        assert_eq!(issued.len(), 1);
        assert_eq!(issued[0]["target_id"], claims["jti"]);
        assert_eq!(issued[0]["operator_ticket"], "TICKET-123");
        assert_eq!(issued[0]["outcome"], "allowed");

        let discovery = app
            .send(Method::GET, "/.well-known/openid-configuration", None, None)
            .await
            .body;
        assert_eq!(
            discovery["jwks_uri"],
            format!(
                "{}/.well-known/jwks.json",
                discovery["issuer"].as_str().unwrap()
            )
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn elevated_token_without_reason_or_ticket_is_invalid_request_naming_the_field() {
    for app in apps().await {
        let c = app.client("acme", "ops-bot", &[Role::Operator]).await;
        let a = app
            .token_request(
                &c,
                &[("scope", "orch:operate"), ("operator_ticket", "TICKET-123")],
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.body["error"], "invalid_request");
        assert!(
            a.body["error_description"]
                .as_str()
                .unwrap()
                .contains("operator_reason"),
            "{:?}",
            a.body
        );
        let a = app
            .token_request(
                &c,
                &[
                    ("scope", "orch:operate"),
                    ("operator_reason", "maintenance"),
                ],
            )
            .await;
        assert_eq!(a.body["error"], "invalid_request");
        assert!(
            a.body["error_description"]
                .as_str()
                .unwrap()
                .contains("operator_ticket")
        );
        let a = app
            .token_request(
                &c,
                &[
                    ("scope", "orch:operate"),
                    ("operator_reason", "   "),
                    ("operator_ticket", "TICKET-1"),
                ],
            )
            .await;
        assert!(
            a.body["error_description"]
                .as_str()
                .unwrap()
                .contains("operator_reason"),
            "blank reason refused"
        );
        let a = app
            .token_request(
                &c,
                &[
                    ("scope", "orch:operate"),
                    ("operator_reason", "x"),
                    ("operator_ticket", "not a ticket"),
                ],
            )
            .await;
        assert_eq!(a.body["error"], "invalid_request");
        assert!(
            a.body["error_description"]
                .as_str()
                .unwrap()
                .contains("operator_ticket")
        );
        // Beyond the client's roles.
        let a = app
            .token_request(
                &c,
                &[
                    ("scope", "orch:quota"),
                    ("quota_reason", "x"),
                    ("quota_ticket", "Q-1"),
                ],
            )
            .await;
        assert_eq!(
            (a.status, a.body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_scope"))
        );
        // Each refusal of an elevated request by an authenticated client is audited.
        let read = app.token(&c, &[]).await;
        let refused = app
            .audit(&read, "action=token.issue&outcome=rejected")
            .await;
        let codes: Vec<&str> = refused
            .iter()
            .map(|e| e["reason_code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            vec![
                "FORBIDDEN_SCOPE",
                "INVALID_TICKET_FORMAT",
                "MISSING_OPERATOR_REASON",
                "MISSING_OPERATOR_TICKET",
                "MISSING_OPERATOR_REASON"
            ]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn default_token_gets_only_non_elevated_scopes() {
    for app in apps().await {
        let c = app.client("acme", "admin", &[Role::Admin]).await;
        let a = app.token_request(&c, &[]).await;
        assert_eq!(a.body["scope"], "orch:read orch:work");
        assert_eq!(a.body["expires_in"], 3600);
        let viewer = app.client("acme", "viewer", &[Role::Viewer]).await;
        let a = app.token_request(&viewer, &[("scope", "orch:work")]).await;
        assert_eq!(a.body["error"], "invalid_scope");
        let a = app
            .token_request(&viewer, &[("scope", "orch:everything")])
            .await;
        assert_eq!(a.body["error"], "invalid_scope");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_client_credentials_are_invalid_client_then_rate_limited() {
    for app in apps().await {
        let mut c = app.client("acme", "bot", &[Role::Viewer]).await;
        c.secret.push('x');
        for _ in 0..20 {
            let a = app.token_request(&c, &[]).await;
            assert_eq!(
                (a.status, a.body["error"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("invalid_client"))
            );
        }
        let a = app.token_request(&c, &[]).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait));
        app.stop().await;
    }
}

/// Sign `claims` with `key` as an EdDSA JWT with `kid`.
fn forge(key: &ed25519_dalek::SigningKey, kid: &str, claims: &Value) -> String {
    use ed25519_dalek::Signer;
    let header = B64.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string());
    let payload = B64.encode(claims.to_string());
    let sig = key.sign(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", B64.encode(sig.to_bytes()))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len().min(64)].copy_from_slice(&key[..key.len().min(64)]);
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let inner_hash = Sha256::digest(&inner);
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner_hash.iter().copied())
        .collect();
    Sha256::digest(&outer).to_vec()
}

#[tokio::test]
async fn forged_tokens_are_all_unauthenticated() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let good = t.operator.clone();
        let claims = decode_part(&good, 1);
        let header = decode_part(&good, 0);
        let kid = header["kid"].as_str().unwrap();
        let server_key = app.app_state.authority.signing_key();
        let real = ed25519_dalek::SigningKey::from_bytes(&server_key.secret_bytes());
        let jwks = app
            .send(Method::GET, "/.well-known/jwks.json", None, None)
            .await
            .body;
        let public = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
        let now = claims["iat"].as_i64().unwrap();

        let mut forged = Vec::new();
        // alg: none
        let none_header = B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
        forged.push((
            "alg none",
            format!("{none_header}.{}.", B64.encode(claims.to_string())),
        ));
        // HS256 keyed with the public key (algorithm confusion).
        let hs_header = B64.encode(json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string());
        let hs_payload = B64.encode(claims.to_string());
        let mac = hmac_sha256(&public, format!("{hs_header}.{hs_payload}").as_bytes());
        forged.push((
            "HS256 with public key",
            format!("{hs_header}.{hs_payload}.{}", B64.encode(mac)),
        ));
        // Expired, signed with the real key.
        let mut expired = claims.clone();
        expired["exp"] = json!(now - 3600);
        expired["iat"] = json!(now - 7200);
        expired["nbf"] = json!(now - 7200);
        forged.push(("expired", forge(&real, kid, &expired)));
        // One flipped signature byte.
        let (signed, sig) = good.rsplit_once('.').unwrap();
        let mut sig = B64.decode(sig).unwrap();
        sig[10] ^= 0x01;
        forged.push((
            "flipped signature byte",
            format!("{signed}.{}", B64.encode(sig)),
        ));
        // Unknown kid, signed by another key.
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        forged.push(("unknown kid", forge(&stranger, "not-a-known-kid", &claims)));
        // Our kid, signed by another key.
        forged.push(("wrong key", forge(&stranger, kid, &claims)));
        // Wrong audience, signed with the real key.
        let mut aud = claims.clone();
        aud["aud"] = json!("someone-else");
        forged.push(("wrong audience", forge(&real, kid, &aud)));
        // Payload tampered after signing: another tenant.
        let mut other = claims.clone();
        other["tenant"] = json!("other");
        forged.push((
            "tampered payload",
            format!(
                "{}.{}.{}",
                good.split('.').next().unwrap(),
                B64.encode(other.to_string()),
                good.split('.').nth(2).unwrap()
            ),
        ));
        forged.push(("garbage", "not.a.token".into()));

        let job = app.enqueue(&t.token, "q").await;
        let path = format!("/api/v1/jobs/{}/cancel", job["id"].as_str().unwrap());
        for (what, token) in &forged {
            let a = app.post(&path, token, None).await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{what} on {:?}: {:?}",
                app.backend,
                a.body
            );
            assert_eq!(a.code(), "UNAUTHENTICATED", "{what}");
            assert!(
                a.headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
        }
        let a = app.send(Method::POST, &path, None, None).await;
        assert_eq!(a.code(), "UNAUTHENTICATED", "no token");
        // The genuine token still works, and the job was never touched by the forgeries.
        let a = app.post(&path, &good, None).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        // Failures never reach the tenant's log.
        let entries = app.audit(&t.token, "action=job.cancel").await;
        assert_eq!(entries.len(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn authentication_failures_go_to_the_system_log_never_the_tenants() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        for _ in 0..3 {
            let a = app
                .send(Method::GET, "/api/v1/jobs", Some("garbage"), None)
                .await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        }
        let sys = app.client("_system", "auditor", &[Role::Viewer]).await;
        let sys_token = app.token(&sys, &[]).await;
        // The aggregator writes once a second.
        let mut entries = Vec::new();
        for _ in 0..40 {
            entries = app.audit(&sys_token, "action=auth.failure").await;
            if !entries.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(!entries.is_empty(), "an auth.failure entry in _system");
        let total: u64 = entries
            .iter()
            .map(|e| e["metadata"]["count"].as_u64().unwrap())
            .sum();
        assert!(total >= 3, "{entries:?}");
        assert_eq!(entries[0]["tenant"], "_system");
        assert_eq!(entries[0]["source_ip"], "127.0.0.1");
        assert!(app.audit(&t.token, "action=auth.failure").await.is_empty());
        let metrics = app.send(Method::GET, "/metrics", None, None).await.body;
        assert!(
            metrics
                .as_str()
                .unwrap()
                .contains("warden_auth_failures_total{reason=\"malformed\"}"),
            "{metrics}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn revoked_clients_tokens_stop_working_at_once() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        assert_eq!(
            app.get("/api/v1/jobs", &t.token).await.status,
            StatusCode::OK
        );
        let actor = warden_core::audit::Actor {
            kind: warden_core::audit::ActorKind::Cli,
            name: "tester".into(),
        };
        app.store
            .revoke_client(
                &warden_core::names::TenantId::parse("acme").unwrap(),
                &warden_core::names::ClientName::parse("admin").unwrap(),
                &actor,
            )
            .await
            .unwrap();
        let a = app.get("/api/v1/jobs", &t.token).await;
        assert_eq!(a.code(), "UNAUTHENTICATED");
        let a = app.token_request(&t.admin, &[]).await;
        assert_eq!(a.body["error"], "invalid_client");
        app.stop().await;
    }
}

#[tokio::test]
async fn external_issuer_tokens_go_through_the_same_pipeline() {
    use warden_store::testing::TestDb;
    let dir = tempfile::tempdir().unwrap();
    let key = warden_authority::SigningKey::generate().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    let set = warden_authority::KeySet::new(vec![key.verifying_key()]).unwrap();
    std::fs::write(&jwks_path, set.jwks().to_string()).unwrap();
    for db in TestDb::all().await {
        let path = jwks_path.clone();
        let app = TestApp::spawn_with(db, |c| {
            c.auth.issuers.push(warden_server::config::ExternalIssuer {
                issuer: "https://idp.example".into(),
                audience: "warden-api".into(),
                jwks_file: Some(path),
                jwks_url: None,
                ca_file: None,
                tenant_claim: "org".into(),
            })
        })
        .await;
        let now = warden_core::time::Timestamp::now().as_micros() / 1_000_000;
        let claims = |scope: &str, warrant: bool| {
            let mut c = json!({"iss": "https://idp.example", "aud": "warden-api", "sub": "alice@example", "exp": now + 300, "iat": now, "jti": "ext-1", "org": "globex", "scope": scope});
            if warrant {
                c["operator_reason"] = json!("incident");
                c["operator_ticket"] = json!("INC-42");
            }
            c
        };
        let read = warden_authority::sign_jwt(&key, &claims("orch:read orch:work", false));
        let job = app.enqueue(&read, "q").await;
        let id = job["id"].as_str().unwrap();
        // An outside token with orch:operate but no warrant: refused in the pipeline, audited.
        let bare = warden_authority::sign_jwt(&key, &claims("orch:read orch:operate", false));
        let a = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &bare, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, "MISSING_OPERATOR_REASON")
        );
        let full = warden_authority::sign_jwt(&key, &claims("orch:read orch:operate", true));
        let a = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &full, None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let entries = app.audit(&read, "action=job.cancel").await;
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["actor"], "external:alice@example");
        assert_eq!(entries[0]["operator_ticket"], "INC-42");
        assert_eq!(entries[1]["reason_code"], "MISSING_OPERATOR_REASON");
        app.stop().await;
    }
}

/// A private CA and a server certificate it signed for 127.0.0.1: (CA PEM, chain, key).
fn private_ca_and_server_cert() -> (
    String,
    Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let key = tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
    (ca.pem(), vec![leaf.der().clone()], key.into())
}

/// Serve the current `body` as JSON to every request over HTTPS on an ephemeral port; the
/// URL and the PEM of the CA that signed the server's certificate.
async fn serve_over_https(body: std::sync::Arc<std::sync::Mutex<String>>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let (ca_pem, chain, key) = private_ca_and_server_cert();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.lock().unwrap().clone());
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake: nothing to serve.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, ca_pem)
}

#[tokio::test]
async fn external_issuer_keys_are_fetched_over_https_trusting_its_private_ca_and_follow_rotation() {
    use warden_store::testing::TestDb;
    let dir = tempfile::tempdir().unwrap();
    let key = warden_authority::SigningKey::generate().unwrap();
    let set = warden_authority::KeySet::new(vec![key.verifying_key()]).unwrap();
    let jwks = std::sync::Arc::new(std::sync::Mutex::new(set.jwks().to_string()));
    let (url, ca_pem) = serve_over_https(jwks.clone()).await;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca_pem).unwrap();
    let issuer = |ca_file: Option<std::path::PathBuf>| warden_server::config::ExternalIssuer {
        issuer: "https://idp.example".into(),
        audience: "warden-api".into(),
        jwks_file: None,
        jwks_url: Some(url.clone()),
        ca_file,
        tenant_claim: "org".into(),
    };
    let now = warden_core::time::Timestamp::now().as_micros() / 1_000_000;
    let sign = |key: &warden_authority::SigningKey| {
        warden_authority::sign_jwt(
            key,
            &json!({"iss": "https://idp.example", "aud": "warden-api", "sub": "alice@example", "exp": now + 300, "iat": now, "jti": "ext-https", "org": "globex", "scope": "orch:read"}),
        )
    };
    let token = sign(&key);

    // Trusting the private CA: the keys are fetched (at start, by the refresh loop) and the
    // issuer's tokens are accepted.
    let trusting = issuer(Some(ca_path.clone()));
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| c.auth.issuers.push(trusting)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.app_state.authority.issuers[0]
        .keys
        .read()
        .unwrap()
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the issuer's keys were never fetched over https"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let a = app.get("/api/v1/queues", &token).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // The issuer rotates its key: the first token naming the new key makes us fetch the
    // JWKS again at once (not at the next 5-minute refresh); the old key is gone with it.
    let rotated = warden_authority::SigningKey::generate().unwrap();
    let new_set = warden_authority::KeySet::new(vec![rotated.verifying_key()]).unwrap();
    *jwks.lock().unwrap() = new_set.jwks().to_string();
    let a = app.get("/api/v1/queues", &sign(&rotated)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = app.get("/api/v1/queues", &token).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // A made-up key id does not make us fetch again within 30 s.
    let stranger = warden_authority::SigningKey::generate().unwrap();
    *jwks.lock().unwrap() = warden_authority::KeySet::new(vec![stranger.verifying_key()])
        .unwrap()
        .jwks()
        .to_string();
    let a = app.get("/api/v1/queues", &sign(&stranger)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    app.stop().await;

    // Without the CA the certificate is refused, no keys are loaded, and the token is not
    // accepted.
    let app = TestApp::spawn_with(TestDb::sqlite(), |c| c.auth.issuers.push(issuer(None))).await;
    app.app_state.authority.refresh_issuers().await;
    let a = app.get("/api/v1/queues", &token).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    app.stop().await;
}

#[test]
fn an_issuer_ca_file_that_holds_no_certificate_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let mut config = warden_server::config::Config::default();
    config
        .auth
        .issuers
        .push(warden_server::config::ExternalIssuer {
            issuer: "https://idp.example".into(),
            audience: "warden-api".into(),
            jwks_file: None,
            jwks_url: Some("https://127.0.0.1:1/jwks.json".into()),
            ca_file: Some(path),
            tenant_claim: "org".into(),
        });
    config.validate().unwrap();
    let err = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = warden_store::testing::TestDb::sqlite();
        let store = db.open().await;
        warden_server::auth::Authority::load(&store, &config)
            .await
            .unwrap_err()
    });
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[tokio::test]
async fn a_rotated_token_key_signs_new_tokens_while_tokens_of_the_old_one_keep_working() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        let old_kid = decode_part(&t.token, 0)["kid"].as_str().unwrap().to_owned();
        let new = warden_server::auth::new_token_key().unwrap();
        let warrant = warden_store::tenants::LocalWarrant {
            actor: warden_core::audit::Actor::client("key-admin"),
            reason: "yearly rotation".into(),
            ticket: "OPS-7".into(),
        };
        let retired = app.store.rotate_signing_key(&new, &warrant).await.unwrap();
        assert_eq!(retired, vec![old_kid.clone()], "[{b:?}]");
        // Rotating to the key that is already active is refused, and changes nothing.
        let again = app.store.rotate_signing_key(&new, &warrant).await;
        assert!(again.is_err(), "[{b:?}]");
        app.app_state.reload_keys().await;

        let fresh = app.token(&t.admin, &[]).await;
        assert_eq!(decode_part(&fresh, 0)["kid"], new.kid.as_str(), "[{b:?}]");
        for token in [&t.token, &fresh] {
            let a = app.get("/api/v1/queues", token).await;
            assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        }
        let jwks = app
            .send(Method::GET, "/.well-known/jwks.json", None, None)
            .await
            .body;
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids.len(), 2, "[{b:?}] {kids:?}");
        assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new.kid.as_str()));

        // The rotation is in the `_system` log, with its warrant; one entry, not two.
        let entries = app
            .store
            .list_audit(
                &warden_core::names::TenantId::system(),
                &warden_store::audit::AuditFilter {
                    actions: vec!["key.rotate".into()],
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap()
            .0;
        assert_eq!(entries.len(), 1, "[{b:?}]");
        let e = &entries[0].entry;
        assert_eq!(e.target_id.as_deref(), Some(new.kid.as_str()));
        assert_eq!(e.operator_ticket.as_deref(), Some("OPS-7"));
        assert_eq!(e.metadata["retired"], json!([old_kid]));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_server_with_a_master_key_signs_as_usual_and_its_store_will_not_start_without_it() {
    use warden_store::testing::TestDb;
    let master = "c2VjcmV0LW1hc3Rlci1rZXktb2YtMzItYnl0ZXMhISE=";
    for db in TestDb::all().await {
        let b = db.backend;
        let url = db.url.clone();
        let app = TestApp::spawn_with(db, |c| c.master_key = Some(master.into())).await;
        let t = app.tenant("acme").await;
        let a = app.get("/api/v1/queues", &t.token).await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        // The same database opened without the master key: the keys stay shut, and the
        // server says what is missing instead of minting a second set of keys.
        let keyless = warden_store::Store::open(&warden_store::StoreOptions::new(url))
            .await
            .unwrap();
        let err = warden_server::AppState::new(keyless, warden_server::Config::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("set WARDEN_MASTER_KEY"), "[{b:?}] {err}");
        app.stop().await;
    }
}
