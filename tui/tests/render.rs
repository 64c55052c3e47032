//! Rendering each view with fixed data into ratatui's TestBackend, at 80x24, and checking the
//! text on screen.

use distributeai_api::{
    ExecutionState, ExecutionView, JobStatus, JobView, LedgerView, LogLine, NodeInfo, PeerView,
    StandingView, Stats, VerdictView,
};
use distributeai_protocol::{Capabilities, JobSpec};
use distributeai_tui::app::{App, Connection, Detail, View};
use distributeai_tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

const NOW: u64 = 1_800_000_100_000;

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal.draw(|f| ui::draw(f, app, NOW)).expect("draw");
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

/// A value of the API's types, from the JSON the node would send.
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("the JSON fits the API's type")
}

fn capabilities(cpus: u32, memory_mb: u64, region: &str) -> Capabilities {
    typed(
        json!({"cpus": cpus, "memory_mb": memory_mb, "gpus": [], "region": region,
                 "version": "0.1.0", "images": []}),
    )
}

fn peer(id: &str, connected: bool, route: Option<&str>, source: &str, seen_ago: u64) -> PeerView {
    typed(
        json!({"peer_id": id, "public_key": null, "addresses": [], "capabilities": null,
                 "accepts_jobs": true, "last_seen": NOW - seen_ago, "connected": connected,
                 "source": source, "started_at": 0, "reputation": 0.5, "credits": 50,
                 "route": route, "connections": []}),
    )
}

fn job(id: &str, status: JobStatus, image: &str, n: u8, k: u8, age_ms: u64) -> JobView {
    let mut spec = JobSpec::new(image, vec![]);
    spec.redundancy = n;
    spec.consensus = k;
    JobView::new(id, status, spec, NOW - age_ms)
}

fn sample() -> App {
    let mut app = App::new("127.0.0.1:7070");
    app.connection = Connection::Connected;
    app.data.node = Some(typed::<NodeInfo>(json!({
        "peer_id": "12D3KooWNodeSelf", "role": "node", "worker": true, "uptime_s": 3725,
        "version": "0.1.0", "capabilities": capabilities(2, 4096, ""), "connected_peers": 1,
        "listen_addrs": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWNodeSelf"],
        "reachability": "private",
        "relays": [{"peer_id": "12D3KooWRelayOne", "address": "/ip4/203.0.113.2/tcp/4001/p2p/12D3KooWRelayOne/p2p-circuit", "reserved": true},
                   {"peer_id": "12D3KooWRelayTwo", "address": "/ip4/203.0.113.3/tcp/4001/p2p/12D3KooWRelayTwo/p2p-circuit", "reserved": true}]
    })));
    let alpha = peer(
        "12D3KooWPeerAlpha0001",
        true,
        Some("relayed"),
        "bootstrap",
        3000,
    );
    let mut bravo = peer("12D3KooWPeerBravo0002", false, None, "gossip", 20000);
    bravo.capabilities = Some(capabilities(4, 8192, "eu-west"));
    bravo.reputation = 0.97;
    bravo.credits = 70;
    app.data.peers = vec![alpha, bravo];
    app.data.jobs = vec![
        job(
            "aaaaaaaaaaaa1111222233334444",
            JobStatus::Completed,
            "distributeai/toolbox:local",
            3,
            2,
            65000,
        ),
        job(
            "bbbbbbbbbbbb5555666677778888",
            JobStatus::Running,
            "python:3.12",
            5,
            3,
            5000,
        ),
    ];
    app.data.stats = Some(Stats {
        jobs: [("completed".to_string(), 1), ("running".to_string(), 1)].into(),
        ..Stats::default()
    });
    app.data.ledger = Some(LedgerView {
        summary: "00".into(),
        entries: 1,
        peers: vec![StandingView {
            peer_id: "12D3KooWNodeSelf".into(),
            reputation: 0.95,
            credits: 30,
            spendable: 30,
            genesis: false,
            agreed: 1,
            disagreed: 0,
            failed: 0,
            silent: 0,
            weight: 1.0,
        }],
        genesis: Vec::new(),
    });
    app.push_event("job 222233334444 completed");
    app
}

#[test]
fn overview_shows_the_node_the_mesh_standing_jobs_and_events() {
    let text = screen(&sample());
    for expected in [
        "1 Overview",
        "● 127.0.0.1:7070",
        "12D3KooWNodeSelf",
        "node + worker",
        "up 1h02m05s",
        "reputation 0.95",
        "credits 30",
        "2 peers known, 1 connected (1 relayed)",
        "reach     behind NAT · reachable through 2 relays",
        "1 via bootstrap",
        "1 completed",
        "job 222233334444 completed",
        "q quit",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn jobs_view_lists_status_image_nk_and_age() {
    let mut app = sample();
    app.view = View::Jobs;
    let text = screen(&app);
    for expected in [
        "Jobs (2)",
        "222233334444",
        "completed",
        "distributeai/toolbox:local",
        "3/2",
        "65s",
        "5/3",
        "Enter open",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    app.filter = "python".into();
    let text = screen(&app);
    assert!(
        text.contains("Jobs (1) filter: python") && !text.contains("toolbox"),
        "{text}"
    );
}

#[test]
fn job_detail_shows_executions_votes_verdict_timeline_and_output() {
    let mut app = sample();
    app.view = View::Jobs;
    app.detail = Some(Detail {
        id: "aaaaaaaaaaaa1111222233334444".into(),
        job: Some({
            let mut job = job(
                "aaaaaaaaaaaa1111222233334444",
                JobStatus::Completed,
                "toolbox",
                3,
                2,
                1000,
            );
            job.bids = typed(json!([
                {"peer_id": "a", "received_at": NOW, "image": null},
                {"peer_id": "b", "received_at": NOW, "image": null},
                {"peer_id": "c", "received_at": NOW, "image": null}
            ]));
            job.executions = vec![
                execution("12D3KooWWorkerOne111", "cfc4aecea5073abc", 512),
                execution("12D3KooWWorkerTwo222", "cf439518a98c0000", 498),
            ];
            job.verdict = Some(typed::<VerdictView>(json!({
                "outcome": "accepted", "result_hash": "cfc4aecea5073abc", "agreeing": ["a", "b"],
                "disagreeing": ["c"], "failed": [], "silent": [], "entry_id": "00"
            })));
            job
        }),
        logs: vec![
            LogLine {
                at: NOW,
                message: "bid from …WorkerOne".into(),
            },
            LogLine {
                at: NOW,
                message: "accepted cfc4aecea507: 2 of 3 agree".into(),
            },
        ],
        output: Some("1de9b0035badba63\n".into()),
        scroll: 0,
    });
    let text = screen(&app);
    for expected in [
        "completed",
        "bids 3",
        "verdict accepted cfc4aecea507",
        "agree 2 · disagree 1 · failed 0 · silent 0",
        "WorkerOne111",
        "revealed",
        "cf439518a98c",
        "512ms",
        "accepted cfc4aecea507: 2 of 3 agree",
        "Verified output",
        "1de9b0035badba63",
        "Esc back",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

fn execution(worker: &str, hash: &str, duration_ms: u64) -> ExecutionView {
    let mut e: ExecutionView = typed(json!({
        "peer_id": worker, "attempt": 1, "status": "revealed", "active": false,
        "assigned_at": NOW
    }));
    assert_eq!(e.status, ExecutionState::Revealed);
    e.result_hash = Some(hash.into());
    e.exit_code = Some(0);
    e.duration_ms = Some(duration_ms);
    e
}

#[test]
fn submit_view_shows_fields_focus_and_errors_in_place() {
    let mut app = sample();
    app.view = View::Submit;
    app.form.fields[3].value = "9".into();
    assert!(app.form.validate().is_none());
    let text = screen(&app);
    for expected in [
        "Submit a job",
        "image",
        "distributeai/toolbox:local",
        "consensus k",
        "✗ consensus (k = 9) must be",
        "Enter submit",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn peers_view_shows_capabilities_reputation_credits_and_sort() {
    let mut app = sample();
    app.view = View::Peers;
    let text = screen(&app);
    for expected in [
        "Peers (2) sorted by reputation",
        "eerBravo0002",
        "eu-west",
        "8192M",
        "0.97",
        "70",
        "bootstrap",
        "relayed",
        "3s",
        "20s",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Highest reputation first.
    assert!(
        text.find("eerBravo0002") < text.find("eerAlpha0001"),
        "{text}"
    );
}

#[test]
fn an_unreachable_node_is_said_plainly_and_help_overlays() {
    let mut app = App::new("127.0.0.1:9");
    app.connection = Connection::Unreachable("connection refused".into());
    let text = screen(&app);
    assert!(text.contains("node unreachable, retrying"), "{text}");
    assert!(
        text.contains("cannot reach the node at 127.0.0.1:9"),
        "{text}"
    );
    app.help = true;
    let text = screen(&app);
    assert!(
        text.contains("Keys") && text.contains("filter jobs") && text.contains("any key closes"),
        "{text}"
    );
}
