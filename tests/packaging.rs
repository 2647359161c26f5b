//! The shipped packaging under `packaging/` and `[package.metadata.deb]` in Cargo.toml
//! agree with the daemon's interface and with each other: the systemd unit (checked
//! key by key and with `systemd-analyze`), the container image, the Kubernetes
//! manifests and their punctual.toml, the Debian package metadata and its build
//! script (with `shellcheck`), and the Grafana dashboard's metric names.
//!
//! `systemd-analyze` and `shellcheck` are optional on a developer's machine (the test
//! says it skipped them); under CI=true a missing tool is a failure, and .ci/run
//! installs both.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use punctual::config::Config;
use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_punctual");
const UNIT: &str = "packaging/systemd/punctual.service";
/// Where every package and image puts the config.
const CONFIG_PATH: &str = "/etc/punctual/punctual.toml";
/// `/usr/bin/punctual run --config /etc/punctual/punctual.toml`, as systemd, the
/// container and the Debian package all start it.
const RUN_COMMAND: [&str; 4] = ["/usr/bin/punctual", "run", "--config", CONFIG_PATH];
/// The node-local address the Kubernetes manifests serve on.
const NODE_LOCAL: &str = "169.254.20.10";

/// The agreed Prometheus metric names: the dashboard may use these and no others.
/// Histograms are also read through their `_bucket`, `_sum` and `_count` series.
const METRICS: &[&str] = &[
    "punctual_queries_total",
    "punctual_responses_total",
    "punctual_answer_duration_seconds",
    "punctual_cache_hits_total",
    "punctual_cache_misses_total",
    "punctual_cache_stale_hits_total",
    "punctual_cache_failure_hits_total",
    "punctual_cache_negative_hits_total",
    "punctual_prefetches_total",
    "punctual_cache_entries",
    "punctual_cache_bytes",
    "punctual_lookups_inflight",
    "punctual_waiters",
    "punctual_coalesced_joins_total",
    "punctual_abandoned_waiters_total",
    "punctual_overload_answers_total",
    "punctual_upstream_queries_total",
    "punctual_upstream_timeouts_total",
    "punctual_upstream_rtt_seconds",
    "punctual_upstream_up",
    "punctual_upstream_ignored_replies_total",
    "punctual_rate_limited_total",
    "punctual_refused_total",
    "punctual_ede_total",
];
const HISTOGRAMS: &[&str] = &[
    "punctual_answer_duration_seconds",
    "punctual_upstream_rtt_seconds",
];
/// The labels those metrics carry, plus Prometheus' own `instance` and `le`.
const LABELS: &[&str] = &["transport", "rcode", "upstream", "code", "instance", "le"];

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Whether `tool` can be run. Absent, the caller skips its check, except under
/// CI=true, where CI must have installed it and its absence fails the test.
fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed; .ci/run installs it"
        );
        eprintln!("{tool} is not installed: that check is skipped");
    }
    found
}

/// Runs a command and returns its exit status success and everything it printed.
fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    let mut printed = String::from_utf8_lossy(&output.stdout).into_owned();
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

/// A directory in the system temp directory, unique to this process and call,
/// removed with its contents on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "punctual-packaging-{}-{unique}",
            std::process::id()
        ));
        fs::create_dir_all(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        TempDir(path)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// systemd

/// A unit file as (section, key, value) in file order; a key may repeat.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{UNIT}:{}: continued lines are not expected",
            number + 1
        );
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}:{}: not KEY=VALUE: {line}", number + 1));
        assert!(
            !section.is_empty(),
            "{UNIT}:{}: before any section",
            number + 1
        );
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    entries
}

fn unit_values<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, value)| value.as_str())
        .collect()
}

/// The one value of `key` in [Service]; set twice or not at all is a failure.
fn service_value<'a>(unit: &'a [(String, String, String)], key: &str) -> &'a str {
    match unit_values(unit, "Service", key).as_slice() {
        [value] => value,
        values => panic!(
            "{UNIT}: [Service] {key} set {} times: {values:?}",
            values.len()
        ),
    }
}

#[test]
fn systemd_unit_is_a_hardened_notify_service() {
    let unit = parse_unit(&read(UNIT));
    assert_eq!(service_value(&unit, "Type"), "notify");
    assert_eq!(service_value(&unit, "ExecStart"), RUN_COMMAND.join(" "));
    // A reload checks the new config, then signals the daemon to load it.
    assert_eq!(
        unit_values(&unit, "Service", "ExecReload"),
        [
            format!("/usr/bin/punctual check --config {CONFIG_PATH}").as_str(),
            "/bin/kill -HUP $MAINPID",
        ]
    );
    for (key, expected) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("UMask", "0077"),
        ("Restart", "on-failure"),
        // Exit 64 is a bad config: restarting would fail the same way.
        ("RestartPreventExitStatus", "64"),
    ] {
        assert_eq!(service_value(&unit, key), expected, "[Service] {key}");
    }
    let families: BTreeSet<&str> = service_value(&unit, "RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert_eq!(
        unit_values(&unit, "Service", "SystemCallFilter").first(),
        Some(&"@system-service")
    );
    let watchdog = service_value(&unit, "WatchdogSec");
    let watchdog = humantime::parse_duration(watchdog)
        .unwrap_or_else(|error| panic!("WatchdogSec={watchdog}: {error}"));
    assert!(!watchdog.is_zero(), "WatchdogSec=0 turns the watchdog off");
    let nofile: u64 = service_value(&unit, "LimitNOFILE")
        .parse()
        .unwrap_or_else(|error| panic!("LimitNOFILE: {error}"));
    assert!(
        nofile > 1024,
        "LimitNOFILE={nofile} is no more than the default"
    );
    // A capability in a user namespace does not count for the host's network
    // namespace: with PrivateUsers, binding port 53 would fail.
    assert!(unit_values(&unit, "Service", "PrivateUsers").is_empty());
    assert!(unit_values(&unit, "Service", "User").is_empty());
    assert_eq!(
        unit_values(&unit, "Install", "WantedBy"),
        ["multi-user.target"]
    );
}

#[test]
fn systemd_analyze_accepts_the_unit() {
    if !have_tool("systemd-analyze") {
        return;
    }
    let dir = TempDir::new();
    // The built binary stands in for /usr/bin/punctual, which verify wants to exist.
    let text = read(UNIT).replace("/usr/bin/punctual", BIN);
    let unit = dir.write("punctual.service", &text);
    // --man=no: the man page is only there once the package is installed.
    let (ok, printed) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit));
    assert!(
        ok && printed.is_empty(),
        "systemd-analyze verify:\n{printed}"
    );
    let (ok, printed) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--man=no", "--threshold=20"])
        .arg(&unit));
    assert!(ok, "exposure above 2.0:\n{printed}");

    // verify reports an unknown key but still exits 0: an empty output is what the
    // check above relies on, so make sure a misspelt key does print.
    let misspelt = TempDir::new();
    let unit = misspelt.write(
        "punctual.service",
        &text.replace("ProtectClock=", "ProtectClok="),
    );
    let (_, printed) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit));
    assert!(printed.contains("ProtectClok"), "{printed}");
}

// ---------------------------------------------------------------------------
// punctual.toml files outside conf/

/// Parses a shipped punctual.toml: as TOML, and through `Config::from_toml` with
/// its validation, so an unknown key or a bad value fails here.
fn check_config(text: &str, origin: &str) -> toml::Table {
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|error| panic!("{origin}: {error}"));
    match Config::from_toml(text, Path::new(origin)) {
        Ok(config) => {
            if let Err(error) = config.validate() {
                panic!("{origin}: {error}");
            }
        }
        Err(error) => panic!("{origin}: {error}"),
    }
    table
}

fn string_list<'a>(table: &'a toml::Table, section: &str, key: &str) -> Vec<&'a str> {
    table
        .get(section)
        .and_then(|section| section.get(key))
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("no [{section}] {key} list"))
        .iter()
        .map(|value| {
            value
                .as_str()
                .unwrap_or_else(|| panic!("[{section}] {key}: {value} is not a string"))
        })
        .collect()
}

fn string_at<'a>(table: &'a toml::Table, section: &str, key: &str) -> &'a str {
    table
        .get(section)
        .and_then(|section| section.get(key))
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("no [{section}] {key} string"))
}

/// Asserts an allow list is a non-empty list of valid CIDRs that includes `client`.
fn assert_allow_list(allow: &[&str], client: &str, origin: &str) {
    assert!(!allow.is_empty(), "{origin}: empty allow list");
    let client: IpAddr = client.parse().expect("client address");
    let mut covered = false;
    for cidr in allow {
        let (network, prefix) = cidr
            .split_once('/')
            .unwrap_or_else(|| panic!("{origin}: {cidr} is not ADDRESS/PREFIX"));
        let network: IpAddr = network
            .parse()
            .unwrap_or_else(|error| panic!("{origin}: {cidr}: {error}"));
        let prefix: u32 = prefix
            .parse()
            .unwrap_or_else(|error| panic!("{origin}: {cidr}: {error}"));
        let bits = if network.is_ipv4() { 32 } else { 128 };
        assert!(prefix <= bits, "{origin}: {cidr}: prefix too long");
        if let (IpAddr::V4(network), IpAddr::V4(client)) = (network, client) {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            assert_eq!(
                u32::from(network) & !mask,
                0,
                "{origin}: {cidr} has host bits set"
            );
            covered |= u32::from(client) & mask == u32::from(network);
        }
    }
    assert!(covered, "{origin}: {allow:?} does not allow {client}");
}

#[test]
fn container_config_listens_everywhere_with_allow_lists() {
    let origin = "packaging/container/punctual.toml";
    let config = check_config(&read(origin), origin);
    assert_eq!(string_list(&config, "listen", "addresses"), ["0.0.0.0:53"]);
    // A client on Docker's default bridge network.
    assert_allow_list(
        &string_list(&config, "listen", "allow"),
        "172.17.0.1",
        origin,
    );
    assert_eq!(string_at(&config, "control", "address"), "0.0.0.0:9153");
    assert_allow_list(
        &string_list(&config, "control", "allow"),
        "172.17.0.1",
        origin,
    );
}

// ---------------------------------------------------------------------------
// Container image

/// A Dockerfile's instructions (keyword upper-cased, arguments), continuation lines
/// joined and comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, arguments) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        instructions.push((keyword.to_ascii_uppercase(), arguments.trim().to_owned()));
        current.clear();
    }
    assert!(current.is_empty(), "Dockerfile ends in a continuation");
    instructions
}

/// The uid the container image runs as, from its final `USER`.
fn image_uid() -> u64 {
    let instructions = dockerfile_instructions(&read("packaging/container/Dockerfile"));
    let user = instructions
        .iter()
        .rev()
        .find(|(keyword, _)| keyword == "USER")
        .map(|(_, user)| user.as_str())
        .expect("the Dockerfile sets no USER");
    let uid = user.split(':').next().unwrap_or(user);
    uid.parse()
        .unwrap_or_else(|_| panic!("USER {user}: not numeric (runAsNonRoot cannot check a name)"))
}

#[test]
fn dockerfile_builds_in_one_stage_and_runs_non_root_in_another() {
    let text = read("packaging/container/Dockerfile");
    let instructions = dockerfile_instructions(&text);
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (keyword, _))| keyword == "FROM")
        .map(|(index, _)| index)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let from = |index: usize| instructions[stages[index]].1.to_ascii_lowercase();
    assert!(
        from(0).starts_with("rust:") && from(0).ends_with(" as builder"),
        "FROM {}",
        from(0)
    );
    assert!(!from(1).starts_with("rust:"), "runtime FROM {}", from(1));
    let (build, runtime) = instructions.split_at(stages[1]);
    assert!(
        build.iter().any(|(keyword, arguments)| keyword == "RUN"
            && arguments.contains("cargo build --release --locked")),
        "no `cargo build --release --locked` in the build stage"
    );
    // Everything copied into the build context path exists in the repository.
    for (_, arguments) in build.iter().filter(|(keyword, _)| keyword == "COPY") {
        let words: Vec<&str> = arguments.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                repo_path(source).exists(),
                "COPY {source}: not in the repository"
            );
        }
    }

    let runtime_has = |keyword: &str, arguments: &str| {
        runtime.iter().any(|(k, a)| {
            k == keyword && a.split_whitespace().collect::<Vec<_>>().join(" ") == arguments
        })
    };
    assert!(runtime_has(
        "COPY",
        "--from=builder /usr/local/bin/punctual /usr/bin/punctual"
    ));
    assert!(runtime_has(
        "COPY",
        &format!("packaging/container/punctual.toml {CONFIG_PATH}")
    ));
    // The file capability that lets the non-root user bind port 53.
    assert!(
        runtime.iter().any(|(keyword, arguments)| keyword == "RUN"
            && arguments.contains("setcap cap_net_bind_service=+ep /usr/bin/punctual")),
        "no setcap in the runtime stage"
    );
    let uid = image_uid();
    assert_ne!(uid, 0, "the image runs as root");
    let exposed: BTreeSet<&str> = runtime
        .iter()
        .filter(|(keyword, _)| keyword == "EXPOSE")
        .flat_map(|(_, ports)| ports.split_whitespace())
        .collect();
    assert_eq!(exposed, BTreeSet::from(["53/udp", "53/tcp", "9153/tcp"]));
    let entrypoint = runtime
        .iter()
        .rev()
        .find(|(keyword, _)| keyword == "ENTRYPOINT")
        .map(|(_, arguments)| arguments)
        .expect("no ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint)
        .unwrap_or_else(|error| panic!("ENTRYPOINT {entrypoint}: not an exec-form array: {error}"));
    assert_eq!(entrypoint, RUN_COMMAND);
    assert!(text.contains("--cap-drop=ALL --cap-add=NET_BIND_SERVICE"));
}

// ---------------------------------------------------------------------------
// Kubernetes

/// Every YAML document of every manifest in packaging/kubernetes/, as JSON values.
fn kubernetes_documents() -> Vec<Value> {
    let mut documents = Vec::new();
    for name in ["serviceaccount.yaml", "configmap.yaml", "daemonset.yaml"] {
        let relative = format!("packaging/kubernetes/{name}");
        let text = read(&relative);
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(document).unwrap_or_else(|error| panic!("{relative}: {error}"));
            assert!(value.is_object(), "{relative}: a document is not a mapping");
            documents.push(value);
        }
    }
    documents
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = documents
        .iter()
        .filter(|document| document["kind"] == kind)
        .collect();
    match found.as_slice() {
        [document] => document,
        _ => panic!("{} documents of kind {kind}", found.len()),
    }
}

fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value
        .pointer(pointer)
        .unwrap_or_else(|| panic!("nothing at {pointer}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not a list"))
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("{item} is not a string"))
        })
        .collect()
}

#[test]
fn daemonset_serves_the_node_local_address() {
    let documents = kubernetes_documents();
    for document in &documents {
        assert_eq!(
            at(document, "/metadata/namespace"),
            "kube-system",
            "{document}"
        );
    }
    let daemonset = of_kind(&documents, "DaemonSet");
    assert_eq!(at(daemonset, "/apiVersion"), "apps/v1");
    assert_eq!(
        at(daemonset, "/spec/selector/matchLabels"),
        at(daemonset, "/spec/template/metadata/labels")
    );
    assert_eq!(at(daemonset, "/spec/updateStrategy/type"), "RollingUpdate");
    assert_eq!(
        at(
            daemonset,
            "/spec/updateStrategy/rollingUpdate/maxUnavailable"
        ),
        "10%"
    );
    let annotations = at(daemonset, "/spec/template/metadata/annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9153");

    let pod = at(daemonset, "/spec/template/spec");
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "Default");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    // One toleration with no key and no effect tolerates every taint.
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{ "operator": "Exists" }])
    );
    let account = of_kind(&documents, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], false);

    let init = at(pod, "/initContainers")
        .as_array()
        .expect("initContainers list");
    let [init] = init.as_slice() else {
        panic!("{} init containers", init.len());
    };
    assert_eq!(
        strings(at(init, "/securityContext/capabilities/add")),
        ["NET_ADMIN"]
    );
    assert_eq!(
        strings(at(init, "/securityContext/capabilities/drop")),
        ["ALL"]
    );
    let script = strings(at(init, "/command")).join(" ");
    for step in [
        "ip link add nodelocaldns type dummy 2>/dev/null || true",
        &format!("ip addr replace {NODE_LOCAL}/32 dev nodelocaldns"),
        "ip link set nodelocaldns up",
    ] {
        assert!(
            script.contains(step),
            "init script lacks {step:?}: {script}"
        );
    }

    let containers = at(pod, "/containers").as_array().expect("containers list");
    let [container] = containers.as_slice() else {
        panic!("{} containers", containers.len());
    };
    assert_eq!(container["image"], init["image"], "one image for both");
    let security = at(container, "/securityContext");
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        strings(&security["capabilities"]["add"]),
        ["NET_BIND_SERVICE"]
    );
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsUser"], image_uid(), "the image's USER");
    // The file capability on the binary is how a non-root process gets
    // NET_BIND_SERVICE; no_new_privs would make the kernel ignore it.
    assert_eq!(security["allowPrivilegeEscalation"], true);
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = at(container, &format!("/{probe}/httpGet"));
        assert_eq!(
            (&get["path"], &get["port"], &get["host"]),
            (
                &Value::from("/healthz"),
                &Value::from(9153),
                &Value::from(NODE_LOCAL)
            ),
            "{probe}"
        );
    }
    let ports: BTreeSet<(u64, &str)> = at(container, "/ports")
        .as_array()
        .expect("ports list")
        .iter()
        .map(|port| {
            (
                port["containerPort"].as_u64().expect("containerPort"),
                port["protocol"].as_str().expect("protocol"),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([(53, "UDP"), (53, "TCP"), (9153, "TCP")])
    );
    let resources = at(container, "/resources");
    for pointer in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        assert!(at(resources, pointer).is_string(), "resources{pointer}");
    }

    // The ConfigMap is mounted where the image's entrypoint reads the config.
    let configmap = of_kind(&documents, "ConfigMap");
    let mounts = at(container, "/volumeMounts")
        .as_array()
        .expect("volumeMounts");
    let mount = mounts
        .iter()
        .find(|mount| mount["mountPath"] == "/etc/punctual")
        .expect("nothing mounted at /etc/punctual");
    let volume = at(pod, "/volumes")
        .as_array()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"]);
    assert_eq!(
        volume["configMap"]["items"],
        serde_json::json!([{ "key": "punctual.toml", "path": "punctual.toml" }])
    );
}

#[test]
fn configmap_forwards_cluster_names_over_tcp() {
    let documents = kubernetes_documents();
    let configmap = of_kind(&documents, "ConfigMap");
    let text = at(configmap, "/data/punctual.toml")
        .as_str()
        .expect("punctual.toml is a string");
    let config = check_config(text, "packaging/kubernetes/configmap.yaml punctual.toml");
    let origin = "configmap.yaml";
    assert_eq!(
        string_list(&config, "listen", "addresses"),
        [format!("{NODE_LOCAL}:53")]
    );
    // A pod in a typical pod CIDR, and the kubelet probing from the node.
    for client in ["10.244.1.5", NODE_LOCAL] {
        assert_allow_list(&string_list(&config, "listen", "allow"), client, origin);
        assert_allow_list(&string_list(&config, "control", "allow"), client, origin);
    }
    assert!(string_list(&config, "upstream", "servers").is_empty());
    assert_eq!(
        string_at(&config, "upstream", "resolv_conf"),
        "/etc/resolv.conf"
    );
    // The probes and Prometheus reach the control endpoint on port 9153.
    assert!(string_at(&config, "control", "address").ends_with(":9153"));

    let forward = config
        .get("forward")
        .and_then(toml::Value::as_array)
        .expect("[[forward]] tables");
    let mut zones = BTreeSet::new();
    for table in forward {
        let zone = table["zone"].as_str().expect("zone");
        let servers = table["servers"].as_array().expect("servers");
        assert!(!servers.is_empty(), "{zone}: no servers");
        for server in servers {
            let server = server.as_str().expect("server");
            assert!(
                server.starts_with("tcp://"),
                "{zone}: {server} is not tcp://"
            );
        }
        zones.insert(zone);
    }
    assert_eq!(
        zones,
        BTreeSet::from(["cluster.local", "in-addr.arpa", "ip6.arpa"])
    );
}

// ---------------------------------------------------------------------------
// Debian package

#[test]
fn debian_metadata_names_the_binary_the_conffile_and_the_unit() {
    let manifest: toml::Table = read("Cargo.toml")
        .parse()
        .unwrap_or_else(|error| panic!("Cargo.toml: {error}"));
    let deb = manifest
        .get("package")
        .and_then(|package| package.get("metadata"))
        .and_then(|metadata| metadata.get("deb"))
        .and_then(toml::Value::as_table)
        .expect("no [package.metadata.deb]");
    let field = |key: &str| {
        deb.get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("[package.metadata.deb] {key}"))
    };
    assert_eq!(field("section"), "net");
    assert_eq!(field("priority"), "optional");
    assert!(field("depends").contains("$auto"));
    assert!(!field("maintainer").is_empty() && !field("extended-description").is_empty());

    let assets: Vec<(&str, &str)> = deb
        .get("assets")
        .and_then(toml::Value::as_array)
        .expect("assets")
        .iter()
        .map(|asset| {
            let asset = strings_of(asset);
            assert_eq!(asset.len(), 3, "[source, destination, mode]: {asset:?}");
            (asset[0], asset[1])
        })
        .collect();
    assert!(assets.contains(&("target/release/punctual", "usr/bin/")));
    assert!(assets.contains(&("conf/punctual.toml", &CONFIG_PATH[1..])));
    let conf_files = deb.get("conf-files").map(strings_of).unwrap_or_default();
    assert_eq!(conf_files, [CONFIG_PATH]);

    // Generated files are written by build-deb.sh to the same place.
    let script = read("packaging/debian/build-deb.sh");
    for (source, destination) in &assets {
        match source.strip_prefix("target/release/packaging/") {
            Some(generated) => {
                let written = generated.strip_suffix(".gz").unwrap_or(generated);
                assert!(
                    script.contains(&format!("\"$generated/{written}\"")),
                    "build-deb.sh does not write {source}"
                );
            }
            None if !source.starts_with("target/") => {
                assert!(repo_path(source).is_file(), "asset {source} is missing");
            }
            None => {}
        }
        assert!(
            !destination.contains("systemd/system"),
            "the unit is installed through systemd-units, not as the asset {source}"
        );
    }
    for wanted in [
        "usr/share/man/man1/punctual.1.gz",
        "usr/share/bash-completion/completions/punctual",
        "usr/share/zsh/vendor-completions/_punctual",
        "usr/share/fish/vendor_completions.d/punctual.fish",
        "usr/share/doc/punctual/README.systemd.md",
    ] {
        assert!(
            assets.iter().any(|(_, destination)| destination == &wanted),
            "no asset installs {wanted}"
        );
    }

    // cargo-deb installs, enables and starts the units it finds in unit-scripts
    // named after the package; it needs maintainer-scripts set to do so.
    let units = deb
        .get("systemd-units")
        .and_then(toml::Value::as_table)
        .expect("systemd-units");
    let unit_dir = units
        .get("unit-scripts")
        .and_then(toml::Value::as_str)
        .expect("systemd-units unit-scripts");
    assert_eq!(
        Path::new(unit_dir).join("punctual.service"),
        Path::new(UNIT)
    );
    assert_eq!(
        units.get("enable").and_then(toml::Value::as_bool),
        Some(true)
    );
    assert!(repo_path(field("maintainer-scripts")).is_dir());
}

fn strings_of(value: &toml::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not a list"))
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("{item} is not a string"))
        })
        .collect()
}

/// A script run directly must be executable by everyone (mode 0o111 set).
fn assert_executable(script: &Path) {
    let mode = fs::metadata(script)
        .unwrap_or_else(|error| panic!("{}: {error}", script.display()))
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111,
        0o111,
        "{} is not executable",
        script.display()
    );
}

#[test]
fn build_deb_script_passes_shellcheck() {
    let script = repo_path("packaging/debian/build-deb.sh");
    assert_executable(&script);
    if !have_tool("shellcheck") {
        return;
    }
    let (ok, printed) = run(Command::new("shellcheck").arg(&script));
    assert!(ok, "shellcheck:\n{printed}");
}

/// The benchmark scripts are not run by the suite (they take minutes and
/// install packages), so shellcheck is what keeps them from rotting: every
/// script run directly is executable, and all of them, `common.sh` (sourced)
/// included, pass with the sourced file followed (`-x`, from the repository root).
#[test]
fn bench_scripts_are_executable_and_pass_shellcheck() {
    let dir = repo_path("benches");
    let mut scripts: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sh"))
        .collect();
    scripts.sort();
    assert!(
        scripts.iter().any(|path| path.ends_with("load.sh")),
        "no load.sh among {scripts:?}"
    );
    for script in scripts.iter().filter(|path| !path.ends_with("common.sh")) {
        assert_executable(script);
    }
    if !have_tool("shellcheck") {
        return;
    }
    let (ok, printed) = run(Command::new("shellcheck")
        .arg("-x")
        .args(&scripts)
        .current_dir(repo_path(".")));
    assert!(ok, "shellcheck:\n{printed}");
}

// ---------------------------------------------------------------------------
// Grafana

/// PromQL words that are not metric names: functions, aggregations, keywords.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "by",
    "rate",
    "histogram_quantile",
];

/// Checks one PromQL expression: every metric it names is an agreed one (histogram
/// series by their suffixes), and every label it groups by is one those carry.
/// Returns the metrics it names.
fn promql_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    // Label matchers and range durations hold no metric names.
    let mut stripped = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth == 0 => stripped.push(c),
            _ => {}
        }
    }
    let mut metrics = BTreeSet::new();
    let mut rest = stripped.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        if word == "by" {
            let open = rest.trim_start();
            let close = open
                .find(')')
                .ok_or_else(|| format!("unclosed by in {expr}"))?;
            for label in open[..close].trim_start_matches('(').split(',') {
                let label = label.trim();
                if !LABELS.contains(&label) {
                    return Err(format!("unknown label {label:?} in {expr}"));
                }
            }
            rest = &open[close..];
        } else if !PROMQL_WORDS.contains(&word) {
            let base = HISTOGRAMS
                .iter()
                .find(|histogram| {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| word == format!("{histogram}{suffix}"))
                })
                .copied()
                .unwrap_or(word);
            if !METRICS.contains(&base) {
                return Err(format!("unknown metric {word:?} in {expr}"));
            }
            metrics.insert(base.to_owned());
        }
    }
    Ok(metrics)
}

#[test]
fn promql_check_rejects_unknown_names() {
    assert_eq!(
        promql_metrics(
            "sum by (le) (rate(punctual_answer_duration_seconds_bucket{instance=~\"$instance\"}[5m]))"
        ),
        Ok(BTreeSet::from([
            "punctual_answer_duration_seconds".to_owned()
        ]))
    );
    for bad in [
        "rate(punctual_cache_hit_total[5m])",
        "up",
        "rate(punctual_queries_total_bucket[5m])",
        "sum by (server) (rate(punctual_upstream_queries_total[5m]))",
    ] {
        assert!(promql_metrics(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn grafana_dashboard_uses_only_agreed_metrics() {
    let origin = "packaging/grafana/punctual.json";
    let dashboard: Value =
        serde_json::from_str(&read(origin)).unwrap_or_else(|error| panic!("{origin}: {error}"));
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 36, "schemaVersion {schema}");
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|input| input["name"] == "DS_PROMETHEUS" && input["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input"
    );
    let datasource = serde_json::json!({ "type": "prometheus", "uid": "${DS_PROMETHEUS}" });
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let instance = variables
        .iter()
        .find(|variable| variable["name"] == "instance")
        .expect("no instance variable");
    assert_eq!(instance["datasource"], datasource);

    let mut used = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut graphs = 0;
    for panel in panels.iter().filter(|panel| panel["type"] != "row") {
        graphs += 1;
        let title = panel["title"].as_str().expect("title");
        assert_eq!(panel["datasource"], datasource, "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            assert_eq!(target["datasource"], datasource, "{title}: {expr}");
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores $instance"
            );
            used.extend(promql_metrics(expr).unwrap_or_else(|error| panic!("{title}: {error}")));
        }
    }
    assert!(graphs >= 10, "{graphs} panels");
    let unused: Vec<&&str> = METRICS
        .iter()
        .filter(|metric| !used.contains(**metric))
        .collect();
    assert!(unused.is_empty(), "metrics on no panel: {unused:?}");
}
