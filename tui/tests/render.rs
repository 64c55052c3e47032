//! Rendering each view with fixed data into ratatui's TestBackend, at 80x24, and checking the
//! text on screen.

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

fn sample() -> App {
    let mut app = App::new("127.0.0.1:7070");
    app.connection = Connection::Connected;
    app.data.node = Some(json!({
        "peer_id": "12D3KooWNodeSelf", "role": "node", "worker": true, "uptime_s": 3725,
        "listen_addrs": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWNodeSelf"],
        "reachability": "private",
        "relays": [{"peer_id": "12D3KooWRelayOne", "address": "/ip4/203.0.113.2/tcp/4001/p2p/12D3KooWRelayOne/p2p-circuit", "reserved": true},
                   {"peer_id": "12D3KooWRelayTwo", "address": "/ip4/203.0.113.3/tcp/4001/p2p/12D3KooWRelayTwo/p2p-circuit", "reserved": true}]
    }));
    app.data.peers = vec![
        json!({"peer_id": "12D3KooWPeerAlpha0001", "connected": true, "route": "relayed", "source": "bootstrap", "capabilities": null,
               "last_seen": NOW - 3000, "reputation": 100.0, "credits": 50}),
        json!({"peer_id": "12D3KooWPeerBravo0002", "connected": false, "source": "gossip",
               "capabilities": {"cpus": 4, "memory_mb": 8192, "region": "eu-west"},
               "last_seen": NOW - 20000, "reputation": 112.5, "credits": 70}),
    ];
    app.data.jobs = vec![
        json!({"id": "aaaaaaaaaaaa1111222233334444", "status": "completed", "submitted_at": NOW - 65000,
               "spec": {"image": "distributeai/toolbox:local", "redundancy": 3, "consensus": 2}}),
        json!({"id": "bbbbbbbbbbbb5555666677778888", "status": "running", "submitted_at": NOW - 5000,
               "spec": {"image": "python:3.12", "redundancy": 5, "consensus": 3}}),
    ];
    app.data.stats = Some(json!({"jobs": {"completed": 1, "running": 1}}));
    app.data.ledger = Some(
        json!({"entries": 1, "peers": [{"peer_id": "12D3KooWNodeSelf", "reputation": 105.0, "credits": 30}]}),
    );
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
        "reputation 105",
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
        job: Some(json!({
            "status": "completed", "spec": {"image": "toolbox", "redundancy": 3, "consensus": 2},
            "bids": [{}, {}, {}],
            "executions": [
                {"peer_id": "12D3KooWWorkerOne111", "status": "revealed", "result_hash": "cfc4aecea5073abc", "exit_code": 0, "duration_ms": 512},
                {"peer_id": "12D3KooWWorkerTwo222", "status": "revealed", "result_hash": "cf439518a98c0000", "exit_code": 0, "duration_ms": 498}
            ],
            "verdict": {"outcome": "accepted", "result_hash": "cfc4aecea5073abc", "agreeing": ["a", "b"], "disagreeing": ["c"], "failed": [], "silent": []}
        })),
        logs: vec![
            json!({"at": NOW, "message": "bid from …WorkerOne"}),
            json!({"at": NOW, "message": "accepted cfc4aecea507: 2 of 3 agree"}),
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
        "✗ k must not exceed n",
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
        "112.5",
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
