//! Issue 20: a node restarted with a large ledger. In a test binary of its own, so that the
//! memory of making 100,000 entries (which the allocator keeps) does not count against the
//! nodes of other tests in one process (their connection limit denies new connections above
//! 1 GiB resident).

mod common;

use std::time::Duration;

use common::adversary::Forger;
use common::*;
use distributeai_protocol::{Signed, Verdict};

/// Issue 20: start-up verified every stored entry again (up to ~260 signatures each), so it
/// grew with the ledger. A node whose store holds 100,000 entries (written straight into its
/// store, as years of a busy network would leave them) starts, API up, in under 10 s, and
/// holds them all.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_100_000_ledger_entries_starts_in_under_10_s() {
    const ENTRIES: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = distributeai_protocol::NodeIdentity::generate().expect("key");
    let accomplice = distributeai_protocol::NodeIdentity::generate().expect("key");
    let start = distributeai_protocol::time::now_ms() - 20 * 3_600_000;
    let made = std::time::Instant::now();
    let verdicts: Vec<Signed<Verdict>> = std::thread::scope(|scope| {
        let halves: Vec<_> = (0..2u64)
            .map(|half| {
                let (issuer, accomplice) = (&issuer, &accomplice);
                scope.spawn(move || {
                    let forger = Forger { issuer, accomplice };
                    (half * ENTRIES / 2..(half + 1) * ENTRIES / 2)
                        .map(|n| forger.farmed_at(n, start + n * 500))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    });
    {
        let store = distributeai_node::store::Store::open(dir.path()).expect("store");
        let keys: Vec<distributeai_protocol::JobId> = verdicts
            .iter()
            .map(|v| v.decode_unchecked().expect("decodes").job.job_id())
            .collect();
        store
            .put_all(
                distributeai_node::store::Table::Ledger,
                keys.iter().map(|k| &k.as_bytes()[..]).zip(verdicts.iter()),
            )
            .expect("store the ledger");
    }
    eprintln!("{ENTRIES} entries made and stored in {:?}", made.elapsed());
    // To measure a real node on this ledger by hand (its resident memory, say):
    // DISTRIBUTEAI_KEEP_LEDGER=<dir> keeps a copy of the store there.
    if let Some(keep) = std::env::var_os("DISTRIBUTEAI_KEEP_LEDGER") {
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(dir.path().join("store"))
            .arg(&keep)
            .status()
            .expect("cp");
        assert!(status.success());
    }
    drop(verdicts);

    let started = std::time::Instant::now();
    let node = distributeai_node::service::start(node_config(dir.path(), Vec::new(), "test"))
        .await
        .expect("the node starts");
    let took = started.elapsed();
    let status = get_json(&format!("http://{}/api/v1/node", node.api_addr)).await;
    let held = node.state.ledger.read().expect("ledger").len();
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_default()
        .to_string();
    eprintln!("a node with {held} ledger entries started in {took:?}; this process: {rss}");
    assert!(status.is_object());
    assert_eq!(held as u64, ENTRIES);
    assert!(took < Duration::from_secs(10), "start-up took {took:?}");
    node.stop().await;
}
