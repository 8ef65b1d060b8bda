#!/usr/bin/env python3
"""Lint or render the Switchboard chart with the Helm v4 engine (PyPI package helm-python-sdk).

    helm.py lint CHART_DIR                  strict lint for Kubernetes 1.33; exit 1 on findings
    helm.py render CHART_DIR [VALUES_JSON]  print the rendered manifests as multi-document YAML

Used by the test suite; run it with the virtualenv of scripts/test-peers.
"""
import json
import sys

import helm_python as helm


def lint(chart):
    report = helm.lint(chart, strict=True, kube_version="v1.33.0")
    # Severity 1 is informational (e.g. "icon is recommended"); 2 and 3 fail a strict lint.
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    for message in report["messages"]:
        print(f"[{message['severity']}] {message['path']}: {message['error']}")
    return 1 if problems else 0


def render(chart, values):
    manifests = helm.Chart.load(chart).render(
        values, name="switchboard", namespace="switchboard-system", is_install=True
    )
    documents = []
    for path in sorted(manifests):
        text = manifests[path].strip()
        if path.endswith("NOTES.txt") or not text:
            continue
        documents.append(f"# Source: {path}\n{text}")
    print("\n---\n".join(documents))
    return 0


if __name__ == "__main__":
    command, chart = sys.argv[1], sys.argv[2]
    if command == "lint":
        sys.exit(lint(chart))
    values = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    sys.exit(render(chart, values))
