//! The watcher against the in-test API server over HTTPS, authenticated as users are: a bearer
//! token or a client certificate, the server's certificate checked against the kubeconfig's
//! `certificate-authority-data`. Certificates are made per test (`pki`).

use super::api_server::{ApiServer, Security};
use super::pki::{Authority, server_config};
use super::{Context, User, Watching, owned_by_pod, reconnecting_kinds, shop};
use netwatch::cluster::ResourceKind;
use netwatch::cluster::watch::ResourceState;

const TOKEN: &str = "netwatch-test-token";

fn https(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// The server's answer to every request carried the token: only the right one syncs, and the
/// wrong one is the API server's 401, reported per kind as the credentials' fault.
#[tokio::test]
async fn over_https_a_bearer_token_syncs_and_a_wrong_token_is_unauthorized() {
    let ca = Authority::new("test-ca");
    let security =
        Security { tls: Some(server_config(&ca.server(), None)), token: Some(TOKEN.to_owned()) };
    let server = ApiServer::start_with(0, shop(), security).await;

    let right = Context {
        name: "tls",
        server: https(server.port),
        ca_pem: Some(&ca.pem),
        user: User::Token(TOKEN),
    };
    let mut watching = Watching::start_with(&[right]).await;
    watching.synced().await;
    assert!(owned_by_pod(&watching.view, "10.244.1.10", "shop", "web"));
    assert_eq!(watching.view.synced.len(), 6);

    let wrong = Context {
        name: "tls",
        server: https(server.port),
        ca_pem: Some(&ca.pem),
        user: User::Token("not-the-token"),
    };
    let mut rejected = Watching::start_with(&[wrong]).await;
    rejected
        .until("every kind to be unauthorized", |_, status| {
            ResourceKind::ALL.iter().all(|k| status.state(*k) == &ResourceState::Unauthorized)
        })
        .await;
    assert!(
        rejected.status.summary().starts_with(
            "unauthorized: namespaces (credentials rejected; check the kubeconfig user or token)"
        ),
        "{}",
        rejected.status.summary()
    );
    assert!(rejected.view.pods.is_empty());
    assert!(server.tls_failures().is_empty(), "{:?}", server.tls_failures());
}

/// Mutual TLS: the server verifies the client certificate against the test CA, so a
/// kubeconfig user without one never gets past the handshake.
#[tokio::test]
async fn over_https_a_client_certificate_syncs_and_none_fails_the_handshake() {
    let ca = Authority::new("test-ca");
    let security = Security { tls: Some(server_config(&ca.server(), Some(&ca))), token: None };
    let server = ApiServer::start_with(0, shop(), security).await;
    let user = ca.client("netwatch");

    let with_cert = Context {
        name: "mtls",
        server: https(server.port),
        ca_pem: Some(&ca.pem),
        user: User::Certificate { cert_pem: &user.cert_pem, key_pem: &user.key_pem },
    };
    let mut watching = Watching::start_with(&[with_cert]).await;
    watching.synced().await;
    assert!(owned_by_pod(&watching.view, "10.244.1.11", "shop", "db"));
    assert!(server.tls_failures().is_empty(), "{:?}", server.tls_failures());

    let without = Context {
        name: "mtls",
        server: https(server.port),
        ca_pem: Some(&ca.pem),
        user: User::Anonymous,
    };
    let mut refused = Watching::start_with(&[without]).await;
    refused
        .until("every kind to report the failed connection", |_, status| {
            reconnecting_kinds(status) == ResourceKind::ALL.len()
        })
        .await;
    let lines = refused.status.lines();
    assert!(
        lines.iter().all(|line| line.contains("check client-certificate in the kubeconfig")),
        "{lines:?}"
    );
    assert!(refused.view.pods.is_empty());
    let failures = server.tls_failures();
    assert!(
        failures.iter().any(|why| why.contains("no certificates")),
        "the server refused a client without a certificate: {failures:?}"
    );
}

/// A server whose certificate another CA signed is not the cluster the kubeconfig trusts: every
/// kind says why it cannot connect, and nothing panics or syncs.
#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_a_connection_error_state() {
    let trusted = Authority::new("trusted-ca");
    let impostor = Authority::new("impostor-ca");
    let security =
        Security { tls: Some(server_config(&impostor.server(), None)), token: Some(TOKEN.into()) };
    let server = ApiServer::start_with(0, shop(), security).await;

    let context = Context {
        name: "tls",
        server: https(server.port),
        ca_pem: Some(&trusted.pem),
        user: User::Token(TOKEN),
    };
    let mut watching = Watching::start_with(&[context]).await;
    watching
        .until("every kind to report the untrusted certificate", |_, status| {
            reconnecting_kinds(status) == ResourceKind::ALL.len()
        })
        .await;
    let lines = watching.status.lines();
    assert!(
        lines.iter().all(|line| line.contains(
            "invalid peer certificate: UnknownIssuer; check \
                                                certificate-authority in the kubeconfig"
        )),
        "each kind says what failed and what to check: {lines:?}"
    );
    let summary = watching.status.summary();
    assert!(summary.contains("reconnecting since"), "{summary}");
    assert!(watching.view.pods.is_empty() && watching.view.synced.is_empty());
}
