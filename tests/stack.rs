//! The deployable stack, checked without a Docker engine: the compose file's images are
//! pinned, host ports unique, every mounted file present; the Dockerfile copies what
//! exists; Alertmanager's config passes amtool.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compose_file_is_consistent() {
    let doc: serde_json::Value = soakd::config::yaml::parse(
        &std::fs::read_to_string(root().join("docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let services = doc["services"].as_object().unwrap();
    for want in [
        "postgres",
        "soakd",
        "demo-target",
        "prometheus",
        "alertmanager",
        "grafana",
        "postgres-exporter",
    ] {
        assert!(services.contains_key(want), "no service {want}");
    }
    let mut ports = HashSet::new();
    for (name, svc) in services {
        let name = name.as_str();
        match svc["image"].as_str() {
            Some(img) => assert!(
                img.contains(':') && !img.ends_with(":latest"),
                "{name}: pin the image version ({img})"
            ),
            None => assert!(svc["build"].is_string(), "{name}: neither image nor build"),
        }
        for p in svc["ports"].as_array().into_iter().flatten() {
            let host = p.as_str().unwrap().split(':').next().unwrap().to_string();
            assert!(ports.insert(host.clone()), "host port {host} used twice");
        }
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with("./") {
                assert!(
                    root().join(src).exists(),
                    "{name}: mounted {src} does not exist"
                );
            }
        }
    }
    // postgres_exporter stays optional.
    assert_eq!(services["postgres-exporter"]["profiles"][0], "exporter");
    // The soakd service runs a config that exists in the mounted folder.
    let cmd: Vec<&str> = services["soakd"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let cfg = cmd[cmd.iter().position(|a| *a == "--config").unwrap() + 1];
    let local = root()
        .join("fixtures")
        .join(cfg.trim_start_matches("/etc/soakd/"));
    assert!(local.exists(), "{cfg} is not in ./fixtures");
}

#[test]
fn compose_file_matches_the_compose_schema() {
    let out = Command::new("python3")
        .arg(root().join("scripts/check-compose.py"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{text}\n(scripts/test.sh installs PyYAML and jsonschema when missing)"
    );
}

#[test]
fn dockerfile_copies_what_exists() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(root().join(src).exists(), "Dockerfile copies missing {src}");
        }
    }
    assert!(text.contains("USER soakd"), "runs as root");
    assert!(text.contains("HEALTHCHECK"), "no healthcheck");
    // The build stage copies every top-level folder the sources embed files from
    // (include_str!/include_bytes!, e.g. web/ for the dashboard), or the image fails to build.
    let build_stage = text.split("FROM debian").next().unwrap();
    let copied: Vec<&str> = build_stage
        .lines()
        .filter(|l| l.starts_with("COPY "))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[1..parts.len() - 1].to_vec()
        })
        .collect();
    let mut embedded = std::collections::BTreeSet::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let src = std::fs::read_to_string(&p).unwrap();
            let uses = ["include_str!(\"", "include_bytes!(\""]
                .into_iter()
                .flat_map(|m| src.split(m).skip(1));
            for part in uses {
                let rel = part.split('"').next().unwrap();
                let file = p.parent().unwrap().join(rel).canonicalize().unwrap();
                let top = file.strip_prefix(root().canonicalize().unwrap()).unwrap();
                embedded.insert(
                    top.components()
                        .next()
                        .unwrap()
                        .as_os_str()
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    assert!(embedded.contains("web"), "{embedded:?}");
    for top in &embedded {
        assert!(
            copied.contains(&top.as_str()),
            "the Dockerfile's build stage does not copy {top}/, which src/ embeds"
        );
    }
}

#[test]
fn alertmanager_config_is_valid() {
    let amtool = PathBuf::from("/usr/bin/amtool");
    assert!(
        amtool.exists(),
        "amtool is missing: run scripts/test.sh (it installs the Debian package prometheus-alertmanager)"
    );
    let out = Command::new(amtool)
        .args(["check-config"])
        .arg(root().join("prometheus/alertmanager.yml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn kubernetes_prometheusrule_matches_rules() {
    // The generated PrometheusRule carries exactly the groups of rules/*.yml, in order.
    let mut want = Vec::new();
    for f in ["thresholds.yml", "recording.yml", "alerts.yml"] {
        let doc: serde_json::Value = soakd::config::yaml::parse(
            &std::fs::read_to_string(root().join("rules").join(f)).unwrap(),
        )
        .unwrap();
        want.extend(doc["groups"].as_array().unwrap().clone());
    }
    let rule: serde_json::Value = soakd::config::yaml::parse(
        &std::fs::read_to_string(root().join("deploy/kubernetes/prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(
        rule["spec"]["groups"].as_array().unwrap() == &want,
        "deploy/kubernetes/prometheusrule.yaml is out of date: run scripts/gen-k8s-rules.py"
    );
}

#[test]
fn kubernetes_shards_match_replicas() {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/soakd.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for k in ["ConfigMap", "StatefulSet", "Service", "ServiceMonitor"] {
        assert!(kinds.contains(&k), "no {k}");
    }
    let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let shards = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SOAKD_SHARDS")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(replicas, shards, "replicas and SOAKD_SHARDS must agree");
    assert!(c["command"][2]
        .as_str()
        .unwrap()
        .contains("--shard ${HOSTNAME##*-}/${SOAKD_SHARDS}"));
    // The embedded config is a valid soakd config (variables filled in).
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let cfg = cm["data"]["soakd.yaml"]
        .as_str()
        .unwrap()
        .replace("/etc/soakd/users.json", "users.json");
    let env = std::collections::HashMap::from([
        ("SOAKD_TOKEN".to_string(), "t".to_string()),
        ("API_URL".to_string(), "http://127.0.0.1:1".to_string()),
        (
            "PROMETHEUS_URL".to_string(),
            "http://127.0.0.1:9090".to_string(),
        ),
    ]);
    soakd::config::parse(&cfg, "configmap", &root().join("fixtures"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs scripts/check-k8s.py on `files` (none: the shipped manifests).
fn check_k8s(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(root().join("scripts/check-k8s.py"))
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_and_crd_schemas() {
    let (ok, text) = check_k8s(&[]);
    assert!(
        ok,
        "{text}\n(scripts/test.sh installs kubernetes-validate, PyYAML and jsonschema when missing)"
    );
    // Every document was checked, the custom resources against their vendored CRDs.
    for want in [
        "StatefulSet soakd against Kubernetes",
        "Service soakd against Kubernetes",
        "ServiceMonitor soakd against CRD schema servicemonitors.json",
        "PrometheusRule soakd against CRD schema prometheusrules.json",
        "Canary podinfo against CRD schema canaries.json",
        "AnalysisTemplate soakd-deploy-verdict against CRD schema analysistemplates.json",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

#[test]
fn kubernetes_check_refuses_a_misspelt_field_in_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("deploy/kubernetes/soakd.yaml")).unwrap();
    let rules =
        std::fs::read_to_string(root().join("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    let gates = std::fs::read_to_string(root().join("deploy/kubernetes/gates.yaml")).unwrap();
    let cases = [
        // Flagger's Canary: a webhook's `url` misspelt.
        (
            "canary",
            gates.replacen(
                "        url: http://soakd-0",
                "        uri: http://soakd-0",
                1,
            ),
            "Canary podinfo",
        ),
        // Argo's AnalysisTemplate: `jsonPath` misspelt.
        (
            "analysistemplate",
            gates.replacen("jsonPath:", "jsonpath:", 1),
            "AnalysisTemplate soakd-deploy-verdict",
        ),
        // A core kind: `replica` for `replicas`.
        (
            "statefulset",
            shipped.replacen("  replicas:", "  replica:", 1),
            "StatefulSet soakd",
        ),
        // A CRD field: `endpoint` for `endpoints`.
        (
            "servicemonitor",
            shipped.replacen("  endpoints:", "  endpoint:", 1),
            "ServiceMonitor soakd",
        ),
        // A CRD's required field gone: a rule without `expr`.
        (
            "prometheusrule",
            rules.replacen("expr:", "exp:", 1),
            "PrometheusRule soakd",
        ),
    ];
    for (name, text, kind) in cases {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let (ok, out) = check_k8s(&[path]);
        assert!(!ok, "{name}: accepted\n{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("INVALID") && l.contains(kind)),
            "{name}: {out}"
        );
    }
}
