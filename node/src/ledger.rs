//! The ledger: every valid verdict this node has seen, stored in sled, and the reputation and
//! credits that every node derives from them the same way (`distributeai_verifier::reputation`).
//!
//! A verdict enters only after `Signed::open` has checked it (signature, issuer is the job's
//! submitter, every listed worker's own signed bid for that job, payments consistent); the
//! ledger adds the one rule that needs memory: one verdict per job. A node that missed verdicts
//! (it joined late or was cut off) catches up from peers in bounded batches ([`sync_from`]), and
//! the [`Ledger::summary`] hash tells whether two ledgers hold the same entries.

use std::collections::{BTreeMap, HashMap};

use distributeai_protocol::limits::{MAX_LEDGER_BATCH, MAX_MESSAGE_BYTES};
use distributeai_protocol::{
    Digest, JobId, LedgerSyncRequest, LedgerSyncResponse, PublicKey, Request, Signed,
    ValidationContext, Verdict, Verified, codec,
};
use distributeai_verifier::reputation::{self, Entry, Standing};
use libp2p::PeerId;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::network::{Client, VerifiedResponse};
use crate::store::{Store, StoreError, Table};

/// What inserting a verdict did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry.
    New,
    /// Already held.
    Duplicate,
}

/// Why a verdict was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A different verdict for the same job is already held.
    #[error("a different verdict for job {0} is already in the ledger")]
    DoubleVerdict(JobId),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Held {
    content_id: Digest,
    entry: Entry<PublicKey>,
}

/// The ledger and the standings derived from it.
pub struct Ledger {
    store: Store,
    entries: BTreeMap<JobId, Held>,
    standings: HashMap<PublicKey, Standing>,
    /// The canonical position of the last entry applied, for applying in order cheaply.
    last: Option<(u64, [u8; 32])>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Ledger {
    /// Loads the stored entries, re-checking each; an entry that no longer validates is skipped.
    pub fn open(store: Store) -> Result<Self, StoreError> {
        let mut ledger = Self {
            store,
            entries: BTreeMap::new(),
            standings: HashMap::new(),
            last: None,
        };
        let ctx = ValidationContext::live().archived();
        for signed in ledger.store.all::<Signed<Verdict>>(Table::Ledger)? {
            match signed.open(&ctx) {
                Ok(verified) => {
                    let job_id = verified.message.job.job_id();
                    let content_id = signed.content_id();
                    let entry = distributeai_jobflow::ledger_entry(
                        &verified.message,
                        verified.signer,
                        content_id,
                    );
                    ledger.entries.insert(job_id, Held { content_id, entry });
                }
                Err(e) => {
                    warn!(error = %e, "skipping a stored ledger entry that does not validate")
                }
            }
        }
        ledger.recompute();
        Ok(ledger)
    }

    fn recompute(&mut self) {
        let entries: Vec<Entry<PublicKey>> =
            self.entries.values().map(|h| h.entry.clone()).collect();
        self.standings = reputation::compute(&entries);
        self.last = entries.iter().map(|e| (e.issued_at, e.id)).max();
    }

    /// Adds a verified verdict (stored before it counts).
    pub fn insert(&mut self, verdict: &Verified<Verdict>) -> Result<Inserted, LedgerError> {
        let job_id = verdict.message.job.job_id();
        let content_id = verdict.envelope.content_id();
        if let Some(held) = self.entries.get(&job_id) {
            return if held.content_id == content_id {
                Ok(Inserted::Duplicate)
            } else {
                Err(LedgerError::DoubleVerdict(job_id))
            };
        }
        self.store
            .put(Table::Ledger, job_id.as_bytes(), &verdict.envelope)?;
        let entry =
            distributeai_jobflow::ledger_entry(&verdict.message, verdict.signer, content_id);
        let position = (entry.issued_at, entry.id);
        if self.last.is_none_or(|last| position > last) {
            // In canonical order already: apply on top.
            reputation::apply(&mut self.standings, &entry);
            self.last = Some(position);
            self.entries.insert(job_id, Held { content_id, entry });
        } else {
            self.entries.insert(job_id, Held { content_id, entry });
            self.recompute();
        }
        Ok(Inserted::New)
    }

    /// blake3 over every (job id, verdict content id), in job-id order: equal on two nodes
    /// exactly when they hold the same entries.
    pub fn summary(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"distributeai/ledger-summary/v1\0");
        for (job_id, held) in &self.entries {
            hasher.update(job_id.as_bytes());
            hasher.update(held.content_id.as_bytes());
        }
        Digest(*hasher.finalize().as_bytes())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where an identity stands (a newcomer's standing if it appears in no entry).
    pub fn standing(&self, key: &PublicKey) -> Standing {
        self.standings.get(key).copied().unwrap_or_default()
    }

    /// Every identity that appears in the ledger.
    pub fn standings(&self) -> &HashMap<PublicKey, Standing> {
        &self.standings
    }

    /// A batch of entries after `after` in job-id order, within the message size bound.
    pub fn page(&self, request: &LedgerSyncRequest) -> Result<LedgerSyncResponse, StoreError> {
        let limit = (request.limit as usize).clamp(1, MAX_LEDGER_BATCH);
        let after = request.after.map(|id| id.0);
        let (candidates, mut more) = self.store.range_after::<Signed<Verdict>>(
            Table::Ledger,
            after.as_ref().map(|a| a.as_slice()),
            limit,
        )?;
        let mut entries = Vec::new();
        let mut size = 1024;
        for entry in candidates {
            let len = codec::encode(&entry)
                .map(|b| b.len())
                .unwrap_or(MAX_MESSAGE_BYTES);
            if size + len > MAX_MESSAGE_BYTES - 64 * 1024 && !entries.is_empty() {
                more = true;
                break;
            }
            size += len;
            entries.push(entry);
        }
        Ok(LedgerSyncResponse {
            entries,
            more,
            summary: self.summary(),
        })
    }
}

pub use distributeai_api::{LedgerView, StandingView};

/// A standing as JSON.
pub fn standing_view(key: &PublicKey, s: &Standing) -> StandingView {
    StandingView {
        peer_id: key
            .peer_id()
            .map(|p| p.to_string())
            .unwrap_or_else(|_| key.to_hex()),
        reputation: (s.reputation * 100.0).round() / 100.0,
        credits: s.credits,
        agreed: s.agreed,
        disagreed: s.disagreed,
        failed: s.failed,
        silent: s.silent,
        weight: (reputation::selection_weight(s) * 10_000.0).round() / 10_000.0,
    }
}

impl Ledger {
    /// The JSON view.
    pub fn view(&self) -> LedgerView {
        let mut peers: Vec<StandingView> = self
            .standings
            .iter()
            .map(|(k, s)| standing_view(k, s))
            .collect();
        peers.sort_by(|a, b| {
            b.reputation
                .total_cmp(&a.reputation)
                .then(a.peer_id.cmp(&b.peer_id))
        });
        LedgerView {
            summary: self.summary().to_hex(),
            entries: self.len(),
            peers,
        }
    }
}

/// Most batches fetched from one peer in one sync round.
const MAX_PAGES: usize = 1000;

/// Pulls the entries `peer` has and we lack, validating each one. Returns how many were new.
pub async fn sync_from(
    network: &Client,
    ledger: &std::sync::RwLock<Ledger>,
    metrics: &Metrics,
    peer: PeerId,
) -> Result<usize, String> {
    let mut after = None;
    let mut added = 0;
    for _ in 0..MAX_PAGES {
        let request = Request::LedgerSync(LedgerSyncRequest {
            after,
            limit: MAX_LEDGER_BATCH as u32,
        });
        let batch = match network.request(peer, request).await {
            Ok(VerifiedResponse::Ledger(batch)) => batch,
            Ok(VerifiedResponse::Refused(reason)) => return Err(reason),
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        let ctx = ValidationContext::live().archived();
        let mut ledger = ledger.write().unwrap_or_else(|p| p.into_inner());
        if batch.summary == ledger.summary() {
            metrics.ledger_matched(distributeai_protocol::time::now_ms());
            return Ok(added);
        }
        for signed in &batch.entries {
            match signed.open(&ctx) {
                Ok(verified) => match ledger.insert(&verified) {
                    Ok(Inserted::New) => added += 1,
                    Ok(Inserted::Duplicate) => {}
                    Err(e) => {
                        metrics.dropped("ledger_entry", "double_verdict");
                        debug!(%peer, error = %e, "refused a synced ledger entry");
                    }
                },
                Err(e) => {
                    metrics.dropped("ledger_entry", e.reason());
                    debug!(%peer, error = %e, "refused an invalid synced ledger entry");
                }
            }
            after = Some(
                signed
                    .decode_unchecked()
                    .map(|v| v.job.job_id())
                    .map_err(|e| e.to_string())?,
            );
        }
        if !batch.more || batch.entries.is_empty() {
            if batch.summary == ledger.summary() {
                metrics.ledger_matched(distributeai_protocol::time::now_ms());
            }
            return Ok(added);
        }
    }
    Ok(added)
}

/// Keeps the ledger in step with peers: on every trigger (a new peer connected) and every
/// `interval`, pulls from a few random nodes of the peer table.
pub async fn run_sync(
    network: Client,
    ledger: std::sync::Arc<std::sync::RwLock<Ledger>>,
    peers: std::sync::Arc<std::sync::RwLock<crate::peers::PeerTable>>,
    metrics: Metrics,
    mut trigger: tokio::sync::mpsc::Receiver<()>,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use rand::seq::SliceRandom;
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            got = trigger.recv() => {
                if got.is_none() {
                    break;
                }
                // A burst of connections needs one round, a moment later.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                while trigger.try_recv().is_ok() {}
            }
        }
        let mut candidates: Vec<PeerId> = {
            let table = peers.read().unwrap_or_else(|p| p.into_inner());
            table
                .records()
                .filter(|p| p.capabilities.is_some())
                .map(|p| p.peer_id)
                .collect()
        };
        candidates.shuffle(&mut rand::rng());
        for peer in candidates.into_iter().take(3) {
            match sync_from(&network, &ledger, &metrics, peer).await {
                Ok(0) => {}
                Ok(added) => debug!(%peer, added, "ledger entries synced"),
                Err(e) => debug!(%peer, error = %e, "ledger sync failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use distributeai_protocol::time::now_ms;
    use distributeai_protocol::{
        Bid, CommittedOutcome, JobAnnouncement, JobSpec, NodeIdentity, ResultCommitment,
        ResultHash, VerdictOutcome, WorkerRecord, WorkerResult,
    };

    use super::*;

    fn verdict(
        submitter: &NodeIdentity,
        nonce: u64,
        agree: &[&NodeIdentity],
        at: u64,
    ) -> Signed<Verdict> {
        let mut spec = JobSpec::new("img", vec![]);
        spec.consensus = 1;
        let job = Signed::sign(
            submitter,
            &JobAnnouncement {
                spec,
                nonce,
                issued_at: at,
                expires_at: at + 60_000,
            },
        )
        .expect("sign");
        let workers = agree
            .iter()
            .map(|w| WorkerRecord {
                bid: Signed::sign(
                    w,
                    &Bid {
                        job_id: job.job_id(),
                        image: None,
                        running_jobs: 0,
                        issued_at: at,
                    },
                )
                .expect("sign"),
                commitment: Some(
                    Signed::sign(
                        w,
                        &ResultCommitment {
                            job_id: job.job_id(),
                            attempt: 0,
                            outcome: CommittedOutcome::Committed(Digest([7; 32])),
                            issued_at: at,
                        },
                    )
                    .expect("sign"),
                ),
                result: WorkerResult::Agreed,
                paid: 0,
            })
            .collect();
        let v = Verdict {
            job,
            outcome: VerdictOutcome::Accepted(distributeai_protocol::AgreedResult {
                hash: ResultHash([1; 32]),
                end: distributeai_protocol::JobEnd::Exited { code: 0 },
                image: format!("sha256:{}", "1".repeat(64)),
            }),
            workers,
            issued_at: at,
        };
        Signed::sign(submitter, &v).expect("sign")
    }

    fn open(signed: &Signed<Verdict>) -> Verified<Verdict> {
        signed
            .open(&ValidationContext::live().archived())
            .expect("valid")
    }

    #[test]
    fn same_entries_in_any_order_give_the_same_summary_and_standings() {
        let s = NodeIdentity::from_secret([1; 32]);
        let (a, b) = (
            NodeIdentity::from_secret([2; 32]),
            NodeIdentity::from_secret([3; 32]),
        );
        let now = now_ms();
        let entries: Vec<Signed<Verdict>> = (0..6)
            .map(|i| verdict(&s, i, &[&a, &b][..(i as usize % 2 + 1)], now - 1000 * i))
            .collect();
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let mut forward =
            Ledger::open(Store::open(dirs[0].path()).expect("store")).expect("ledger");
        let mut backward =
            Ledger::open(Store::open(dirs[1].path()).expect("store")).expect("ledger");
        for e in &entries {
            assert_eq!(forward.insert(&open(e)).expect("insert"), Inserted::New);
        }
        for e in entries.iter().rev() {
            backward.insert(&open(e)).expect("insert");
        }
        assert_eq!(forward.summary(), backward.summary());
        assert_eq!(
            forward.standing(&a.public_key()),
            backward.standing(&a.public_key())
        );
        assert_eq!(forward.standing(&b.public_key()).agreed, 3);
        // Reloading from the store gives the same ledger.
        drop(forward);
        let reloaded = Ledger::open(Store::open(dirs[0].path()).expect("store")).expect("ledger");
        assert_eq!(reloaded.summary(), backward.summary());
        assert_eq!(reloaded.len(), 6);
    }

    #[test]
    fn a_second_verdict_for_a_job_is_refused() {
        let s = NodeIdentity::from_secret([1; 32]);
        let a = NodeIdentity::from_secret([2; 32]);
        let now = now_ms();
        let first = verdict(&s, 1, &[&a], now);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::open(Store::open(dir.path()).expect("store")).expect("ledger");
        ledger.insert(&open(&first)).expect("insert");
        assert_eq!(
            ledger.insert(&open(&first)).expect("again"),
            Inserted::Duplicate
        );
        // Same job, a verdict issued later with different content.
        let mut second = first.decode_unchecked().expect("decode");
        second.issued_at += 1;
        second.workers.clear();
        second.outcome = VerdictOutcome::Failed("changed my mind".into());
        let second = Signed::sign(&s, &second).expect("sign");
        assert!(matches!(
            ledger.insert(&open(&second)),
            Err(LedgerError::DoubleVerdict(_))
        ));
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn pages_cover_every_entry_in_order() {
        let s = NodeIdentity::from_secret([1; 32]);
        let a = NodeIdentity::from_secret([2; 32]);
        let now = now_ms();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::open(Store::open(dir.path()).expect("store")).expect("ledger");
        for i in 0..70 {
            ledger
                .insert(&open(&verdict(&s, i, &[&a], now)))
                .expect("insert");
        }
        let mut after = None;
        let mut seen = 0;
        loop {
            let page = ledger
                .page(&LedgerSyncRequest { after, limit: 32 })
                .expect("page");
            assert!(page.entries.len() <= 32);
            seen += page.entries.len();
            after = page
                .entries
                .last()
                .map(|e| e.decode_unchecked().expect("decode").job.job_id());
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, 70);
    }
}
