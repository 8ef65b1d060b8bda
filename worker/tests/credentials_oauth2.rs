//! OAuth2 client credentials against a real token server from the npm registry
//! (oauth2-mock-server, see `tests/peers`) and a loopback resource server (RELIABILITY C1):
//! one token request for 50 concurrent calls at expiry, a 401 invalidating only the token it
//! rejected, both client authentication styles, client-secret rotation, and no secret in
//! any error.
//!
//! Expiry is reached by stepping tokio's clock (pause, advance, resume) between calls.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use support::{OAuth2Peer, Reply, Sink, credential, outbound, rest_call, vars, write_secret};
use switchboard_worker::config::{CredentialConfig, OAuth2Config, OutboundCall};
use switchboard_worker::delivery::{DeliveryOutcome, FailureKind, Outbound};
use switchboard_worker::outbound::egress::EgressPolicy;

const CLIENT_ID: &str = "switchboard-worker";
const CANARY_SECRET: &str = "CANARY-oauth-client-secret-7f3a9c1e";

fn oauth2(dir: &Path, token_url: &str, auth_style: &str) -> CredentialConfig {
    let mut config = credential("oauth2ClientCredentials", dir);
    config.oauth2 = Some(OAuth2Config {
        token_url: token_url.into(),
        scopes: vec!["incidents.write".into()],
        audience: None,
        auth_style: auth_style.into(),
        refresh_skew_seconds: 60,
    });
    config
}

fn client_files(secret: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "clientId", CLIENT_ID.as_bytes());
    write_secret(dir.path(), "clientSecret", format!("{secret}\n").as_bytes());
    dir
}

fn call_with(resource: &Sink, credential: &str) -> OutboundCall {
    let mut call = rest_call(&resource.url(), "/api/incidents");
    call.endpoint.credential = Some(credential.into());
    call
}

async fn step_past_token_expiry() {
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::time::resume();
}

fn authorization(request: &support::Received) -> String {
    request.header("Authorization").expect("an Authorization header").to_string()
}

#[tokio::test]
async fn fifty_concurrent_calls_at_expiry_cause_exactly_one_token_request() {
    let peer = OAuth2Peer::start(CLIENT_ID, CANARY_SECRET).await;
    let resource = Sink::always(200).await;
    let files = client_files(CANARY_SECRET);
    let outbound = outbound(BTreeMap::from([(
        "oauth".to_string(),
        oauth2(files.path(), &peer.token_url, "basic"),
    )]));
    let call = call_with(&resource, "oauth");

    assert!(outbound.deliver(&call, &vars(&[]), "first").await.is_delivered());
    assert!(outbound.deliver(&call, &vars(&[]), "second").await.is_delivered());
    assert_eq!(peer.counts().await, (1, 1), "the token is cached");

    step_past_token_expiry().await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (outbound, call) = (outbound.clone(), call.clone());
        calls.spawn(
            async move { outbound.deliver(&call, &BTreeMap::new(), &format!("d-{i}")).await },
        );
    }
    while let Some(outcome) = calls.join_next().await {
        let outcome = outcome.unwrap();
        assert!(outcome.is_delivered(), "{outcome:?}");
    }
    assert_eq!(peer.counts().await, (2, 2), "one refresh for fifty callers");

    let received = resource.received();
    assert_eq!(received.len(), 52);
    let before = authorization(&received[0]);
    assert_eq!(authorization(&received[1]), before);
    let after: BTreeSet<String> = received[2..].iter().map(authorization).collect();
    assert_eq!(after.len(), 1);
    assert!(!after.contains(&before));
    assert!(before.starts_with("Bearer ey"), "a JWT from the token server");
}

#[tokio::test]
async fn a_401_invalidates_only_the_token_it_rejected() {
    let peer = OAuth2Peer::start(CLIENT_ID, CANARY_SECRET).await;
    let resource = Sink::start(vec![Reply::status(401)], Reply::status(200)).await;
    let files = client_files(CANARY_SECRET);
    let outbound = outbound(BTreeMap::from([(
        "oauth".to_string(),
        oauth2(files.path(), &peer.token_url, "basic"),
    )]));
    let call = call_with(&resource, "oauth");

    // The resource rejects the first token: it is dropped, a new one fetched, the call resent.
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Delivered { attempts, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(attempts.len(), 1, "the refresh happens inside the attempt");
    assert_eq!(peer.counts().await, (2, 2));
    let received = resource.received();
    assert_eq!(received.len(), 2);
    assert_ne!(authorization(&received[0]), authorization(&received[1]));

    // At the cache: a late rejection of an older token keeps the newer one.
    let cache = outbound.credentials().get("oauth").unwrap().oauth2().unwrap().clone();
    let client = reqwest::Client::builder().build().unwrap();
    let egress = EgressPolicy::new(&support::loopback_allowed()).unwrap();
    let second = cache.token(&client, &egress).await.unwrap();
    assert_eq!(second.generation(), 2);
    step_past_token_expiry().await;
    let third = cache.token(&client, &egress).await.unwrap();
    assert_eq!((third.generation(), peer.counts().await), (3, (3, 3)));
    assert!(!cache.invalidate(&second).await, "an older token is not the cached one");
    assert_eq!(cache.token(&client, &egress).await.unwrap().generation(), 3);
    assert_eq!(peer.counts().await, (3, 3));
    assert!(cache.invalidate(&third).await);
    assert_eq!(cache.token(&client, &egress).await.unwrap().generation(), 4);
    assert_eq!(peer.counts().await, (4, 4));

    // A token rejected twice in a row is a permanent failure, not a loop.
    let stubborn = Sink::start(vec![], Reply::status(401)).await;
    let outcome = outbound.deliver(&call_with(&stubborn, "oauth"), &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!((failure.kind, failure.status), (FailureKind::Status, Some(401)));
    assert_eq!(stubborn.count(), 2);
    assert_eq!(peer.counts().await, (5, 5));
}

#[tokio::test]
async fn client_secret_rotation_both_auth_styles_and_no_secret_in_errors() {
    let peer = OAuth2Peer::start(CLIENT_ID, "rotated-secret").await;
    let resource = Sink::always(200).await;
    let files = client_files(CANARY_SECRET);
    let body_files = client_files("rotated-secret");
    let outbound = outbound(BTreeMap::from([
        ("oauth".to_string(), oauth2(files.path(), &peer.token_url, "basic")),
        ("oauth-body".to_string(), oauth2(body_files.path(), &peer.token_url, "body")),
    ]));
    let call = call_with(&resource, "oauth");

    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!((failure.kind, failure.status), (FailureKind::TokenRequest, None));
    assert!(
        failure.message.contains("invalid_client") && failure.message.contains("\"oauth\""),
        "{failure}"
    );
    for text in [format!("{outcome:?}"), failure.to_string(), format!("{outbound:?}")] {
        assert!(!text.contains(CANARY_SECRET), "the client secret leaked: {text}");
    }
    assert_eq!(resource.count(), 0);

    write_secret(files.path(), "clientSecret", b"rotated-secret\n");
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    assert!(
        outbound.deliver(&call_with(&resource, "oauth-body"), &vars(&[]), "d").await.is_delivered()
    );
    assert_eq!(peer.counts().await, (3, 2));
    assert_eq!(resource.count(), 2);
}

#[tokio::test]
async fn the_token_endpoint_is_behind_the_ssrf_guard_too() {
    let resource = Sink::always(200).await;
    let files = client_files(CANARY_SECRET);
    let resource_only = switchboard_worker::config::EgressConfig {
        allow_cidrs: vec![format!("{}/32", resource.addr.ip())],
    };
    for token_url in ["http://[::1]:9/token", "http://127.0.0.3:9/token"] {
        let credentials =
            BTreeMap::from([("oauth".to_string(), oauth2(files.path(), token_url, "basic"))]);
        let outbound = Outbound::from_parts(&credentials, &resource_only).unwrap();
        let outcome = outbound.deliver(&call_with(&resource, "oauth"), &vars(&[]), "d").await;
        let DeliveryOutcome::Failed { failure, attempts } = &outcome else {
            panic!("{token_url}: {outcome:?}")
        };
        assert_eq!(failure.kind, FailureKind::Egress, "{token_url}: {failure}");
        assert!(failure.message.contains("token endpoint refused"), "{failure}");
        assert_eq!(attempts.len(), 1, "not retried");
    }
    assert_eq!(resource.count(), 0);
}
