//! Delivery against a flaky local sink (RELIABILITY D2–D7): exact attempt counts per status
//! and transport failure, the backoff schedule and Retry-After on a paused clock, the circuit
//! breaker, idempotency keys, redirects, bounded error excerpts and response captures.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Reply, Sink, outbound, rest_call, retry, vars};
use switchboard_worker::config::CircuitBreakerConfig;
use switchboard_worker::delivery::{
    AttemptOutcome, AttemptResult, CircuitState, DeliveryOutcome, FailureKind, backoff_ceiling,
};

#[tokio::test(start_paused = true)]
async fn retryable_statuses_use_every_attempt() {
    for status in [408u16, 429, 500, 502, 503, 504] {
        let sink = Sink::always(status).await;
        let mut call = rest_call(&sink.url(), "/events");
        call.endpoint.retry = retry(4, 100, 1_000);
        let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d-1").await;
        assert_eq!(sink.count(), 4, "status {status}");
        let DeliveryOutcome::Exhausted { last, attempts } = &outcome else {
            panic!("status {status}: {outcome:?}");
        };
        assert_eq!(last.kind, FailureKind::Status);
        assert_eq!(last.status, Some(status));
        assert!(attempts.iter().all(|a| a.result == AttemptResult::Status(status)));
        assert_eq!(attempts.iter().filter(|a| a.delay.is_some()).count(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn other_client_errors_are_not_retried() {
    for status in [400u16, 401, 403, 404, 409, 422] {
        let sink = Sink::always(status).await;
        let mut call = rest_call(&sink.url(), "/events");
        call.endpoint.retry = retry(4, 100, 1_000);
        let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d-1").await;
        assert_eq!(sink.count(), 1, "status {status}");
        let DeliveryOutcome::Failed { failure, attempts } = &outcome else {
            panic!("status {status}: {outcome:?}");
        };
        assert_eq!((failure.kind, failure.status), (FailureKind::Status, Some(status)));
        assert_eq!(attempts.len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn timeouts_resets_and_closed_connections_are_retried() {
    for (reply, category) in
        [(Reply::Hang, "timeout"), (Reply::Reset, "reset"), (Reply::Close, "reset")]
    {
        let sink = Sink::start(vec![], reply.clone()).await;
        let mut call = rest_call(&sink.url(), "/events");
        call.endpoint.retry = retry(3, 100, 1_000);
        call.endpoint.timeout_ms = 500;
        let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d-1").await;
        assert_eq!(sink.count(), 3, "{reply:?}");
        let DeliveryOutcome::Exhausted { last, attempts } = &outcome else {
            panic!("{reply:?}: {outcome:?}");
        };
        assert_eq!(last.kind.category(), category, "{reply:?}: {last}");
        assert!(attempts.iter().all(|a| a.result == AttemptResult::Error(category)));
    }
    // A body cut short after the status line: retried as a reset, and the message says what
    // was being read and what hyper made of it.
    let sink = Sink::start(vec![], Reply::CutBody).await;
    let call = rest_call(&sink.url(), "/events");
    let outcome = outbound(BTreeMap::new()).attempt(&call, &vars(&[]), "d-1", 1).await;
    let AttemptOutcome::Retryable(failure) = outcome else { panic!("{outcome:?}") };
    assert_eq!((failure.kind, failure.status), (FailureKind::Reset, Some(200)), "{failure}");
    assert!(failure.message.starts_with("response body error: error reading a body"), "{failure}");
}

#[tokio::test(start_paused = true)]
async fn every_attempt_is_bounded_by_the_endpoint_timeout() {
    let sink = Sink::start(vec![Reply::Hang], Reply::status(200)).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.timeout_ms = 750;
    let started = tokio::time::Instant::now();
    let outcome = outbound(BTreeMap::new()).attempt(&call, &vars(&[]), "d-1", 1).await;
    let AttemptOutcome::Retryable(failure) = outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.kind, FailureKind::Timeout);
    // The paused clock only moves by timers, so this is exactly the endpoint timeout.
    assert_eq!(started.elapsed(), Duration::from_millis(750));
}

#[tokio::test(start_paused = true)]
async fn backoff_schedule_is_capped_full_jitter_and_matches_the_sink() {
    let script =
        vec![Reply::status(503), Reply::status(503), Reply::status(500), Reply::status(502)];
    let sink = Sink::start(script, Reply::status(204)).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.retry = retry(5, 100, 250);
    let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d-1").await;
    let DeliveryOutcome::Delivered { status: 204, attempts, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(attempts.len(), 5);
    let received = sink.received();
    assert_eq!(received.len(), 5);
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.number as usize, i + 1);
        // The history's offsets are the times the sink saw the requests.
        assert_eq!(received[i].at - received[0].at, attempt.offset - attempts[0].offset);
        if let Some(delay) = attempt.delay {
            assert!(delay <= backoff_ceiling(&call.endpoint.retry, attempt.number));
            assert_eq!(received[i + 1].at - received[i].at, delay);
        }
    }
    let ceilings: Vec<u128> =
        (1..=4).map(|n| backoff_ceiling(&call.endpoint.retry, n).as_millis()).collect();
    assert_eq!(ceilings, vec![100, 200, 250, 250]);
    assert!(attempts[4].delay.is_none());
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_and_dates_are_honoured_up_to_the_cap() {
    let date =
        (chrono::Utc::now() + chrono::Duration::seconds(4)).format("%a, %d %b %Y %H:%M:%S GMT");
    let script = vec![
        Reply::with_header(429, "Retry-After", "2"),
        Reply::with_header(503, "Retry-After", &date.to_string()),
        Reply::with_header(503, "Retry-After", "3600"),
    ];
    let sink = Sink::start(script, Reply::status(200)).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.retry = retry(5, 10, 5_000);
    let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d-1").await;
    let DeliveryOutcome::Delivered { attempts, .. } = &outcome else { panic!("{outcome:?}") };
    let delays: Vec<Duration> = attempts.iter().filter_map(|a| a.delay).collect();
    assert_eq!(delays[0], Duration::from_secs(2));
    // From the date (wall clock, whole seconds): well above the 20 ms jitter ceiling.
    assert!(
        delays[1] > Duration::from_secs(1) && delays[1] <= Duration::from_secs(4),
        "{delays:?}"
    );
    assert_eq!(delays[2], Duration::from_secs(5), "Retry-After is capped at maxBackoff");
    let received = sink.received();
    assert_eq!(received[1].at - received[0].at, Duration::from_secs(2));
    assert_eq!(received[3].at - received[2].at, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn circuit_opens_after_consecutive_failures_and_probes_when_half_open() {
    let script =
        vec![Reply::status(500), Reply::status(500), Reply::status(500), Reply::status(503)];
    let sink = Sink::start(script, Reply::status(200)).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.retry = retry(1, 100, 1_000);
    call.endpoint.circuit_breaker =
        CircuitBreakerConfig { failure_threshold: 3, open_for_ms: 10_000 };
    let outbound = outbound(BTreeMap::new());

    for _ in 0..3 {
        assert!(matches!(
            outbound.deliver(&call, &vars(&[]), "d").await,
            DeliveryOutcome::Exhausted { .. }
        ));
    }
    assert_eq!(outbound.circuit_state(&call), CircuitState::Open);
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    assert!(
        matches!(outcome, DeliveryOutcome::CircuitOpen { retry_in, .. } if retry_in == Duration::from_secs(10))
    );
    assert_eq!(sink.count(), 3, "nothing is sent while open");

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(outbound.circuit_state(&call), CircuitState::HalfOpen);
    assert!(matches!(
        outbound.deliver(&call, &vars(&[]), "d").await,
        DeliveryOutcome::Exhausted { .. }
    ));
    assert_eq!(sink.count(), 4, "one probe");
    assert_eq!(outbound.circuit_state(&call), CircuitState::Open);
    assert!(matches!(
        outbound.deliver(&call, &vars(&[]), "d").await,
        DeliveryOutcome::CircuitOpen { .. }
    ));
    assert_eq!(sink.count(), 4);

    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    assert_eq!(outbound.circuit_state(&call), CircuitState::Closed);
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    assert_eq!(sink.count(), 6);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_ends_a_delivery_early() {
    let sink = Sink::always(500).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.retry = retry(5, 100, 1_000);
    call.endpoint.circuit_breaker =
        CircuitBreakerConfig { failure_threshold: 2, open_for_ms: 60_000 };
    let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::CircuitOpen { attempts, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(sink.count(), 2);
    let results: Vec<&AttemptResult> = attempts.iter().map(|a| &a.result).collect();
    assert_eq!(
        results,
        vec![&AttemptResult::Status(500), &AttemptResult::Status(500), &AttemptResult::CircuitOpen]
    );
}

#[tokio::test(start_paused = true)]
async fn one_idempotency_key_per_delivery_stable_across_retries() {
    let sink = Sink::start(vec![Reply::status(500), Reply::Reset], Reply::status(200)).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.retry = retry(3, 100, 1_000);
    let outbound = outbound(BTreeMap::new());
    assert!(outbound.deliver(&call, &vars(&[]), "evt-1/target-a").await.is_delivered());
    assert!(outbound.deliver(&call, &vars(&[]), "evt-2/target-a").await.is_delivered());
    let weird = "id with spaces\r\nand a line break";
    assert!(outbound.deliver(&call, &vars(&[]), weird).await.is_delivered());
    let keys: Vec<Vec<String>> = sink
        .received()
        .iter()
        .map(|r| r.header_values("Idempotency-Key").iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(keys.len(), 5);
    for k in &keys[..3] {
        assert_eq!(k, &vec!["evt-1/target-a".to_string()]);
    }
    assert_eq!(keys[3], vec!["evt-2/target-a".to_string()]);
    assert!(keys[4][0].starts_with("sha256:") && keys[4][0].len() == 71, "{:?}", keys[4]);
}

#[tokio::test]
async fn redirects_are_refused_not_followed() {
    let elsewhere = Sink::always(200).await;
    let sink = Sink::start(
        vec![],
        Reply::with_header(307, "Location", &format!("{}/moved", elsewhere.url())),
    )
    .await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.retry = retry(3, 1, 1);
    let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!((failure.kind, failure.status), (FailureKind::Redirect, Some(307)));
    assert_eq!(sink.count(), 1);
    assert_eq!(elsewhere.count(), 0);
}

#[tokio::test]
async fn hostile_error_bodies_are_bounded_single_line_excerpts() {
    let mut body =
        b"<html><script>alert(1)</script>\r\nSet-Cookie: evil=1\r\n\r\n\x1b[31m".to_vec();
    body.extend(std::iter::repeat_n(b'A', 10 * 1024 * 1024));
    let sink = Sink::start(vec![], Reply::body(400, "text/html", body)).await;
    let call = rest_call(&sink.url(), "/events");
    let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    let excerpt = failure.excerpt.as_deref().unwrap();
    assert!(
        excerpt.starts_with("<html><script>alert(1)</script> Set-Cookie: evil=1 [31mAAAA"),
        "{excerpt}"
    );
    assert!(excerpt.chars().count() <= 513);
    assert!(!excerpt.chars().any(|c| c.is_control()));
    assert!(!failure.message.chars().any(|c| c.is_control()));
}

#[tokio::test]
async fn captures_and_expected_statuses() {
    let response = r#"{"result":{"number":"INC0010001","sys_id":"abc","n":7}}"#;
    let sink =
        Sink::start(vec![Reply::body(201, "application/json", response)], Reply::status(200)).await;
    let mut call = rest_call(&sink.url(), "/api/now/table/incident");
    call.method.expected_statuses = vec![201];
    call.method.capture = BTreeMap::from([
        ("number".to_string(), "/result/number".to_string()),
        ("n".to_string(), "/result/n".to_string()),
        ("absent".to_string(), "/result/nope".to_string()),
    ]);
    let outbound = outbound(BTreeMap::new());
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    let DeliveryOutcome::Delivered { status: 201, captures, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        captures,
        &BTreeMap::from([
            ("n".to_string(), "7".to_string()),
            ("number".to_string(), "INC0010001".to_string())
        ])
    );
    // 200 is a 2xx but not the expected status: a permanent failure, not a success.
    let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
    assert!(
        matches!(outcome, DeliveryOutcome::Failed { ref failure, .. } if failure.status == Some(200))
    );
}

#[tokio::test]
async fn template_errors_fail_before_any_attempt() {
    let sink = Sink::always(200).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.method.variables[0].max_length = 3;
    let outcome = outbound(BTreeMap::new()).deliver(&call, &vars(&[("v", "too long")]), "d").await;
    let DeliveryOutcome::Failed { failure, attempts } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.kind, FailureKind::Template);
    assert!(attempts.is_empty());
    assert!(!failure.message.contains("too long"), "values never appear in errors");
    assert_eq!(sink.count(), 0);
}

#[tokio::test]
async fn metrics_count_attempts_retries_and_outcomes() {
    let sink = Sink::start(vec![Reply::status(503)], Reply::status(200)).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.endpoint.retry = retry(3, 1, 1);
    let outbound = outbound(BTreeMap::new());
    let mut registry = prometheus_client::registry::Registry::default();
    outbound.register_metrics(&mut registry);
    assert!(outbound.deliver(&call, &vars(&[]), "d").await.is_delivered());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        r#"switchboard_outbound_attempts_total{endpoint="sink",method="post",result="retryable",category="status"} 1"#,
        r#"switchboard_outbound_attempts_total{endpoint="sink",method="post",result="delivered",category=""} 1"#,
        r#"switchboard_outbound_retries_total{endpoint="sink",method="post"} 1"#,
        r#"switchboard_outbound_deliveries_total{endpoint="sink",method="post",outcome="delivered"} 1"#,
        r#"switchboard_outbound_circuit_state{endpoint="sink"} 0"#,
        r#"switchboard_outbound_request_duration_seconds_count{endpoint="sink",method="post"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
}
