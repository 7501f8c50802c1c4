//! The Kubernetes manifests in `deploy/kubernetes/`, checked offline (no cluster runs here):
//! every object against the Kubernetes JSON schemas of the oldest and newest versions we support
//! (the PyPI package `kubernetes-validate`, strict: unknown fields refused), the ServiceMonitor
//! against its CRD's schema (the npm package `@kubernetes-models/prometheus-operator`) plus a
//! check of its fields, and what the schemas cannot say: probes on `/ready` and `/health`, a
//! PodDisruptionBudget and an autoscaler for the proxy, one projector never doubled in a
//! rollout, Services and the ServiceMonitor selecting what exists, every secret referenced
//! defined, and the configuration loading as settings. `scripts/install-clients.sh` installs
//! both validators (`CCP_TEST_PYTHON`, `CCP_TEST_K8S_MODELS`); a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ccp_runtime::config::Settings;
use serde::Deserialize as _;
use serde_yaml::Value;

/// The Kubernetes versions validated against: the oldest we support and the newest the
/// validator knows.
const VERSIONS: &str = "1.30.0,1.37.0";
const INSTALL_HINT: &str = "run scripts/install-clients.sh";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// Every `*.yaml` of the folder, by file name.
fn files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

/// Every object of every manifest (not the kustomization), with its file.
fn objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for file in files().into_iter().filter(|f| f != "kustomization.yaml") {
        let text = std::fs::read_to_string(dir().join(&file)).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !value.is_null() {
                out.push((file.clone(), value));
            }
        }
    }
    out
}

fn object(kind: &str, name: &str) -> Value {
    objects()
        .into_iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence().unwrap_or_else(|| panic!("not a list: {v:?}"))
}

/// `labels` ⊇ `selector` (a `matchLabels` or a Service's selector).
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_mapping().unwrap().iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn client(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| repo().join(default))
}

/// Runs the Kubernetes schema validator on `paths`; its exit status and output.
fn validate_core(paths: &[PathBuf]) -> (bool, String) {
    let python = client("CCP_TEST_PYTHON", ".local/clients/py/bin/python");
    let out = Command::new(&python)
        .arg(repo().join("tests/python/validate_kubernetes.py"))
        .args(["--versions", VERSIONS, "--no-schema-ok", "ServiceMonitor"])
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}; {INSTALL_HINT})", python.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("No module named"), "kubernetes-validate is missing ({INSTALL_HINT}):\n{text}");
    (out.status.success(), text)
}

/// Runs the ServiceMonitor CRD validator on `objects`; its exit status and output.
fn validate_service_monitors(objects: &[&Value]) -> (bool, String) {
    let models = client("CCP_TEST_K8S_MODELS", ".local/clients/k8s-models");
    assert!(
        models.join("node_modules/@kubernetes-models/prometheus-operator").is_dir(),
        "{} lacks the ServiceMonitor schema ({INSTALL_HINT})",
        models.display()
    );
    let mut child = Command::new("node")
        .arg(repo().join("tests/node/validate_servicemonitor.mjs"))
        .arg(&models)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}; install node + npm, then {INSTALL_HINT})"));
    let json =
        serde_json::to_vec(&objects.iter().map(|o| serde_json::to_value(o).unwrap()).collect::<Vec<_>>()).unwrap();
    child.stdin.take().unwrap().write_all(&json).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn every_object_validates_against_the_kubernetes_schemas() {
    let paths: Vec<PathBuf> =
        files().into_iter().filter(|f| f != "kustomization.yaml").map(|f| dir().join(f)).collect();
    let (ok, out) = validate_core(&paths);
    assert!(ok, "{out}");
    // Every object that is not a custom resource was validated, for each version.
    for (file, o) in objects() {
        let name = format!("{}/{}", str_of(&o["kind"]), str_of(&o["metadata"]["name"]));
        if o["kind"] == "ServiceMonitor" {
            assert!(out.contains(&format!("NOSCHEMA {} {name}", dir().join(&file).display())), "{out}");
            continue;
        }
        for version in VERSIONS.split(',').map(|v| &v[..v.rfind('.').unwrap()]) {
            let line = format!("VALID {} {name} {version}\n", dir().join(&file).display());
            assert!(out.contains(&line), "{line:?} missing:\n{out}");
        }
    }
}

#[test]
fn the_service_monitor_validates_against_its_crd_schema_and_scrapes_every_ops_port() {
    let monitor = object("ServiceMonitor", "claudecodeproxy");
    let (ok, out) = validate_service_monitors(&[&monitor]);
    assert!(ok && out.contains("VALID claudecodeproxy"), "{out}");
    // The CRD schema lets unknown fields through (the API server prunes them): only fields the
    // CRD has, so none is silently dropped.
    let spec_fields = ["selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"];
    let endpoint_fields = ["port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings"];
    for key in monitor["spec"].as_mapping().unwrap().keys() {
        assert!(spec_fields.contains(&str_of(key)), "unknown ServiceMonitor field spec.{key:?}");
    }
    let endpoints = seq(&monitor["spec"]["endpoints"]);
    for endpoint in endpoints {
        for key in endpoint.as_mapping().unwrap().keys() {
            assert!(endpoint_fields.contains(&str_of(key)), "unknown endpoint field {key:?}");
        }
    }
    assert_eq!((&endpoints[0]["port"], &endpoints[0]["path"]), (&Value::from("ops"), &Value::from("/metrics")));
    // It selects the three services, and each has the ops port it scrapes.
    let selected: BTreeSet<String> = objects()
        .into_iter()
        .map(|(_, o)| o)
        .filter(|o| {
            o["kind"] == "Service" && selects(&monitor["spec"]["selector"]["matchLabels"], &o["metadata"]["labels"])
        })
        .inspect(|s| {
            let ports = seq(&s["spec"]["ports"]);
            assert!(ports.iter().any(|p| p["name"] == "ops"), "{:?} has no ops port", s["metadata"]["name"]);
        })
        .map(|s| str_of(&s["metadata"]["name"]).to_owned())
        .collect();
    assert_eq!(selected, BTreeSet::from(["ccp-admin".into(), "ccp-projector".into(), "ccp-proxy".into()]));
}

#[test]
fn the_validators_refuse_broken_manifests() {
    let tmp = std::env::temp_dir().join(ccp_tests::unique_name("k8sbad"));
    std::fs::create_dir_all(&tmp).unwrap();
    let proxy = std::fs::read_to_string(dir().join("proxy.yaml")).unwrap();
    let broken = [
        ("unknown-field.yaml", proxy.replacen("terminationGracePeriodSeconds:", "terminationGracePeriod:", 1)),
        ("wrong-type.yaml", proxy.replacen("minReplicas: 2", "minReplicas: two", 1)),
    ];
    for (name, text) in broken {
        assert_ne!(text, proxy);
        let path = tmp.join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, out) = validate_core(&[path]);
        assert!(!ok && out.contains("INVALID"), "{name} passed:\n{out}");
    }
    let mut monitor = object("ServiceMonitor", "claudecodeproxy");
    monitor["spec"]["endpoints"][0]["interval"] = Value::from("half a minute");
    let (ok, out) = validate_service_monitors(&[&monitor]);
    assert!(!ok && out.contains("INVALID claudecodeproxy") && out.contains("interval"), "{out}");
    std::fs::remove_dir_all(&tmp).ok();
}

/// The container of a Deployment's pod template (there is one).
fn container(deployment: &Value) -> &Value {
    let containers = seq(&deployment["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1);
    &containers[0]
}

/// A probe's path and the container port it names.
fn probe(container: &Value, probe: &str) -> (String, String) {
    let get = &container[probe]["httpGet"];
    let port = str_of(&get["port"]).to_owned();
    let ports = seq(&container["ports"]);
    assert!(ports.iter().any(|p| p["name"] == port.as_str()), "{probe} names port {port}, which is not declared");
    (str_of(&get["path"]).to_owned(), port)
}

#[test]
fn the_proxy_is_ready_on_ready_alive_on_health_kept_available_and_autoscaled() {
    let deployment = object("Deployment", "ccp-proxy");
    let c = container(&deployment);
    assert_eq!(probe(c, "readinessProbe"), ("/ready".into(), "http".into()));
    assert_eq!(probe(c, "livenessProbe"), ("/health".into(), "ops".into()));
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    // The autoscaler owns the replica count.
    assert!(deployment["spec"].get("replicas").is_none(), "replicas would fight the autoscaler");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let pdb = object("PodDisruptionBudget", "ccp-proxy");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() >= 1);
    let hpa = object("HorizontalPodAutoscaler", "ccp-proxy");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!((str_of(&target["kind"]), str_of(&target["name"])), ("Deployment", "ccp-proxy"));
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() > pdb["spec"]["minAvailable"].as_u64().unwrap());
    // CPU utilisation needs a CPU request to be measured against.
    assert!(c["resources"]["requests"].get("cpu").is_some());
    // In-flight streams drain (proxy.shutdown_drain_secs) before the pod is killed.
    let drain = Settings::default().proxy.shutdown_drain_secs;
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > drain, "terminationGracePeriodSeconds {grace} <= drain {drain}");
}

#[test]
fn the_projector_is_one_replica_never_doubled_by_a_rollout() {
    let deployment = object("Deployment", "ccp-projector");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let strategy = &deployment["spec"]["strategy"];
    let recreate = strategy["type"] == "Recreate";
    let no_surge = strategy["rollingUpdate"]["maxSurge"] == 0;
    assert!(recreate || no_surge, "a rollout could run two projectors: {strategy:?}");
    let c = container(&deployment);
    assert_eq!(probe(c, "readinessProbe").0, "/ready");
    assert_eq!(probe(c, "livenessProbe").0, "/health");
    assert!(seq(&c["command"]).iter().any(|a| a == "ccp-projector"));
    // No autoscaler or second replica anywhere.
    assert!(
        !objects()
            .iter()
            .any(|(_, o)| o["kind"] == "HorizontalPodAutoscaler"
                && o["spec"]["scaleTargetRef"]["name"] == "ccp-projector")
    );
}

#[test]
fn the_admin_api_runs_behind_a_service_probed_on_ready() {
    let deployment = object("Deployment", "ccp-admin");
    let c = container(&deployment);
    assert_eq!(probe(c, "readinessProbe"), ("/ready".into(), "http".into()));
    assert_eq!(probe(c, "livenessProbe").0, "/health");
    assert_eq!(seq(&c["command"])[0], "ccp-admin");
    object("Service", "ccp-admin");
}

#[test]
fn services_select_their_pods_and_name_their_ports() {
    let all = objects();
    for (_, service) in all.iter().filter(|(_, o)| o["kind"] == "Service") {
        let name = str_of(&service["metadata"]["name"]);
        let pods: Vec<&Value> = all
            .iter()
            .filter(|(_, o)| o["kind"] == "Deployment")
            .map(|(_, d)| d)
            .filter(|d| selects(&service["spec"]["selector"], &d["spec"]["template"]["metadata"]["labels"]))
            .collect();
        assert_eq!(pods.len(), 1, "Service {name} selects {} deployments", pods.len());
        let declared = seq(&container(pods[0])["ports"]);
        for port in seq(&service["spec"]["ports"]) {
            assert!(declared.iter().any(|p| p["name"] == port["targetPort"]), "{name}: {port:?}");
        }
    }
    for (_, d) in all.iter().filter(|(_, o)| o["kind"] == "Deployment") {
        let (selector, labels) = (&d["spec"]["selector"]["matchLabels"], &d["spec"]["template"]["metadata"]["labels"]);
        assert!(selects(selector, labels), "{:?}", d["metadata"]["name"]);
        let security = &d["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["runAsUser"], 10001, "the image's user");
    }
}

#[test]
fn secrets_are_referenced_by_existing_keys_and_the_configuration_loads() {
    let secret = object("Secret", "ccp-secrets");
    let text = std::fs::read_to_string(dir().join("secret.example.yaml")).unwrap();
    let all = objects();
    let mut env = BTreeMap::new();
    for (_, d) in all.iter().filter(|(_, o)| o["kind"] == "Deployment") {
        for var in seq(&container(d)["env"]) {
            let name = str_of(&var["name"]).to_owned();
            if let Some(r) = var.get("valueFrom").map(|v| &v["secretKeyRef"]) {
                assert_eq!(r["name"], "ccp-secrets", "{name}");
                let key = str_of(&r["key"]);
                // An optional key may be left out, but the example names it (maybe commented out).
                let defined = secret["stringData"].get(key).is_some();
                let optional = r["optional"] == true;
                assert!(defined || (optional && text.contains(&format!("# {key}:"))), "{name}: key {key}");
            }
            env.insert(name, "1".to_owned());
        }
    }
    // The settings the secrets carry (a shorter pepper is refused at start, not at load).
    for key in ["CCP__SECRETS__ACCESS_KEY_PEPPER", "CCP__SECRETS__MASTER_KEY", "CCP__ADMIN__INITIAL_ADMIN_PASSWORD"] {
        assert!(env.contains_key(key), "no deployment sets {key}");
    }
    // The ConfigMap's ccp.toml with every variable set loads as settings; it holds no secret.
    let config = object("ConfigMap", "ccp-config");
    let path = std::env::temp_dir().join(format!("{}.toml", ccp_tests::unique_name("k8sconfig")));
    std::fs::write(&path, str_of(&config["data"]["ccp.toml"])).unwrap();
    let alone = Settings::load_from(Some(&path), Vec::new()).unwrap();
    let secrets = [
        &alone.secrets.access_key_pepper,
        &alone.secrets.master_key,
        &alone.admin.initial_admin_password,
        &alone.clickhouse.password,
        &alone.nats.password,
        &alone.nats.token,
    ];
    assert!(secrets.iter().all(|s| s.is_empty()), "ccp.toml holds a secret: it belongs in the Secret");
    assert!(env.remove("CCP_CONFIG").is_some(), "the deployments do not point CCP_CONFIG at the ConfigMap");
    let settings = Settings::load_from(Some(&path), env.into_iter().filter(|(k, _)| k.starts_with("CCP__")))
        .unwrap_or_else(|e| panic!("the manifests' settings do not load: {e}"));
    std::fs::remove_file(&path).ok();
    assert_eq!(settings.ops.listen.map(|a| a.port()), Some(9090));
    let ports: BTreeMap<&str, u16> = BTreeMap::from([
        ("ccp-proxy", settings.proxy.listen.port()),
        ("ccp-admin", settings.admin.listen.port()),
        ("ccp-projector", settings.ops.listen.unwrap().port()),
    ]);
    for (name, port) in ports {
        let c = container(&object("Deployment", name)).clone();
        let declared: Vec<u64> = seq(&c["ports"]).iter().map(|p| p["containerPort"].as_u64().unwrap()).collect();
        assert!(declared.contains(&u64::from(port)) && declared.contains(&9090), "{name}: {declared:?}");
    }
}

#[test]
fn the_kustomization_applies_every_manifest_but_the_secret_example_and_the_custom_resource() {
    let k: Value = serde_yaml::from_str(&std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap()).unwrap();
    let listed: BTreeSet<String> = seq(&k["resources"]).iter().map(|r| str_of(r).to_owned()).collect();
    let expected: BTreeSet<String> = files()
        .into_iter()
        .filter(|f| !["kustomization.yaml", "secret.example.yaml", "servicemonitor.yaml"].contains(&f.as_str()))
        .collect();
    assert_eq!(listed, expected);
    // Every image is the one the kustomization rewrites.
    let image = str_of(&seq(&k["images"])[0]["name"]).to_owned();
    for (_, d) in objects().iter().filter(|(_, o)| o["kind"] == "Deployment") {
        assert!(str_of(&container(d)["image"]).starts_with(&format!("{image}:")));
    }
    // Every object lives in the one namespace.
    for (file, o) in objects() {
        if o["kind"] != "Namespace" {
            assert_eq!(o["metadata"]["namespace"], "claudecodeproxy", "{file}");
        }
    }
}
