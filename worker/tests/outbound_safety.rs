//! Outbound safety (RELIABILITY O1, O2, B2): the SSRF guard on real requests, template
//! values that try to change headers, paths, queries, JSON or XML structure (asserted on the
//! bytes the sink received), and hostile SOAP responses.
//!
//! Real requests only ever go to loopback addresses. The guard's answer for link-local,
//! private and unique-local ranges is checked with `Outbound::check_egress`, the same check an
//! attempt makes, which never connects.

mod support;

use std::collections::BTreeMap;

use support::{Reply, Sink, outbound, rest_call, retry, vars};
use switchboard_worker::config::EgressConfig;
use switchboard_worker::delivery::{DeliveryOutcome, FailureKind, Outbound};
use switchboard_worker::outbound::egress::EgressError;
use switchboard_worker::outbound::xml::{XmlLimits, parse_document};

fn guarded(allow: &[&str]) -> Outbound {
    let egress = EgressConfig { allow_cidrs: allow.iter().map(|s| s.to_string()).collect() };
    Outbound::from_parts(&BTreeMap::new(), &egress).unwrap()
}

fn failure_kind(outcome: &DeliveryOutcome) -> Option<FailureKind> {
    outcome.failure().map(|f| f.kind)
}

#[tokio::test]
async fn loopback_in_every_spelling_is_refused_unless_allow_listed() {
    let sink = Sink::always(200).await;
    let port = sink.addr.port();
    let outbound = guarded(&[]);
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.1.2.3:{port}"),
        format!("http://[::1]:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://[::ffff:7f00:1]:{port}"),
        format!("http://0.0.0.0:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let call = rest_call(&url, "/events");
        let outcome = outbound.deliver(&call, &vars(&[]), "d").await;
        assert_eq!(failure_kind(&outcome), Some(FailureKind::Egress), "{url}: {outcome:?}");
        assert_eq!(outcome.attempts().len(), 1);
    }
    assert_eq!(sink.count(), 0, "nothing reached the sink");

    // An allow-list entry opens exactly what it names.
    let narrow = guarded(&["127.0.0.2/32"]);
    let call = rest_call(&format!("http://127.0.0.1:{port}"), "/events");
    assert_eq!(
        failure_kind(&narrow.deliver(&call, &vars(&[]), "d").await),
        Some(FailureKind::Egress)
    );
    let open = guarded(&["127.0.0.1/32"]);
    assert!(open.deliver(&call, &vars(&[]), "d").await.is_delivered());
    let mapped = rest_call(&format!("http://[::ffff:127.0.0.1]:{port}"), "/events");
    assert_eq!(open.check_egress(&mapped.endpoint.url).await, Ok(()));
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn metadata_private_and_unique_local_addresses_are_refused() {
    let outbound = guarded(&["127.0.0.0/8"]);
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::]/",
    ] {
        match outbound.check_egress(url).await {
            Err(EgressError::Refused { .. }) => {}
            other => panic!("{url}: {other:?}"),
        }
    }
    assert_eq!(outbound.check_egress("http://127.0.0.1/").await, Ok(()));
}

#[tokio::test]
async fn redirects_to_internal_addresses_are_never_followed() {
    let internal = Sink::always(200).await;
    for location in [
        "http://169.254.169.254/latest/meta-data/iam/".to_string(),
        format!("http://[::ffff:127.0.0.1]:{}/", internal.addr.port()),
        format!("{}/admin", internal.url()),
    ] {
        let sink = Sink::start(vec![], Reply::with_header(302, "Location", &location)).await;
        let mut call = rest_call(&sink.url(), "/events");
        call.endpoint.retry = retry(3, 1, 1);
        let outcome =
            guarded(&[&format!("{}/32", sink.addr.ip())]).deliver(&call, &vars(&[]), "d").await;
        assert_eq!(failure_kind(&outcome), Some(FailureKind::Redirect), "{location}");
        assert_eq!(sink.count(), 1);
    }
    assert_eq!(internal.count(), 0);
}

#[tokio::test]
async fn header_values_cannot_add_headers() {
    let sink = Sink::always(200).await;
    let mut call = rest_call(&sink.url(), "/events");
    call.method.headers = BTreeMap::from([("X-Note".to_string(), "note ${v}".to_string())]);
    let outbound = outbound(BTreeMap::new());
    for bad in ["a\r\nX-Injected: 1", "a\nX-Injected: 1", "a\rX-Injected: 1", "a\0b"] {
        let outcome = outbound.deliver(&call, &vars(&[("v", bad)]), "d").await;
        assert_eq!(failure_kind(&outcome), Some(FailureKind::Template), "{bad:?}");
    }
    assert_eq!(sink.count(), 0);
    assert!(outbound.deliver(&call, &vars(&[("v", "fine: ok")]), "d").await.is_delivered());
    let received = sink.received();
    assert_eq!(received[0].header("X-Note"), Some("note fine: ok"));
    assert!(received[0].header("X-Injected").is_none());
}

#[tokio::test]
async fn json_values_stay_string_content() {
    let sink = Sink::always(200).await;
    let call = rest_call(&sink.url(), "/events");
    let hostile = "x\",\"admin\":true,\"y\":\"\r\nX-Injected: 1\r\n\r\n</script>";
    assert!(
        outbound(BTreeMap::new())
            .deliver(&call, &vars(&[("v", hostile)]), "d")
            .await
            .is_delivered()
    );
    let received = &sink.received()[0];
    let body: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(body, serde_json::json!({ "v": hostile }));
    assert!(!received.body.windows(2).any(|w| w == b"\r\n"));
    assert!(!received.raw_head.contains("X-Injected"));
}

#[tokio::test]
async fn xml_and_soap_values_stay_text() {
    let sink = Sink::always(200).await;
    let hostile = "</text><admin>true</admin><text>&amp;\"'";
    let mut call = rest_call(&sink.url(), "/notes");
    call.method.body = Some("<note><text>${v}</text></note>".into());
    call.method.content_type = Some("application/xml".into());
    let outbound = outbound(BTreeMap::new());
    assert!(outbound.deliver(&call, &vars(&[("v", hostile)]), "d").await.is_delivered());

    let mut soap = rest_call(&sink.url(), "/soap");
    soap.endpoint.protocol = "soap".into();
    soap.method.body = Some("<m:Create xmlns:m=\"urn:m\"><m:text>${v}</m:text></m:Create>".into());
    soap.method.soap_action = Some("urn:Create".into());
    let soap_sink_response = switchboard_worker::outbound::soap::envelope(
        switchboard_worker::outbound::soap::SoapVersion::V11,
        "<m:CreateResponse xmlns:m=\"urn:m\"/>",
    );
    let soap_sink = Sink::start(vec![], Reply::body(200, "text/xml", soap_sink_response)).await;
    soap.endpoint.url = soap_sink.url();
    assert!(outbound.deliver(&soap, &vars(&[("v", hostile)]), "d").await.is_delivered());

    let note = parse_document(&sink.received()[0].body, &XmlLimits::default()).unwrap();
    assert_eq!(note.children.len(), 1);
    assert_eq!(note.children[0].local_name, "text");
    assert_eq!(note.children[0].text, hostile);

    let received = &soap_sink.received()[0];
    assert_eq!(received.header("SOAPAction"), Some("\"urn:Create\""));
    assert_eq!(received.header("Content-Type"), Some("text/xml; charset=utf-8"));
    let envelope = parse_document(&received.body, &XmlLimits::default()).unwrap();
    let create = envelope.child("Body").unwrap().child("Create").unwrap();
    assert_eq!(create.children.len(), 1);
    assert_eq!(create.children[0].text, hostile);
}

#[tokio::test]
async fn path_and_query_values_stay_one_component() {
    let sink = Sink::always(200).await;
    let mut call = rest_call(&sink.url(), "/items/${v}");
    call.method.query = BTreeMap::from([("q".to_string(), "${v}".to_string())]);
    let outbound = outbound(BTreeMap::new());
    let hostile = "../admin?x=1&y=2#frag @evil.example.com/";
    assert!(outbound.deliver(&call, &vars(&[("v", hostile)]), "d").await.is_delivered());
    assert_eq!(
        sink.received()[0].target(),
        "/items/..%2Fadmin%3Fx%3D1%26y%3D2%23frag%20%40evil.example.com%2F?q=..%2Fadmin%3Fx%3D1%26y%3D2%23frag%20%40evil.example.com%2F"
    );
    let outcome = outbound.deliver(&call, &vars(&[("v", "..")]), "d").await;
    assert_eq!(failure_kind(&outcome), Some(FailureKind::Template));
    assert_eq!(sink.count(), 1);
}

fn soap_call(url: &str) -> switchboard_worker::config::OutboundCall {
    let mut call = rest_call(url, "/soap");
    call.endpoint.protocol = "soap".into();
    call.endpoint.retry = retry(3, 1, 1);
    call.method.body = Some("<m:Get xmlns:m=\"urn:m\"/>".into());
    call
}

#[tokio::test]
async fn billion_laughs_and_xxe_responses_are_refused() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><r>&lol9;</r></soap:Body></soap:Envelope>"#;
    let xxe = r#"<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><r>&xxe;</r></soap:Body></soap:Envelope>"#;
    let undeclared = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><r>&xxe;</r></soap:Body></soap:Envelope>"#;
    for (name, body) in
        [("billion laughs", laughs), ("xxe", xxe), ("undeclared entity", undeclared)]
    {
        let sink = Sink::start(vec![], Reply::body(200, "text/xml", body)).await;
        let outcome =
            outbound(BTreeMap::new()).deliver(&soap_call(&sink.url()), &vars(&[]), "d").await;
        let DeliveryOutcome::Failed { failure, .. } = &outcome else {
            panic!("{name}: {outcome:?}")
        };
        assert_eq!(failure.kind, FailureKind::InvalidResponse, "{name}");
        assert!(
            failure.message.contains("DTD") || failure.message.contains("entity"),
            "{name}: {failure}"
        );
        assert!(!format!("{outcome:?}").contains("root:x:0"), "{name}: no file content");
        assert_eq!(sink.count(), 1, "{name}: not retried");
    }
}

#[tokio::test]
async fn soap_faults_are_classified_by_who_is_at_fault() {
    let fault = |code: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:{code}</faultcode><faultstring>it went
wrong</faultstring></soap:Fault></soap:Body></soap:Envelope>"#
        )
    };
    let client = Sink::start(vec![], Reply::body(500, "text/xml", fault("Client"))).await;
    let outcome =
        outbound(BTreeMap::new()).deliver(&soap_call(&client.url()), &vars(&[]), "d").await;
    let DeliveryOutcome::Failed { failure, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(failure.kind, FailureKind::SoapFault);
    assert_eq!(failure.message, "SOAP fault soap:Client: it went wrong");
    assert_eq!(client.count(), 1);

    let server = Sink::start(vec![], Reply::body(500, "text/xml", fault("Server"))).await;
    let outcome =
        outbound(BTreeMap::new()).deliver(&soap_call(&server.url()), &vars(&[]), "d").await;
    assert!(
        matches!(&outcome, DeliveryOutcome::Exhausted { last, .. } if last.kind == FailureKind::SoapFault)
    );
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn soap_12_requests_carry_the_action_in_the_content_type() {
    let ok = switchboard_worker::outbound::soap::envelope(
        switchboard_worker::outbound::soap::SoapVersion::V12,
        "<m:Ok xmlns:m=\"urn:m\"/>",
    );
    let sink = Sink::start(vec![], Reply::body(200, "application/soap+xml", ok)).await;
    let mut call = soap_call(&sink.url());
    call.endpoint.soap_version = Some("1.2".into());
    call.method.soap_action = Some("urn:Get".into());
    assert!(outbound(BTreeMap::new()).deliver(&call, &vars(&[]), "d").await.is_delivered());
    let received = &sink.received()[0];
    assert_eq!(
        received.header("Content-Type"),
        Some("application/soap+xml; charset=utf-8; action=\"urn:Get\"")
    );
    assert!(received.header("SOAPAction").is_none());
    let envelope = parse_document(&received.body, &XmlLimits::default()).unwrap();
    assert_eq!(envelope.namespace.as_deref(), Some("http://www.w3.org/2003/05/soap-envelope"));
}
