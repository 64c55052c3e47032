//! The ledger: every valid verdict this node has seen, stored in sled, and the reputation and
//! credits that every node derives from them the same way (`distributeai_verifier::reputation`).
//!
//! A verdict enters only after `Signed::open` has re-checked it from its evidence (signature,
//! issuer is the job's submitter, every worker's result proved by that worker's own
//! signatures, the outcome and payments recomputed by the k-of-n rule; issue 19); the ledger
//! adds the one rule that needs memory: one verdict per job. When an issuer signs two
//! different verdicts for one job, every node keeps the same one, the one with the lower
//! content id, whatever order they arrived in, keeps the other as evidence of the
//! equivocation, and the issuer's weight drops to zero. A node that missed verdicts (it joined
//! late or was cut off) catches up from peers in bounded batches ([`sync_from`]), which carry
//! the evidence of equivocations too, and the [`Ledger::summary`] hash tells whether two
//! ledgers hold the same entries and the same evidence.

use std::collections::{BTreeMap, HashMap, HashSet};

use distributeai_protocol::limits::{MAX_LEDGER_BATCH, MAX_MESSAGE_BYTES};
use distributeai_protocol::{
    Digest, JobId, LedgerSyncRequest, LedgerSyncResponse, PublicKey, Request, Signed,
    ValidationContext, Verdict, Verified, codec,
};
use distributeai_verifier::reputation::{self, Book, Entry, Standing};
use libp2p::PeerId;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::network::{Client, KnownVerdicts, VerifiedResponse};
use crate::store::{Store, StoreError, Table};

/// What inserting a verdict did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry.
    New,
    /// Already held.
    Duplicate,
    /// A second, different verdict of the same issuer for a job already held: recorded as
    /// evidence of its equivocation; the entry kept is the one with the lower content id.
    Equivocation {
        /// The job.
        job: JobId,
        /// Whether the new verdict replaced the one held.
        replaced: bool,
    },
}

/// Why a verdict was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A job's entry in the ledger and, if its issuer equivocated, the other verdict kept as
/// evidence.
pub type HeldVerdicts = (Option<Signed<Verdict>>, Option<Signed<Verdict>>);

struct Held {
    content_id: Digest,
    entry: Entry<PublicKey>,
}

/// The ledger and the standings derived from it.
pub struct Ledger {
    store: Store,
    entries: BTreeMap<JobId, Held>,
    /// For each job whose issuer equivocated, the content id of the other verdict kept as
    /// evidence (the lowest of those not kept).
    equivocations: BTreeMap<JobId, Digest>,
    /// Issuers that signed two verdicts for one job: their weight is zero.
    equivocators: HashSet<PublicKey>,
    /// The network's founders, who count fully from the start.
    genesis: HashSet<PublicKey>,
    /// Content ids of every verdict held (entries and evidence), shared with the network task.
    held: KnownVerdicts,
    standings: Book<PublicKey>,
    /// The canonical position of the last entry applied, for applying in order cheaply.
    last: Option<(u64, [u8; 32])>,
    /// Counts changes to the entries, so a recompute made from a snapshot knows whether it is
    /// still current when it is installed.
    generation: u64,
    /// Whether the standings miss an entry that came out of canonical order (a backdated
    /// verdict, an equivocation): the next [`refresh`] recomputes them.
    stale: bool,
}

/// What a recompute starts from: taken under the read lock, computed without any lock.
pub struct Snapshot {
    entries: Vec<Entry<PublicKey>>,
    equivocators: HashSet<PublicKey>,
    genesis: HashSet<PublicKey>,
    generation: u64,
}

/// Standings recomputed from a [`Snapshot`], to install with [`Ledger::install`].
pub struct Recomputed {
    standings: Book<PublicKey>,
    last: Option<(u64, [u8; 32])>,
    generation: u64,
}

impl Snapshot {
    /// Recomputes the standings; the expensive part, run with no lock held.
    pub fn recompute(self) -> Recomputed {
        Recomputed {
            standings: reputation::compute_with(&self.entries, &self.equivocators, &self.genesis),
            last: self.entries.iter().map(|e| (e.issued_at, e.id)).max(),
            generation: self.generation,
        }
    }
}

/// Recomputes the standings when an out-of-order entry made them stale: the snapshot under
/// the read lock, the computation with no lock, the swap under the write lock. The API and
/// the job manager never wait for a recompute, and a flood of backdated verdicts costs one
/// recompute per call however many arrived (issue 20: each one recomputed the whole ledger
/// under the write lock). Called every [`REFRESH_INTERVAL`] by the node.
pub fn refresh(ledger: &std::sync::RwLock<Ledger>) -> bool {
    let snapshot = {
        let held = ledger.read().unwrap_or_else(|p| p.into_inner());
        if !held.stale {
            return false;
        }
        held.snapshot()
    };
    let recomputed = snapshot.recompute();
    ledger
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .install(recomputed);
    true
}

/// How often stale standings are recomputed: standings lag an out-of-order entry by at most
/// about this, and a flood of them costs one recompute (about 0.1 s of CPU for 100,000
/// entries) this often.
pub const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs [`refresh`] every [`REFRESH_INTERVAL`] until shutdown, off the async threads.
pub async fn run_refresh(
    ledger: std::sync::Arc<std::sync::RwLock<Ledger>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ledger = ledger.clone();
        let _ = tokio::task::spawn_blocking(move || refresh(&ledger)).await;
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Ledger {
    /// Loads the stored entries (verified when they were stored, so not checked again).
    /// `genesis` are the network's founders (the node's `--genesis` list).
    pub fn open(
        store: Store,
        genesis: HashSet<PublicKey>,
        held: KnownVerdicts,
    ) -> Result<Self, StoreError> {
        let mut ledger = Self {
            store,
            entries: BTreeMap::new(),
            equivocations: BTreeMap::new(),
            equivocators: HashSet::new(),
            genesis,
            held,
            standings: Book::new(),
            last: None,
            generation: 0,
            stale: false,
        };
        // Every stored verdict was verified before it was stored (`insert` takes only
        // `Verified` ones) and the store is this node's own, so start-up decodes without
        // checking a signature again (issue 20: re-verifying every entry, up to ~260
        // signatures each, made start-up grow with the ledger). A record that no longer
        // decodes (a damaged disk) is skipped.
        // One record at a time: the ledger can be far larger than what it takes decoded.
        let (mut entries, held) = (BTreeMap::new(), ledger.held.clone());
        ledger
            .store
            .each::<Signed<Verdict>>(Table::Ledger, |signed| match signed.decode_unchecked() {
                Ok(verdict) => {
                    let job_id = verdict.job.job_id();
                    let content_id = signed.content_id();
                    let entry =
                        distributeai_jobflow::ledger_entry(&verdict, signed.signer(), content_id);
                    held.insert(content_id);
                    entries.insert(job_id, Held { content_id, entry });
                }
                Err(e) => {
                    warn!(error = %e, "skipping a stored ledger entry that does not decode")
                }
            })?;
        ledger.entries = entries;
        for signed in ledger.store.all::<Signed<Verdict>>(Table::Equivocations)? {
            if let Ok(verdict) = signed.decode_unchecked() {
                let job_id = verdict.job.job_id();
                ledger.equivocations.insert(job_id, signed.content_id());
                ledger.held.insert(signed.content_id());
                ledger.equivocators.insert(signed.signer());
            }
        }
        let recomputed = ledger.snapshot().recompute();
        ledger.install(recomputed);
        Ok(ledger)
    }

    /// What a recompute of the standings needs, cloned.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            entries: self.entries.values().map(|h| h.entry.clone()).collect(),
            equivocators: self.equivocators.clone(),
            genesis: self.genesis.clone(),
            generation: self.generation,
        }
    }

    /// Installs recomputed standings. If entries changed since the snapshot, they stay stale
    /// and the next refresh recomputes again.
    pub fn install(&mut self, recomputed: Recomputed) {
        self.standings = recomputed.standings;
        self.last = recomputed.last;
        self.stale = recomputed.generation != self.generation;
    }

    /// Recomputes stale standings at once, holding `&mut self` throughout: for tests and
    /// tools; the node uses [`refresh`].
    pub fn recompute_now(&mut self) {
        if self.stale {
            let recomputed = self.snapshot().recompute();
            self.install(recomputed);
        }
    }

    /// Whether the standings wait for a recompute (see [`refresh`]).
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Marks the standings stale after an entry out of canonical order.
    fn changed_out_of_order(&mut self) {
        self.generation += 1;
        self.stale = true;
    }

    /// Adds a verified verdict (stored before it counts).
    pub fn insert(&mut self, verdict: &Verified<Verdict>) -> Result<Inserted, LedgerError> {
        let job_id = verdict.message.job.job_id();
        let content_id = verdict.envelope.content_id();
        if let Some(held) = self.entries.get(&job_id) {
            if held.content_id == content_id || self.equivocations.get(&job_id) == Some(&content_id)
            {
                return Ok(Inserted::Duplicate);
            }
            return self.equivocation(verdict, held.content_id);
        }
        self.store
            .put(Table::Ledger, job_id.as_bytes(), &verdict.envelope)?;
        self.held.insert(content_id);
        let entry =
            distributeai_jobflow::ledger_entry(&verdict.message, verdict.signer, content_id);
        let position = (entry.issued_at, entry.id);
        if !self.stale && self.last.is_none_or(|last| position > last) {
            // In canonical order already: apply on top.
            self.generation += 1;
            reputation::apply(&mut self.standings, &entry);
            self.last = Some(position);
            self.entries.insert(job_id, Held { content_id, entry });
        } else {
            self.entries.insert(job_id, Held { content_id, entry });
            self.changed_out_of_order();
        }
        Ok(Inserted::New)
    }

    /// A second verdict for a held job: both verdicts verified, and the job's announcement
    /// in both is the same signed one (the job id is its hash), so the same issuer signed
    /// both. Every node keeps the two lowest content ids it has seen, the lowest as the entry
    /// and the next as the evidence, so nodes that saw them in any order, or saw different
    /// ones, converge once they sync.
    fn equivocation(
        &mut self,
        verdict: &Verified<Verdict>,
        held: Digest,
    ) -> Result<Inserted, LedgerError> {
        let job_id = verdict.message.job.job_id();
        let content_id = verdict.envelope.content_id();
        let evidence = self.equivocations.get(&job_id).copied();
        let replaced = content_id < held;
        // Held either way: as the entry, as the evidence, or as a third verdict seen and
        // outranked, which nobody need check again.
        self.held.insert(content_id);
        if replaced {
            // The held entry becomes the evidence (it is lower than any evidence held).
            let old: Option<Signed<Verdict>> = self.store.get(Table::Ledger, job_id.as_bytes())?;
            if let Some(old) = old {
                self.store
                    .put(Table::Equivocations, job_id.as_bytes(), &old)?;
            }
            self.store
                .put(Table::Ledger, job_id.as_bytes(), &verdict.envelope)?;
            let entry =
                distributeai_jobflow::ledger_entry(&verdict.message, verdict.signer, content_id);
            self.entries.insert(job_id, Held { content_id, entry });
            self.equivocations.insert(job_id, held);
        } else if evidence.is_none_or(|e| content_id < e) {
            self.store
                .put(Table::Equivocations, job_id.as_bytes(), &verdict.envelope)?;
            self.equivocations.insert(job_id, content_id);
        }
        self.equivocators.insert(verdict.signer);
        self.changed_out_of_order();
        Ok(Inserted::Equivocation {
            job: job_id,
            replaced,
        })
    }

    /// blake3 over every (job id, verdict content id, evidence content id), in job-id order:
    /// equal on two nodes exactly when they hold the same entries and the same evidence of
    /// equivocation.
    pub fn summary(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"distributeai/ledger-summary/v2\0");
        for (job_id, held) in &self.entries {
            hasher.update(job_id.as_bytes());
            hasher.update(held.content_id.as_bytes());
            if let Some(evidence) = self.equivocations.get(job_id) {
                hasher.update(b"equivocation\0");
                hasher.update(evidence.as_bytes());
            }
        }
        Digest(*hasher.finalize().as_bytes())
    }

    /// Whether a verdict with this content id is held (or was seen and outranked), so
    /// that it need not be checked again.
    pub fn holds(&self, content_id: &Digest) -> bool {
        self.held.contains(content_id)
    }

    /// Issuers that signed two different verdicts for one job.
    pub fn equivocators(&self) -> &HashSet<PublicKey> {
        &self.equivocators
    }

    /// The entry held for a job, and the evidence of its issuer's equivocation if any.
    pub fn verdicts_of(&self, job: &JobId) -> Result<HeldVerdicts, StoreError> {
        Ok((
            self.store.get(Table::Ledger, job.as_bytes())?,
            self.store.get(Table::Equivocations, job.as_bytes())?,
        ))
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
        self.standings.standing(key)
    }

    /// Every identity that appears in the ledger.
    pub fn standings(&self) -> &HashMap<PublicKey, Standing> {
        self.standings.standings()
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
            // A job's evidence of equivocation travels right after its entry, so that a node
            // that saw only one of the two verdicts learns of the other (same job id, so the
            // cursor is unchanged).
            let job_id = entry.decode_unchecked().map(|v| v.job.job_id()).ok();
            let evidence: Option<Signed<Verdict>> = match job_id {
                Some(job) if self.equivocations.contains_key(&job) => {
                    self.store.get(Table::Equivocations, job.as_bytes())?
                }
                _ => None,
            };
            let len: usize = std::iter::once(&entry)
                .chain(evidence.as_ref())
                .map(|e| {
                    codec::encode(e)
                        .map(|b| b.len())
                        .unwrap_or(MAX_MESSAGE_BYTES)
                })
                .sum();
            if size + len > MAX_MESSAGE_BYTES - 64 * 1024 && !entries.is_empty() {
                more = true;
                break;
            }
            size += len;
            entries.push(entry);
            entries.extend(evidence);
        }
        Ok(LedgerSyncResponse {
            entries,
            more,
            summary: self.summary(),
        })
    }
}

pub use distributeai_api::{LedgerView, StandingView, VerdictCheck, WorkerCheck};

/// An identity as the API shows it: its PeerId, or its key in hex if it has none.
fn peer_text(key: &PublicKey) -> String {
    key.peer_id()
        .map(|p| p.to_string())
        .unwrap_or_else(|_| key.to_hex())
}

/// A standing as JSON.
pub fn standing_view(key: &PublicKey, s: &Standing, genesis: bool) -> StandingView {
    StandingView {
        peer_id: peer_text(key),
        reputation: (s.reputation * 100.0).round() / 100.0,
        credits: s.credits,
        spendable: s.spendable(),
        genesis,
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
            .map(|(k, s)| standing_view(k, s, self.genesis.contains(k)))
            .collect();
        // Founders that appear in no entry yet still stand where the rules start them.
        for key in &self.genesis {
            if !self.standings.contains_key(key) {
                peers.push(standing_view(key, &self.standings.standing(key), true));
            }
        }
        peers.sort_by(|a, b| {
            b.reputation
                .total_cmp(&a.reputation)
                .then(a.peer_id.cmp(&b.peer_id))
        });
        LedgerView {
            summary: self.summary().to_hex(),
            entries: self.len(),
            peers,
            genesis: self.genesis.iter().map(peer_text).collect(),
        }
    }
}

/// Re-checks a signed verdict from its evidence, as every node does on receiving it, and
/// explains each worker's line: what it is charged or paid, and what it signed that proves it.
/// `equivocation` is the content id of another verdict of the same issuer for the job, if held.
pub fn check_verdict(signed: &Signed<Verdict>, equivocation: Option<Digest>) -> VerdictCheck {
    use distributeai_protocol::{CommittedOutcome, Evidence, VerdictOutcome, WorkerResult};
    let opened = signed.open(&ValidationContext::live().archived());
    let error = opened.as_ref().err().map(|e| e.to_string());
    let verdict = match opened {
        Ok(v) => Ok(v.message),
        Err(_) => signed.decode_unchecked(),
    };
    let mut check = VerdictCheck {
        job_id: String::new(),
        issuer: peer_text(&signed.signer()),
        verdict_id: signed.content_id().to_hex(),
        valid: error.is_none(),
        error,
        outcome: String::new(),
        k: 0,
        n: 0,
        reward: 0,
        workers: Vec::new(),
        draw: String::new(),
        equivocation: equivocation.map(|d| d.to_hex()),
    };
    let Ok(verdict) = verdict else {
        check.outcome = "undecodable".into();
        return check;
    };
    check.job_id = verdict.job.job_id().to_hex();
    if let Ok(job) = verdict.job.decode_unchecked() {
        check.k = job.spec.consensus;
        check.n = job.spec.redundancy;
        check.reward = job.spec.reward;
    }
    check.outcome = match &verdict.outcome {
        VerdictOutcome::Accepted(a) => {
            format!("accepted {} ({})", a.hash.short(), a.end.describe())
        }
        VerdictOutcome::Failed(reason) => format!("failed: {reason}"),
    };
    let job_id = verdict.job.job_id();
    let drawn = usize::from(check.n).min(verdict.draw.candidates.len());
    let picked: Vec<String> = verdict
        .draw
        .chosen(&job_id, drawn)
        .iter()
        .map(peer_text)
        .collect();
    check.draw = format!(
        "among {} (weights in millionths: {:?}), the draw picks {} for the first {}",
        jobflow_count(verdict.draw.candidates.len(), "bid", "bids"),
        verdict.draw.weights,
        if picked.is_empty() {
            "nobody".to_string()
        } else {
            picked.join(", ")
        },
        jobflow_count(drawn, "slot", "slots"),
    );
    for record in &verdict.workers {
        let result = match &record.result {
            WorkerResult::Agreed => "agreed".to_string(),
            WorkerResult::OutputRejected => "output rejected".into(),
            WorkerResult::Disagreed(h) => format!("disagreed ({})", h.short()),
            WorkerResult::Failed(f) => format!("failed: {}", f.reason),
            WorkerResult::Silent => "silent".into(),
        };
        let evidence = match &record.evidence {
            Evidence::Revealed { commitment, reveal } => {
                match (commitment.decode_unchecked(), reveal.decode_unchecked()) {
                    (Ok(c), Ok(r)) => {
                        let opens = matches!(c.outcome, CommittedOutcome::Committed(d)
                            if c.attempt == r.attempt && r.opens(&record.bid.signer(), &d));
                        format!(
                            "its commitment (attempt {}) and its reveal of {} ({}), which {} it",
                            c.attempt,
                            r.result_hash.short(),
                            r.end.describe(),
                            if opens { "opens" } else { "does NOT open" }
                        )
                    }
                    _ => "an undecodable commitment or reveal".into(),
                }
            }
            Evidence::Failed { commitment } => match commitment.decode_unchecked() {
                Ok(c) => match c.outcome {
                    CommittedOutcome::Failed(f) => {
                        format!("its signed failure report: {}", f.reason)
                    }
                    CommittedOutcome::Committed(_) => {
                        "a commitment to a result, NOT a failure report".into()
                    }
                },
                Err(_) => "an undecodable failure report".into(),
            },
            Evidence::Accepted { acceptance } => match acceptance.decode_unchecked() {
                Ok(a) => format!(
                    "its signed acceptance of attempt {} with {} s to commit, deadline {} ms \
                     before the verdict",
                    a.attempt,
                    a.deadline_ms / 1000,
                    i128::from(verdict.issued_at)
                        - i128::from(a.issued_at.saturating_add(a.deadline_ms))
                ),
                Err(_) => "an undecodable acceptance".into(),
            },
        };
        let signed_by = if evidence_signer(&record.evidence) == record.bid.signer() {
            ""
        } else {
            " (signed by ANOTHER key)"
        };
        check.workers.push(WorkerCheck {
            peer_id: peer_text(&record.bid.signer()),
            result,
            paid: record.paid,
            evidence: format!("{evidence}{signed_by}"),
        });
    }
    check
}

use distributeai_jobflow::count as jobflow_count;

fn evidence_signer(evidence: &distributeai_protocol::Evidence) -> PublicKey {
    use distributeai_protocol::Evidence;
    match evidence {
        Evidence::Revealed { reveal, .. } => reveal.signer(),
        Evidence::Failed { commitment } => commitment.signer(),
        Evidence::Accepted { acceptance } => acceptance.signer(),
    }
}

impl Ledger {
    /// The entry held for `job`, re-checked (see [`check_verdict`]); `None` when the ledger
    /// holds none.
    pub fn check(&self, job: &JobId) -> Result<Option<VerdictCheck>, StoreError> {
        let (kept, evidence) = self.verdicts_of(job)?;
        Ok(kept.map(|k| check_verdict(&k, evidence.map(|e| e.content_id()))))
    }
}

/// Most batches fetched from one peer in one sync round (issue 20): 64 pages of at most
/// `MAX_LEDGER_BATCH` (32) entries and about 1 MiB each, 2,048 entries a round; a ledger
/// larger than that is fetched over several rounds from where the last one stopped
/// ([`SyncCursors`]): a node 100,000 entries behind catches up in about 50 rounds of 3 peers,
/// some 10 minutes. Before, a round restarted from the beginning and stopped after 1,000
/// pages, so entries past those were never fetched, and a peer that always answered
/// `more: true` got 1,000 pages of signature checks out of every round.
pub const MAX_PAGES_PER_ROUND: usize = 64;

/// Pages in a row that bring nothing new after which a round ends (the next one resumes
/// there): 8, about 8 MiB, so a peer that serves entries we hold with `more: true` for ever
/// costs at most that much download a round.
pub const MAX_STALE_PAGES: usize = 8;

/// Where the next sync round with each peer starts: the last job id fetched from it, for the
/// peers whose ledger we have not read to the end yet. At most [`SyncCursors::MAX`] peers
/// (about 100 bytes each); past it the oldest cursor is dropped, and that peer's next round
/// starts from the beginning again.
#[derive(Debug, Default)]
pub struct SyncCursors {
    cursors: std::collections::VecDeque<(PeerId, JobId)>,
}

impl SyncCursors {
    /// Most peers with a cursor.
    pub const MAX: usize = 1024;

    /// Where the next round with `peer` starts.
    pub fn start(&self, peer: &PeerId) -> Option<JobId> {
        self.cursors
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, cursor)| *cursor)
    }

    /// Records where a round with `peer` stopped: `None` when it read to the end.
    pub fn stopped(&mut self, peer: PeerId, at: Option<JobId>) {
        self.cursors.retain(|(p, _)| *p != peer);
        if let Some(at) = at {
            if self.cursors.len() >= Self::MAX {
                self.cursors.pop_front();
            }
            self.cursors.push_back((peer, at));
        }
    }
}

/// What one sync round with a peer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRound {
    /// New entries.
    pub added: usize,
    /// Where it stopped when the peer had more than one round's pages; `None` when it read
    /// to the end (or the ledgers matched).
    pub stopped_at: Option<JobId>,
}

/// Pulls the entries `peer` has and we lack, from `start` on, at most
/// [`MAX_PAGES_PER_ROUND`] pages, validating each new entry. Entries already held are
/// skipped without checking a signature; the first entry that does not validate ends the
/// round with an error (an honest peer serves only entries it verified).
pub async fn sync_from(
    network: &Client,
    ledger: &std::sync::RwLock<Ledger>,
    metrics: &Metrics,
    peer: PeerId,
    start: Option<JobId>,
) -> Result<SyncRound, String> {
    let mut after = start;
    let mut added = 0;
    let done = |added| SyncRound {
        added,
        stopped_at: None,
    };
    let mut stale_pages = 0;
    for _ in 0..MAX_PAGES_PER_ROUND {
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
        // Under a read lock only: whether we already match, and which entries are new. The
        // signatures of the new ones are checked with no lock held (the API and the job
        // manager read the ledger meanwhile); the write lock is taken only to insert.
        let fresh: Vec<&Signed<Verdict>> = {
            let held = ledger.read().unwrap_or_else(|p| p.into_inner());
            if batch.summary == held.summary() {
                metrics.ledger_matched(distributeai_protocol::time::now_ms());
                return Ok(done(added));
            }
            batch
                .entries
                .iter()
                .filter(|signed| !held.holds(&signed.content_id()))
                .collect()
        };
        stale_pages = if fresh.is_empty() { stale_pages + 1 } else { 0 };
        metrics.dropped_by(
            "ledger_entry",
            "held",
            (batch.entries.len() - fresh.len()) as u64,
        );
        let mut verified = Vec::with_capacity(fresh.len());
        let mut invalid = None;
        for signed in fresh {
            match signed.open(&ctx) {
                Ok(v) => verified.push(v),
                Err(e) => {
                    metrics.dropped("ledger_entry", e.reason());
                    invalid = Some(e);
                    // An honest node serves only entries it verified: this peer is not,
                    // and gets no more of our signature checks this round.
                    break;
                }
            }
        }
        {
            let mut ledger = ledger.write().unwrap_or_else(|p| p.into_inner());
            for verified in &verified {
                match ledger.insert(verified) {
                    Ok(Inserted::New) => added += 1,
                    Ok(Inserted::Duplicate) => {}
                    Ok(Inserted::Equivocation { job, .. }) => {
                        metrics.dropped("ledger_entry", "equivocation");
                        warn!(%peer, job_id = %job.short(), issuer = %verified.signer.short(), "an issuer signed two verdicts for one job: its weight is now zero");
                    }
                    Err(e) => {
                        metrics.dropped("ledger_entry", "store");
                        warn!(%peer, error = %e, "cannot store a synced ledger entry");
                    }
                }
            }
        }
        if let Some(e) = invalid {
            debug!(%peer, error = %e, "refused an invalid synced ledger entry");
            return Err(format!(
                "served a ledger entry that does not validate ({e}): not synced from again this round"
            ));
        }
        if let Some(last) = batch.entries.last() {
            after = Some(
                last.decode_unchecked()
                    .map(|v| v.job.job_id())
                    .map_err(|e| e.to_string())?,
            );
        }
        if !batch.more || batch.entries.is_empty() {
            let held = ledger.read().unwrap_or_else(|p| p.into_inner());
            if batch.summary == held.summary() {
                metrics.ledger_matched(distributeai_protocol::time::now_ms());
            }
            return Ok(done(added));
        }
        if stale_pages >= MAX_STALE_PAGES {
            break;
        }
    }
    Ok(SyncRound {
        added,
        stopped_at: after,
    })
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
    // A round that took long (a peer timing out) is not followed by a burst of rounds.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursors = SyncCursors::default();
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
            let start = cursors.start(&peer);
            match sync_from(&network, &ledger, &metrics, peer, start).await {
                Ok(round) => {
                    cursors.stopped(peer, round.stopped_at);
                    if round.added > 0 {
                        debug!(%peer, added = round.added, "ledger entries synced");
                    }
                }
                Err(e) => {
                    // Start over with it next time: its pages may have changed.
                    cursors.stopped(peer, None);
                    debug!(%peer, error = %e, "ledger sync failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use distributeai_protocol::time::now_ms;
    use distributeai_protocol::{
        Bid, Draw, Evidence, JobAnnouncement, JobSpec, NodeIdentity, OutputManifest,
        VerdictOutcome, WorkerRecord, WorkerResult,
    };

    use super::*;

    const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn sync_cursors_resume_where_a_round_stopped_and_stay_bounded() {
        let mut cursors = SyncCursors::default();
        let a = PeerId::random();
        assert_eq!(cursors.start(&a), None);
        cursors.stopped(a, Some(JobId([7; 32])));
        assert_eq!(cursors.start(&a), Some(JobId([7; 32])));
        cursors.stopped(a, None);
        assert_eq!(
            cursors.start(&a),
            None,
            "read to the end: start over next time"
        );
        for i in 0..SyncCursors::MAX + 10 {
            cursors.stopped(PeerId::random(), Some(JobId([(i % 250) as u8; 32])));
        }
        assert_eq!(cursors.cursors.len(), SyncCursors::MAX);
    }

    /// A verdict on a 1-of-n job that every worker in `agree` ran with the same result, each
    /// with its signed commitment and the reveal that opens it.
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
        let job_id = job.job_id();
        let manifest = OutputManifest::from_outputs(0, IMAGE, b"ok", &[]).expect("manifest");
        let hash = manifest.result_hash().expect("hash");
        let workers: Vec<WorkerRecord> = agree
            .iter()
            .map(|w| {
                let bid = Bid {
                    job_id,
                    image: None,
                    running_jobs: 0,
                    issued_at: at,
                };
                WorkerRecord {
                    bid: Signed::sign(w, &bid).expect("sign"),
                    evidence: Evidence::revealed_by(w, job_id, 0, &manifest, Digest([7; 32]), at)
                        .expect("sign"),
                    result: WorkerResult::Agreed,
                    paid: 0,
                }
            })
            .collect();
        let draw = Draw::even(
            workers
                .iter()
                .map(|w: &WorkerRecord| w.bid.clone())
                .collect(),
        );
        let v = Verdict {
            job,
            outcome: VerdictOutcome::Accepted(distributeai_protocol::AgreedResult {
                hash,
                end: manifest.end,
                image: IMAGE.into(),
            }),
            workers,
            draw,
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
        let mut forward = Ledger::open(
            Store::open(dirs[0].path()).expect("store"),
            HashSet::new(),
            KnownVerdicts::default(),
        )
        .expect("ledger");
        let mut backward = Ledger::open(
            Store::open(dirs[1].path()).expect("store"),
            HashSet::new(),
            KnownVerdicts::default(),
        )
        .expect("ledger");
        for e in &entries {
            assert_eq!(forward.insert(&open(e)).expect("insert"), Inserted::New);
        }
        for e in entries.iter().rev() {
            backward.insert(&open(e)).expect("insert");
        }
        // `backward` got them oldest first, in canonical order: each applied on top.
        assert!(!backward.is_stale());
        // Issue 20: each backdated entry recomputed the whole ledger under the write lock;
        // now they only mark it stale, and one refresh (off the lock) recomputes.
        assert!(forward.is_stale());
        let before = forward.standing(&a.public_key());
        let shared = std::sync::RwLock::new(forward);
        assert!(refresh(&shared), "a stale ledger is recomputed");
        assert!(!refresh(&shared), "and then no more");
        let forward = shared.into_inner().expect("lock");
        assert_ne!(before, forward.standing(&a.public_key()));
        assert_eq!(forward.summary(), backward.summary());
        assert_eq!(
            forward.standing(&a.public_key()),
            backward.standing(&a.public_key())
        );
        assert_eq!(forward.standing(&b.public_key()).agreed, 3);
        // Reloading from the store gives the same ledger.
        drop(forward);
        let reloaded = Ledger::open(
            Store::open(dirs[0].path()).expect("store"),
            HashSet::new(),
            KnownVerdicts::default(),
        )
        .expect("ledger");
        assert_eq!(reloaded.summary(), backward.summary());
        assert_eq!(reloaded.len(), 6);
    }

    /// Issue 19: two valid verdicts for one job (the submitter signs both). Every node keeps
    /// the same one, the lower content id, whichever it heard first; records the pair; and
    /// the issuer's weight drops to zero. Sync carries the evidence, so ledgers converge.
    #[test]
    fn two_verdicts_for_one_job_keep_the_same_one_everywhere_and_zero_the_issuer() {
        let s = NodeIdentity::from_secret([1; 32]);
        let (a, b) = (
            NodeIdentity::from_secret([2; 32]),
            NodeIdentity::from_secret([3; 32]),
        );
        let now = now_ms();
        let first = verdict(&s, 1, &[&a], now);
        let mut other = first.decode_unchecked().expect("decode");
        // The same job, judged again with a different worker list.
        other.issued_at += 1;
        other.workers.extend(
            verdict(&s, 1, &[&b], now)
                .decode_unchecked()
                .expect("decode")
                .workers,
        );
        other.draw = Draw::even(other.workers.iter().map(|w| w.bid.clone()).collect());
        let second = Signed::sign(&s, &other).expect("sign");
        let lower = first.content_id().min(second.content_id());

        let ledgers: Vec<(tempfile::TempDir, Ledger)> = (0..3)
            .map(|_| {
                let dir = tempfile::tempdir().expect("tempdir");
                let ledger = Ledger::open(
                    Store::open(dir.path()).expect("store"),
                    HashSet::new(),
                    KnownVerdicts::default(),
                )
                .expect("ledger");
                (dir, ledger)
            })
            .collect();
        let [(d1, mut one), (_d2, mut two), (_d3, mut three)] =
            <[_; 3]>::try_from(ledgers).expect("three");
        assert_eq!(one.insert(&open(&first)).expect("insert"), Inserted::New);
        assert!(matches!(
            one.insert(&open(&second)).expect("insert"),
            Inserted::Equivocation { .. }
        ));
        assert_eq!(two.insert(&open(&second)).expect("insert"), Inserted::New);
        assert!(matches!(
            two.insert(&open(&first)).expect("insert"),
            Inserted::Equivocation { .. }
        ));
        assert_eq!(one.summary(), two.summary());
        assert!(
            one.is_stale() && two.is_stale(),
            "an equivocation waits for a refresh"
        );
        one.recompute_now();
        two.recompute_now();
        for ledger in [&one, &two] {
            assert_eq!(ledger.len(), 1);
            let (kept, evidence) = ledger
                .verdicts_of(&first.decode_unchecked().expect("d").job.job_id())
                .expect("read");
            assert_eq!(kept.map(|k| k.content_id()), Some(lower));
            assert!(evidence.is_some());
            assert!(ledger.equivocators().contains(&s.public_key()));
            assert_eq!(
                ledger.standing(&s.public_key()).issuer_weight(),
                0.0,
                "an equivocator's verdicts count for nothing"
            );
        }
        // A third node that heard only one verdict learns the other from a sync page.
        three.insert(&open(&first)).expect("insert");
        assert_ne!(three.summary(), one.summary());
        let page = one
            .page(&LedgerSyncRequest {
                after: None,
                limit: 32,
            })
            .expect("page");
        assert_eq!(page.entries.len(), 2, "the entry and its evidence");
        for entry in &page.entries {
            three.insert(&open(entry)).expect("insert");
        }
        assert_eq!(three.summary(), one.summary());
        // And the evidence survives a restart.
        drop(one);
        let reloaded = Ledger::open(
            Store::open(d1.path()).expect("store"),
            HashSet::new(),
            KnownVerdicts::default(),
        )
        .expect("ledger");
        assert_eq!(reloaded.summary(), two.summary());
        assert!(reloaded.equivocators().contains(&s.public_key()));
    }

    #[test]
    fn pages_cover_every_entry_in_order() {
        let s = NodeIdentity::from_secret([1; 32]);
        let a = NodeIdentity::from_secret([2; 32]);
        let now = now_ms();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ledger = Ledger::open(
            Store::open(dir.path()).expect("store"),
            HashSet::new(),
            KnownVerdicts::default(),
        )
        .expect("ledger");
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
