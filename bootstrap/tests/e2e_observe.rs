//! Watching a network, with the real binaries, real Docker, and the real tools people watch
//! with (issue 13):
//!
//! - every `/metrics` passes `promtool check metrics`, and its counters move when a job runs;
//! - a real Prometheus started with the shipped `monitoring/prometheus.yml` scrapes a local
//!   network and answers a query for a job counter, and holds every series the shipped Grafana
//!   board asks for (or the node declares it and nothing has happened to count yet);
//! - the web dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//!   driven over WebDriver): it loads from a running node, shows the node's peers, shows a job
//!   submitted while the page is open reach `completed` without a reload, and submits a job
//!   through its form. Screenshots at desktop and phone widths are kept in
//!   `target/test-artifacts/`.
//!
//! Needs `prometheus`, `promtool`, `chromium` and `chromedriver` (`scripts/setup.sh` installs
//! them) and the `distributeai/toolbox:local` image (`scripts/build-images.sh`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const IMAGE: &str = "distributeai/toolbox:local";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

fn get_text(url: &str) -> String {
    let response = http()
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.text().expect("body")
}

/// The node's `/metrics` (Prometheus text: no `Accept` asks for OpenMetrics).
fn metrics_of(api: &str) -> String {
    get_text(&format!("http://{api}/metrics"))
}

/// The value of the series written exactly as `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// The sum of every series of the family `name` (any labels).
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Runs `promtool check metrics` on `text`; panics with its complaints.
fn promtool_check(what: &str, text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup.sh installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refuses the metrics of {what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Submits a job through the CLI without waiting; returns its id.
fn submit(api: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(node_bin());
    cmd.args(["submit", "--api", api]).args(args);
    output(cmd).trim().to_string()
}

/// Waits for the job to be final through the CLI; returns its status.
fn final_status(api: &str, id: &str) -> String {
    let mut status = String::new();
    wait_until(|| {
        let mut cmd = Command::new(node_bin());
        cmd.args(["get", "--json", "--api", api, id]);
        let job: Value = serde_json::from_str(&output(cmd)).expect("job JSON");
        status = job["status"].as_str().unwrap_or_default().to_string();
        matches!(status.as_str(), "completed" | "failed" | "cancelled")
    });
    status
}

/// Submits `command` in the toolbox image to two workers that must agree; returns the id.
fn submit_to_two(api: &str, command: &[&str]) -> String {
    let mut args = vec!["--redundancy", "2", "--consensus", "2", IMAGE, "--"];
    args.extend_from_slice(command);
    submit(api, &args)
}

/// Runs `echo <word>` on two workers that must agree, and waits for it to complete; returns
/// the job's id.
fn run_echo_job(api: &str, word: &str) -> String {
    let id = submit_to_two(api, &["echo", word]);
    assert_eq!(final_status(api, &id), "completed", "job {id}");
    id
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn metrics_pass_promtool_and_count_a_job_on_the_submitter_and_its_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = start_network(dir.path(), &[None, None, None]);
    let submitter = &net.nodes[0].2;
    let workers: Vec<&str> = net.nodes[1..].iter().map(|n| n.2.as_str()).collect();

    let before = metrics_of(submitter);
    promtool_check("a fresh node", &before);
    promtool_check("the bootstrap peer", &get_text(&net.boot_metrics));
    assert_eq!(
        value(&before, "distributeai_jobs_submitted_total"),
        Some(0.0)
    );
    assert!(
        total(&before, "libp2p_swarm_connections_established_total") >= 1.0,
        "libp2p's own metrics count the connections:\n{before}"
    );

    let id = run_echo_job(submitter, "watched");

    let after = metrics_of(submitter);
    promtool_check("the submitter after a job", &after);
    for (series, expected) in [
        ("distributeai_jobs_submitted_total", 1.0),
        (
            "distributeai_jobs_finished_total{outcome=\"completed\"}",
            1.0,
        ),
        ("distributeai_verdicts_total{outcome=\"accepted\"}", 1.0),
        (
            "distributeai_jobs{role=\"submitted\",status=\"completed\"}",
            1.0,
        ),
        (
            "distributeai_jobs{role=\"submitted\",status=\"running\"}",
            0.0,
        ),
        ("distributeai_job_first_bid_seconds_count", 1.0),
        ("distributeai_job_bidding_seconds_count", 1.0),
        ("distributeai_job_submit_to_verdict_seconds_count", 1.0),
    ] {
        assert_eq!(
            value(&after, series),
            Some(expected),
            "{series} in:\n{after}"
        );
    }
    assert!(value(&after, "distributeai_bids_received_total") >= Some(2.0));
    assert!(
        total(&after, "libp2p_gossipsub_messages_total") >= 1.0,
        "gossip was counted:\n{after}"
    );
    // The verdict reaches the submitter's own ledger.
    assert!(wait_until(|| {
        value(&metrics_of(submitter), "distributeai_ledger_entries") == Some(1.0)
    }));

    // One job's lines, on the submitter and on its workers, carry its full id in a span.
    let span = format!("job{{job_id={id}");
    let logs: Vec<String> = (0..net.nodes.len())
        .map(|i| {
            std::fs::read_to_string(dir.path().join(format!("node{i}.log"))).unwrap_or_default()
        })
        .collect();
    assert!(
        logs[0].contains(&format!("{span} role=\"submitter\"")),
        "the submitter's lines name the job:\n{}",
        logs[0]
    );
    assert!(
        logs[1..]
            .iter()
            .all(|log| log.contains(&format!("{span} role=\"worker\""))),
        "every worker's lines name the job:\n{}",
        logs[1..].join("\n---\n")
    );

    let worker_metrics: Vec<String> = workers.iter().map(|api| metrics_of(api)).collect();
    for (i, text) in worker_metrics.iter().enumerate() {
        promtool_check(&format!("worker {i} after a job"), text);
    }
    let sum = |series: &str| -> f64 {
        worker_metrics
            .iter()
            .map(|t| value(t, series).unwrap_or(0.0))
            .sum()
    };
    assert_eq!(
        sum("distributeai_executions_total{outcome=\"exited\"}"),
        2.0
    );
    assert_eq!(sum("distributeai_execution_seconds_count"), 2.0);
    assert_eq!(sum("distributeai_job_queue_wait_seconds_count"), 2.0);
    assert!(sum("distributeai_bids_sent_total") >= 2.0);
}

#[test]
fn a_real_prometheus_scrapes_the_network_with_the_shipped_config_and_board() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = start_network(dir.path(), &[None, None, None]);
    let submitter = net.nodes[0].2.clone();
    run_echo_job(&submitter, "scraped");

    // The shipped config, as is, with the network's targets in its targets folder: what
    // scripts/lib/local-net.sh writes for a local network.
    let prom = dir.path().join("prometheus");
    std::fs::create_dir_all(prom.join("targets")).expect("targets dir");
    std::fs::copy(
        repo().join("monitoring/prometheus.yml"),
        prom.join("prometheus.yml"),
    )
    .expect("copy the shipped config");
    let mut targets = format!(
        "- targets: [\"{}\"]\n  labels: {{ instance: bootstrap, network: local }}\n",
        net.boot_metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
    );
    for (i, node) in net.nodes.iter().enumerate() {
        targets.push_str(&format!(
            "- targets: [\"{}\"]\n  labels: {{ instance: node{i}, network: local }}\n",
            node.2
        ));
    }
    std::fs::write(prom.join("targets/test.yml"), targets).expect("targets");
    let port = free_port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!(
        "--config.file={}",
        prom.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        prom.join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let _prometheus = Proc::spawn("prometheus", cmd, &dir.path().join("prometheus.log"));
    let base = format!("http://127.0.0.1:{port}");

    let query = |q: &str| -> Value {
        let encoded: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let response = http()
            .get(format!("{base}/api/v1/query?query={encoded}"))
            .send()
            .and_then(|r| r.json::<Value>());
        response.unwrap_or(Value::Null)
    };
    let answered = wait_until(|| {
        let answer = query("distributeai_jobs_submitted_total{instance=\"node0\"}");
        answer["data"]["result"][0]["value"][1] == "1"
    });
    assert!(
        answered,
        "Prometheus answers the job counter of node0: {}\nlog:\n{}",
        query("distributeai_jobs_submitted_total"),
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    // Every target is up, the bootstrap peer included.
    assert!(wait_until(|| {
        let up = query("up{network=\"local\", instance=~\"node.*|bootstrap\"} == 1");
        up["data"]["result"].as_array().map(Vec::len) == Some(net.nodes.len() + 1)
    }));

    // Every series name the board asks for is in Prometheus, but for families that have a
    // series only once their event happens (prometheus-client writes a labelled family out
    // only when it has a series), which a healthy run on loopback never sees.
    let names: BTreeSet<String> = serde_json::from_value(
        http()
            .get(format!("{base}/api/v1/label/__name__/values"))
            .send()
            .and_then(|r| r.json::<Value>())
            .expect("series names")["data"]
            .clone(),
    )
    .expect("a list of names");
    let only_after_their_event = [
        "distributeai_messages_dropped_total", // an invalid message
        "libp2p_dcutr_events_total",           // a hole punch
        "libp2p_ping_failure_total",           // a ping that failed
        "libp2p_swarm_connections_duration_seconds_count", // a connection that closed
        "libp2p_swarm_outgoing_connection_error_total", // a dial that failed
    ];
    let board = std::fs::read_to_string(repo().join("monitoring/grafana/distributeai.json"))
        .expect("the board");
    let board: Value = serde_json::from_str(&board).expect("the board is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&board, &mut exprs);
    assert!(exprs.len() >= 20, "the board has panels: {}", exprs.len());
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let (scraped, waiting): (Vec<&String>, Vec<&String>) =
        used.iter().partition(|name| names.contains(*name));
    let unknown: Vec<&&String> = waiting
        .iter()
        .filter(|n| !only_after_their_event.contains(&n.as_str()))
        .collect();
    println!(
        "board: {} series names; in Prometheus: {scraped:?}; counted only after their event: \
         {waiting:?}",
        used.len()
    );
    assert!(
        unknown.is_empty(),
        "the board asks for series no node serves: {unknown:?}"
    );
    assert!(
        scraped.len() * 2 > used.len(),
        "most of the board's series are live: {scraped:?}"
    );
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `distributeai_*` and `libp2p_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (rest.starts_with("distributeai_") || rest.starts_with("libp2p_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

/// A WebDriver session on Debian's chromedriver, headless Chromium.
struct Browser {
    _driver: Proc,
    base: String,
    session: String,
}

impl Browser {
    fn start(dir: &Path, width: u32, height: u32) -> Self {
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"));
        let driver = Proc::spawn("chromedriver", cmd, &dir.join("chromedriver.log"));
        let base = format!("http://127.0.0.1:{port}");
        let ready = wait_until(|| {
            http()
                .get(format!("{base}/status"))
                .send()
                .and_then(|r| r.json::<Value>())
                .is_ok_and(|s| s["value"]["ready"] == true)
        });
        assert!(ready, "chromedriver starts");
        let answer: Value = http()
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", format!("--window-size={width},{height}")]
                }
            }}}))
            .send()
            .and_then(|r| r.json())
            .expect("a WebDriver session");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Self {
            _driver: driver,
            base,
            session,
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = http().request(method, &url);
        // A GET carries no body; chromedriver refuses one.
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let answer: Value = request
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }));
    }

    /// Runs `script` in the page; returns what it returns.
    fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            if self.eval(script) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "the page never showed {what}; it shows:\n{}",
            self.eval("return document.body.innerText")
        );
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({ "width": width, "height": height }),
        );
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let png = self.call(reqwest::Method::GET, "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 PNG"))
            .expect("base64");
        let dir = repo().join("target/test-artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("screenshot");
        path
    }

    /// Finds `css` and types `text` into it, replacing what it held.
    fn type_into(&self, css: &str, text: &str) {
        let found = self.call(
            reqwest::Method::POST,
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        let element = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            json!({}),
        );
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http()
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
    }
}

fn row_status(id: &str) -> String {
    format!(
        "const row = document.querySelector('#jobs-table tr[data-job-id=\"{id}\"]'); \
         return row ? row.dataset.status : null"
    )
}

#[test]
fn the_dashboard_shows_the_mesh_and_jobs_live_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = start_network(dir.path(), &[None, None, None]);
    let api = net.nodes[0].2.clone();
    let browser = Browser::start(dir.path(), 1280, 900);
    browser.go(&format!("http://{api}/#/overview"));
    // A mark that a reload would wipe.
    browser.eval("window.__stillTheSamePage = true; return true");

    let own = &net.nodes[0].1;
    browser.wait_for(
        "this node's PeerId",
        &format!("return document.querySelector('#node-peer-id')?.textContent.trim() === '{own}'"),
    );
    browser.wait_for(
        "the live event stream",
        "return document.querySelector('#live')?.dataset.state === 'open'",
    );
    browser.go(&format!("http://{api}/#/peers"));
    browser.eval("window.__stillTheSamePage = true; return true");
    for (_, peer, _) in &net.nodes[1..] {
        browser.wait_for(
            &format!("peer {peer} in the table"),
            &format!("return !!document.querySelector('#peers-table tr[data-peer-id=\"{peer}\"]')"),
        );
    }
    browser.wait_for(
        "the mesh picture",
        "return document.querySelectorAll('#mesh circle, #mesh g').length > 1",
    );
    // Who else is connected to whom: the links the workers name in their announcements.
    browser.wait_for(
        "a link between two other peers",
        "return document.querySelectorAll('#mesh line[data-link]').length >= 1",
    );
    browser.screenshot("dashboard-desktop-peers");

    // A job submitted elsewhere (the CLI) while the page is open: it shows up and reaches
    // completed by itself. It sleeps, so the page is caught while it runs.
    browser.go(&format!("http://{api}/#/jobs"));
    let id = submit_to_two(&api, &["sh", "-c", "echo started; sleep 4; echo done"]);
    browser.wait_for(
        "the new job running",
        &format!(
            "return ['running', 'verifying'].includes(({})())",
            fn_of(&row_status(&id))
        ),
    );
    let desktop = browser.screenshot("dashboard-desktop-jobs");
    browser.go(&format!("http://{api}/#/jobs/{id}"));
    browser.wait_for(
        "the job's page",
        &format!(
            "return document.querySelector('#job-detail')?.textContent.includes('{id}') ?? false"
        ),
    );
    browser.screenshot("dashboard-desktop-job");
    browser.resize(375, 812);
    browser.go(&format!("http://{api}/#/jobs"));
    let phone = browser.screenshot("dashboard-phone-jobs");
    browser.wait_for(
        "a page no wider than a phone",
        "return document.documentElement.scrollWidth <= window.innerWidth",
    );
    browser.wait_for(
        "the job completed, without a reload",
        &format!(
            "return ({})() === 'completed' && window.__stillTheSamePage === true",
            fn_of(&row_status(&id))
        ),
    );
    browser.go(&format!("http://{api}/#/jobs/{id}"));
    browser.wait_for(
        "the verified output on the job's page",
        "return document.querySelector('#job-detail pre.output')?.textContent === 'started\\ndone\\n'",
    );
    browser.screenshot("dashboard-phone-job");
    browser.resize(1280, 900);

    // A job submitted through the page's own form.
    browser.go(&format!("http://{api}/#/submit"));
    browser.type_into("#submit-form [name=image]", IMAGE);
    browser.type_into("#submit-form [name=command]", "sh -c 'echo from the form'");
    browser.type_into("#submit-form [name=redundancy]", "2");
    browser.type_into("#submit-form [name=consensus]", "2");
    browser.type_into("#submit-form [name=cpus]", "0.5");
    browser.eval("document.querySelector('#submit-button').click(); return true");
    browser.wait_for(
        "the submitted job's id",
        "return !!document.querySelector('#submit-result')?.dataset.jobId",
    );
    let formed = browser
        .eval("return document.querySelector('#submit-result').dataset.jobId")
        .as_str()
        .expect("an id")
        .to_string();
    assert_eq!(final_status(&api, &formed), "completed");
    browser.go(&format!("http://{api}/#/jobs"));
    browser.wait_for(
        "the form's job completed",
        &format!("return ({})() === 'completed'", fn_of(&row_status(&formed))),
    );
    browser.screenshot("dashboard-desktop-after-form");
    browser.go(&format!("http://{api}/#/overview"));
    browser.wait_for(
        "the overview's charts",
        "return document.querySelectorAll('svg').length >= 2",
    );
    browser.screenshot("dashboard-desktop-overview");
    browser.go(&format!("http://{api}/#/ledger"));
    browser.screenshot("dashboard-desktop-ledger");

    // A bad field is refused with the node's own message, naming it.
    browser.go(&format!("http://{api}/#/submit"));
    browser.type_into("#submit-form [name=cpus]", "0.001");
    browser.eval("document.querySelector('#submit-button').click(); return true");
    browser.wait_for(
        "the node's refusal naming the field",
        "const r = document.querySelector('#submit-result'); \
         return !!r && r.dataset.error === '1' && r.textContent.includes('resources.cpus') \
         && document.querySelector('#submit-form [name=cpus]').getAttribute('aria-invalid') === 'true'",
    );
    println!(
        "screenshots: {} and {} (and more beside them)",
        desktop.display(),
        phone.display()
    );
}

/// `body` (a function body with `return`) as a function expression.
fn fn_of(body: &str) -> String {
    format!("(() => {{ {body} }})")
}
