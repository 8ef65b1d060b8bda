//! The `switchboard` command as a user runs it: `lint` and `render` on good and bad input.

mod support;

use support::{switchboard, text};

#[test]
fn examples_pass_lint_without_findings() {
    let output = switchboard(&["lint", "-f", "examples/"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.ends_with("0 error(s), 0 warning(s) in 32 Switchboard object(s)\n"), "{stdout}");
}

#[test]
fn a_missing_owner_fails_lint_and_names_the_field() {
    let output = switchboard(&["lint", "-f", "operator/tests/fixtures/lint/missing-owner.yaml"]);
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("missing-owner.yaml:1 (document 1): Integration \"nobodys\": spec: missing field `owner`"), "{stdout}");
}

#[test]
fn an_inline_secret_fails_lint_without_printing_it() {
    let output = switchboard(&[
        "lint",
        "-f",
        "operator/tests/fixtures/lint/inline-secret.yaml",
        "-o",
        "json",
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        !stdout.contains("sk_live_") && !stderr.contains("sk_live_"),
        "the secret value was printed"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["errors"], 1);
    let finding = &report["findings"][0];
    assert_eq!(finding["rule"], "inline-secret");
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["object"], "OutboundMessage team-a/crm");
    assert_eq!(finding["field"], "spec.methods[0].headers[Authorization]");
}

#[test]
fn restricted_data_over_http_fails_lint() {
    let output =
        switchboard(&["lint", "-f", "operator/tests/fixtures/lint/restricted-over-http.yaml"]);
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout.contains("error[sensitive-data-insecure]")
            && stdout.contains("restricted data must be encrypted in transit, but OutboundMessage \"payroll\" uses plain http"),
        "{stdout}"
    );
    assert!(stdout.contains("restricted data must go to an authenticated endpoint"), "{stdout}");
}

#[test]
fn warnings_fail_only_when_asked() {
    let file = "operator/tests/fixtures/lint/restricted-over-http.yaml";
    let stdout = text(&switchboard(&["lint", "-f", file])).0;
    assert!(stdout.contains("warning[insecure-http]"), "{stdout}");
    let dir = tempfile::tempdir().unwrap();
    let warn_only = dir.path().join("warn.yaml");
    let body = std::fs::read_to_string(support::workspace().join(file))
        .unwrap()
        .replace("classification: restricted", "classification: internal");
    std::fs::write(&warn_only, body).unwrap();
    let path = warn_only.to_str().unwrap();
    assert_eq!(switchboard(&["lint", "-f", path]).status.code(), Some(0));
    assert_eq!(switchboard(&["lint", "-f", path, "--warnings-as-errors"]).status.code(), Some(1));
}

#[test]
fn bad_input_names_file_object_and_field_in_lint_and_render() {
    let files =
        ["operator/tests/fixtures/lint/bad-input.yaml", "operator/tests/fixtures/malformed.yaml"];
    let expected = [
        "bad-input.yaml:9 (document 2): Widget \"w\": unknown kind \"Widget\" in switchboard.dev/v1alpha1",
        "bad-input.yaml:14 (document 3): Credential \"badtype\": spec.type: unknown variant `kerberos`",
        "bad-input.yaml:1 (document 1): Credential team-a/typo: spec.rotaton: unknown field \"rotaton\"",
        "bad-input.yaml:21 (document 4): Schedule team-a/broken-ref: spec.run.integration.name: Integration \"does-not-exist\" not found",
        "malformed.yaml:1 (document 1): not valid YAML at line 5, column 2: did not find expected key",
    ];
    let lint = switchboard(&["lint", "-f", files[0], "-f", files[1]]);
    let render = switchboard(&["render", "-f", files[0], "-f", files[1]]);
    for (name, output, stream) in
        [("lint", &lint, text(&lint).0), ("render", &render, text(&render).1)]
    {
        assert_eq!(output.status.code(), Some(1), "{name}");
        for line in expected {
            assert!(stream.contains(line), "{name} does not say {line:?}:\n{stream}");
        }
        assert!(!stream.contains("panicked"), "{name} panicked:\n{stream}");
    }
    assert!(text(&render).0.is_empty(), "render prints no objects when anything is wrong");
}

#[test]
fn missing_paths_are_reported() {
    let output = switchboard(&["render", "-f", "no/such/dir"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).1.contains("no/such/dir: no such file or directory"));
}

#[test]
fn render_prints_yaml_or_a_json_list() {
    let yaml = text(&switchboard(&["render", "-f", "examples/"])).0;
    assert!(yaml.starts_with("# Rendered offline: ownerReferences carry a uid derived"));
    assert_eq!(yaml.lines().filter(|l| *l == "---").count(), 40, "one document per child object");
    let json = text(&switchboard(&["render", "-f", "examples/", "-o", "json"])).0;
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 40);
    assert!(!yaml.contains("FAKE-"), "no Secret value reaches rendered objects");
}

#[test]
fn help_documents_every_command() {
    let help = text(&switchboard(&["--help"])).0;
    for command in ["crds", "render", "lint"] {
        assert!(help.contains(command), "{help}");
    }
    let lint = text(&switchboard(&["lint", "--help"])).0;
    assert!(lint.contains("--warnings-as-errors") && lint.contains("--output"), "{lint}");
}

#[test]
fn every_lint_rule_is_documented() {
    let docs = std::fs::read_to_string(support::workspace().join("docs/lint.md")).unwrap();
    for (rule, severity, _) in switchboard::governance::lint::RULES {
        let severity = format!("{severity:?}").to_lowercase();
        assert!(
            docs.contains(&format!("| `{rule}` | {severity} |")),
            "docs/lint.md lacks rule {rule} ({severity})"
        );
    }
}
