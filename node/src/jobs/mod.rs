//! The job flow, with no coordinator: the node that submits a job schedules and verifies it,
//! and every node that can run it bids, executes and answers.
//!
//! One task, the [`JobManager`], owns every job this node submitted and every assignment it
//! accepted. It never waits on the network or Docker itself: requests, executions and fetches
//! run as spawned tasks that report back as messages, and a tick drives deadlines. Every change
//! is written to the store before the message that depends on it is sent.
//!
//! - [`submitter`]: announce, collect bids, select, assign, collect commitments, ask for
//!   reveals, decide k-of-n, fetch and verify the output, sign and gossip the verdict.
//! - [`worker`]: bid, accept assignments, execute, commit, reveal, serve the output.

pub mod model;
pub mod output;
mod submitter;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use distributeai_protocol::time::{TimestampMs, now_ms};
use distributeai_protocol::{
    JobAnnouncement, JobId, JobSpec, NodeIdentity, ValidationError, Verified, VerifiedGossip,
};
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::executor::{ExecutionOutcome, Executor, ExecutorError};
use crate::network::{Client, InboundRequest, InboundRequestId, NetworkError, VerifiedResponse};
use crate::peers::PeerTable;
use crate::store::{Store, StoreError, Table};
use model::{Job, JobView, WorkItem};

/// A fault a node can be told to simulate, for tests and demos only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Return a consistent but wrong result (a lying worker).
    WrongResult,
    /// Exit the process in the middle of executing a job.
    CrashMidJob,
    /// Accept assignments and never answer.
    Silent,
}

/// Tunables of the job flow.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Whether this node bids for and runs other nodes' jobs.
    pub worker: bool,
    /// Jobs this node runs at once as a worker.
    pub max_concurrent: usize,
    /// Bidding closes this long after the announcement if enough bids arrived.
    pub bid_window: Duration,
    /// Bids beyond n to wait for before closing the window early (reserves).
    pub reserve_bids: usize,
    /// With at least n bids, close the window once no bid arrived for this long.
    pub bid_quiet: Duration,
    /// After this long with fewer than n bids, run with what there is (at least k) or fail.
    pub bid_wait_max: Duration,
    /// Extra time on top of the job's timeout before a worker counts as silent.
    pub deadline_grace: Duration,
    /// Most replacement workers assigned to one job.
    pub max_reassignments: u32,
    /// Largest output a submitter fetches.
    pub max_output_bytes: u64,
    /// A simulated fault (tests and demos only).
    pub fault: Option<Fault>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            worker: true,
            max_concurrent: 2,
            bid_window: Duration::from_secs(3),
            reserve_bids: 2,
            bid_quiet: Duration::from_millis(750),
            bid_wait_max: Duration::from_secs(60),
            deadline_grace: Duration::from_secs(60),
            max_reassignments: 4,
            max_output_bytes: 512 * 1024 * 1024,
            fault: None,
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The spec is invalid; the message names the field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The job could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job manager has stopped.
    #[error("the node is shutting down")]
    Stopped,
}

/// Counts for `GET /api/v1/stats`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Submitted jobs by status.
    pub jobs: HashMap<String, usize>,
    /// Assignments accepted as a worker.
    pub work_accepted: usize,
    /// Assignments running now.
    pub work_running: usize,
}

/// Messages to the manager: API calls, network input and completions of its own tasks.
pub(crate) enum JobMsg {
    Submit {
        spec: JobSpec,
        reply: oneshot::Sender<Result<JobView, SubmitError>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Option<JobView>>,
    },
    Get {
        id: JobId,
        reply: oneshot::Sender<Option<Job>>,
    },
    List {
        reply: oneshot::Sender<Vec<JobView>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    Gossip {
        author: PeerId,
        message: VerifiedGossip,
    },
    Request {
        peer: PeerId,
        request: InboundRequest,
        id: InboundRequestId,
    },
    Published {
        job: JobId,
        what: Published,
        result: Result<(), NetworkError>,
    },
    AssignAnswer {
        job: JobId,
        worker: distributeai_protocol::PublicKey,
        result: Result<VerifiedResponse, NetworkError>,
    },
    RevealAnswer {
        job: JobId,
        worker: distributeai_protocol::PublicKey,
        result: Result<VerifiedResponse, NetworkError>,
    },
    FetchDone {
        job: JobId,
        worker: distributeai_protocol::PublicKey,
        result: Result<(), submitter::FetchError>,
    },
    BidDecided {
        job: Verified<JobAnnouncement>,
        author: PeerId,
        image_present: bool,
    },
    Executed {
        key: (JobId, u32),
        outcome: Result<ExecutionOutcome, ExecutorError>,
    },
    CommitAnswer {
        key: (JobId, u32),
        result: Result<VerifiedResponse, NetworkError>,
    },
}

/// Which gossip a [`JobMsg::Published`] reports on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Published {
    Announcement,
    Verdict,
}

/// Cloneable handle to the job manager, for the API and the service loop.
#[derive(Clone)]
pub struct JobsHandle {
    tx: mpsc::Sender<JobMsg>,
    outputs_dir: PathBuf,
}

impl std::fmt::Debug for JobsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobsHandle")
    }
}

impl JobsHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> JobMsg) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Submits a job; it is stored and announced.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobView, SubmitError> {
        self.ask(|reply| JobMsg::Submit { spec, reply })
            .await
            .unwrap_or(Err(SubmitError::Stopped))
    }

    /// Cancels a job; `None` if unknown.
    pub async fn cancel(&self, id: JobId) -> Option<JobView> {
        self.ask(|reply| JobMsg::Cancel { id, reply })
            .await
            .flatten()
    }

    /// One job.
    pub async fn get(&self, id: JobId) -> Option<JobView> {
        self.job(id).await.map(|j| j.view())
    }

    /// One job's full record.
    pub async fn job(&self, id: JobId) -> Option<Job> {
        self.ask(|reply| JobMsg::Get { id, reply }).await.flatten()
    }

    /// All submitted jobs, newest first.
    pub async fn list(&self) -> Vec<JobView> {
        self.ask(|reply| JobMsg::List { reply })
            .await
            .unwrap_or_default()
    }

    /// Counts.
    pub async fn stats(&self) -> Stats {
        self.ask(|reply| JobMsg::Stats { reply })
            .await
            .unwrap_or_default()
    }

    /// The folder holding a completed job's verified output.
    pub fn output_dir(&self, id: &JobId) -> PathBuf {
        self.outputs_dir.join(id.to_hex())
    }

    pub(crate) async fn forward(&self, msg: JobMsg) {
        let _ = self.tx.send(msg).await;
    }
}

/// Owns all job state; see the module documentation.
pub struct JobManager {
    identity: NodeIdentity,
    network: Client,
    store: Store,
    executor: Option<Arc<dyn Executor>>,
    config: JobsConfig,
    peers: Arc<std::sync::RwLock<PeerTable>>,
    ledger: Arc<std::sync::RwLock<crate::ledger::Ledger>>,
    metrics: crate::metrics::Metrics,
    events: tokio::sync::broadcast::Sender<crate::api::ApiEvent>,
    outputs_dir: PathBuf,
    tx: mpsc::Sender<JobMsg>,
    rx: mpsc::Receiver<JobMsg>,
    jobs: HashMap<JobId, Job>,
    work: HashMap<(JobId, u32), WorkItem>,
    /// Jobs seen on gossip as a worker, so an assignment can be checked against them.
    announced: HashMap<JobId, Verified<JobAnnouncement>>,
    running: HashMap<(JobId, u32), CancellationToken>,
    /// Earliest time of the next retry of a publish or a commit, per job.
    retry_at: HashMap<(JobId, u32), TimestampMs>,
    /// Agreeing workers whose output could not be fetched for transport reasons, per job:
    /// skipped while another agreeing worker is left, then tried again (issue 10).
    fetch_unreachable: HashMap<JobId, Vec<distributeai_protocol::PublicKey>>,
}

impl JobManager {
    /// Loads stored jobs and assignments; returns the manager and its handle.
    pub fn new(parts: Parts) -> Result<(Self, JobsHandle), StoreError> {
        let Parts {
            identity,
            network,
            store,
            executor,
            config,
            peers,
            ledger,
            metrics,
            data_dir,
            events,
        } = parts;
        let (tx, rx) = mpsc::channel(1024);
        let mut jobs = HashMap::new();
        for mut job in store.all::<Job>(Table::Jobs)? {
            // Requests in flight when the node stopped are gone; the tick sends them again.
            job.fetch_pending = false;
            for e in &mut job.executions {
                e.reveal_pending = false;
                e.assign_pending = false;
            }
            jobs.insert(job.id, job);
        }
        let mut work = HashMap::new();
        for item in store.all::<WorkItem>(Table::Work)? {
            work.insert((item.job_id, item.attempt), item);
        }
        let outputs_dir = data_dir.join("outputs");
        let handle = JobsHandle {
            tx: tx.clone(),
            outputs_dir: outputs_dir.clone(),
        };
        Ok((
            Self {
                identity,
                network,
                store,
                executor,
                config,
                peers,
                ledger,
                metrics,
                events,
                outputs_dir,
                tx,
                rx,
                jobs,
                work,
                announced: HashMap::new(),
                fetch_unreachable: HashMap::new(),
                running: HashMap::new(),
                retry_at: HashMap::new(),
            },
            handle,
        ))
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.resume_work();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.on_message(msg).await,
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        for token in self.running.values() {
            token.cancel();
        }
    }

    async fn on_message(&mut self, msg: JobMsg) {
        match msg {
            JobMsg::Submit { spec, reply } => {
                let _ = reply.send(self.submit(spec));
            }
            JobMsg::Cancel { id, reply } => {
                let _ = reply.send(self.cancel(id));
            }
            JobMsg::Get { id, reply } => {
                let _ = reply.send(self.jobs.get(&id).cloned());
            }
            JobMsg::List { reply } => {
                let mut jobs: Vec<&Job> = self.jobs.values().collect();
                jobs.sort_by_key(|j| std::cmp::Reverse(j.submitted_at));
                let _ = reply.send(jobs.into_iter().map(Job::view).collect());
            }
            JobMsg::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            JobMsg::Gossip { author, message } => self.on_gossip(author, message),
            JobMsg::Request { peer, request, id } => self.on_request(peer, request, id).await,
            JobMsg::Published { job, what, result } => self.on_published(job, what, result),
            JobMsg::AssignAnswer {
                job,
                worker,
                result,
            } => self.on_assign_answer(job, worker, result),
            JobMsg::RevealAnswer {
                job,
                worker,
                result,
            } => self.on_reveal_answer(job, worker, result),
            JobMsg::FetchDone {
                job,
                worker,
                result,
            } => self.on_fetch_done(job, worker, result),
            JobMsg::BidDecided {
                job,
                author,
                image_present,
            } => self.send_bid(job, author, image_present),
            JobMsg::Executed { key, outcome } => self.on_executed(key, outcome),
            JobMsg::CommitAnswer { key, result } => self.on_commit_answer(key, result),
        }
    }

    fn stats(&self) -> Stats {
        let mut jobs = HashMap::new();
        for job in self.jobs.values() {
            let status = serde_json::to_value(job.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *jobs.entry(status).or_insert(0) += 1;
        }
        Stats {
            jobs,
            work_accepted: self.work.len(),
            work_running: self.running.len(),
        }
    }

    fn on_gossip(&mut self, author: PeerId, message: VerifiedGossip) {
        match message {
            VerifiedGossip::Job(job) => self.consider_job(author, job),
            VerifiedGossip::Cancel(cancel) => self.on_cancel_gossip(cancel),
            VerifiedGossip::Verdict(verdict) => self.on_verdict_gossip(verdict),
            VerifiedGossip::Node(_) => {}
        }
    }

    async fn on_request(&mut self, peer: PeerId, request: InboundRequest, id: InboundRequestId) {
        let response = match request {
            InboundRequest::Bid(bid) => self.on_bid(peer, bid),
            InboundRequest::Commit(commit) => self.on_commit(commit),
            InboundRequest::Assign(assignment) => self.on_assignment(assignment),
            InboundRequest::Reveal { job_id, attempt } => {
                self.on_reveal_request(peer, job_id, attempt)
            }
            InboundRequest::FetchOutput {
                job_id,
                offset,
                max_bytes,
            } => self.on_fetch_request(peer, job_id, offset, max_bytes),
            InboundRequest::Invite(job) => self.on_invite(peer, job),
            InboundRequest::LedgerSync(sync) => {
                let page = self
                    .ledger
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .page(&sync);
                match page {
                    Ok(batch) => distributeai_protocol::Response::Ledger(batch),
                    Err(e) => distributeai_protocol::Response::Refused(
                        distributeai_protocol::validate::short_text(&e.to_string()),
                    ),
                }
            }
        };
        if self.network.respond(id, response).await.is_err() {
            warn!("network stopped while answering a request");
        }
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        let ids: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| !j.status.is_final() || (j.verdict.is_some() && !j.verdict_published))
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.drive_job(id, now);
        }
        self.drive_work(now);
    }

    /// Stores a job, then tells API clients it changed.
    fn persist_job(&self, id: &JobId) {
        let Some(job) = self.jobs.get(id) else { return };
        if let Err(e) = self.store.put(Table::Jobs, id.as_bytes(), job) {
            warn!(job_id = %id.short(), error = %e, "cannot store job");
        }
        let _ = self.events.send(crate::api::ApiEvent::Job {
            id: id.to_hex(),
            status: job.status,
        });
    }

    fn persist_work(&self, key: &(JobId, u32)) {
        if let Some(item) = self.work.get(key)
            && let Err(e) = self
                .store
                .put(Table::Work, &WorkItem::key(&key.0, key.1), item)
        {
            warn!(job_id = %key.0.short(), error = %e, "cannot store assignment");
        }
    }
}

/// What the job manager is built from.
pub struct Parts {
    /// This node's identity.
    pub identity: NodeIdentity,
    /// The network handle.
    pub network: Client,
    /// The store.
    pub store: Store,
    /// The executor, for a worker.
    pub executor: Option<Arc<dyn Executor>>,
    /// Tunables.
    pub config: JobsConfig,
    /// Known peers (for operator groups).
    pub peers: Arc<std::sync::RwLock<PeerTable>>,
    /// The ledger (reputation for selection, credits for bidding).
    pub ledger: Arc<std::sync::RwLock<crate::ledger::Ledger>>,
    /// Counters.
    pub metrics: crate::metrics::Metrics,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where job changes are announced to API clients.
    pub events: tokio::sync::broadcast::Sender<crate::api::ApiEvent>,
}

/// Starts the job manager task; returns its handle.
pub fn spawn(
    parts: Parts,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<JobsHandle, StoreError> {
    let (manager, handle) = JobManager::new(parts)?;
    tasks.spawn(manager.run(shutdown));
    Ok(handle)
}
