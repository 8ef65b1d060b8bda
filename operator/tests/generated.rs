//! Generated artifacts: `crds/` equals what the code generates, and the CRDs and everything
//! `render` prints for `examples/` pass `kubernetes-validate --strict` for Kubernetes 1.33.

mod support;

use std::collections::BTreeSet;

use support::{peer, switchboard, text, workspace};
use switchboard::api;

#[test]
fn checked_in_crds_equal_the_generated_ones() {
    let dir = workspace().join("crds");
    let mut expected = BTreeSet::new();
    for crd in api::crds() {
        let name = api::crd_file_name(&crd);
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            on_disk == api::crd_yaml(&crd),
            "crds/{name} is stale or missing: run `cargo run -p switchboard -- crds --output-dir crds`"
        );
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(present, expected, "crds/ holds files the code does not generate");
}

#[test]
fn crds_command_prints_every_crd() {
    let output = switchboard(&["crds"]);
    assert!(output.status.success());
    let (stdout, _) = text(&output);
    for crd in api::crds() {
        assert!(stdout.contains(&format!("name: {}", crd.metadata.name.unwrap())));
    }
    assert_eq!(stdout, api::crds_yaml());
}

#[test]
fn crds_and_rendered_examples_pass_kubernetes_validate_strict() {
    let validate = peer("kubernetes-validate");
    let rendered = switchboard(&["render", "-f", "examples/"]);
    let (stdout, stderr) = text(&rendered);
    assert!(rendered.status.success(), "render failed: {stderr}");
    assert!(stdout.matches("\nkind: ").count() >= 30, "render printed too little:\n{stdout}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &stdout).unwrap();
    let mut args: Vec<std::path::PathBuf> =
        api::crds().iter().map(|c| workspace().join("crds").join(api::crd_file_name(c))).collect();
    args.push(file);
    let output = std::process::Command::new(validate)
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .args(&args)
        .output()
        .unwrap();
    let (out, err) = text(&output);
    assert!(output.status.success(), "kubernetes-validate refused:\n{out}\n{err}");
    let passed = out.lines().chain(err.lines()).filter(|l| l.contains("passed")).count();
    assert!(
        passed >= 34,
        "expected every object to be validated, saw {passed} passes:\n{out}{err}"
    );
}
