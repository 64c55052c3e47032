//! The job flow's driver: the node that submits a job schedules and verifies it, and every
//! node that can run it bids, executes and answers, with no coordinator.
//!
//! The decisions are the pure machines of `distributeai-jobflow`: a
//! [`SubmittedJob`](distributeai_jobflow::SubmittedJob) per job this node submitted and a
//! [`WorkItem`](distributeai_jobflow::WorkItem) per job it bid on as a worker. One task, the
//! [`JobManager`], owns them all. It feeds each machine its inputs (API calls, requests and
//! gossip from the network, completions of its own tasks, a 250 ms tick) with the time, the
//! randomness and the node's key, and carries out the effects in order: store the record
//! first, then send, publish, execute, fetch. It never waits on the network or Docker itself:
//! those run as spawned tasks that report back as messages. A submission that cannot be
//! stored is refused; any later record the store refuses is reported at ERROR level and
//! written again on every tick while the job goes on (stopping would leave it without a
//! verdict and its workers without answers).
//!
//! - [`submitter`]: carrying out the submitter's effects, and fetching outputs.
//! - [`worker`]: carrying out the worker's effects: bids, executions, commitments, serving.

pub mod model;
pub mod output;
mod submitter;
mod worker;
pub use worker::{
    MAX_BID_BYTES, MAX_BIDS_HELD, MAX_OUTPUT_SERVES, OUTPUT_SERVE_SLACK_BYTES, SERVES_AT_ONCE,
};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use distributeai_jobflow::submitter as flow;
use distributeai_jobflow::worker as work;
use distributeai_jobflow::{Ctx, Directory, FlowConfig, Level};
use distributeai_protocol::time::now_ms;
use distributeai_protocol::validate::short_text;
use distributeai_protocol::{
    JobAnnouncement, JobId, JobSpec, NodeIdentity, PublicKey, Request, Response, ValidationError,
    Verdict, Verified, VerifiedGossip,
};
use libp2p::PeerId;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use crate::executor::Executor;
use crate::network::{Client, InboundRequest, InboundRequestId};
use crate::peers::PeerTable;
use crate::store::{Store, StoreError, Table};
use model::{Job, JobView, ViewJob, WorkItem};

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
    /// CPUs, in thousandths, that the jobs running at once may ask for together (the node's
    /// offer, `--cpus`); an assignment beyond what is left waits (answered busy).
    pub offered_cpus_millis: u32,
    /// Memory, in MiB, that the jobs running at once may ask for together (`--memory-mb`).
    pub offered_memory_mb: u64,
    /// With fewer than n bids this long after the announcement, the job counts as queued
    /// (workers that could run it are busy) or runs with what there is.
    pub bid_window: Duration,
    /// Bids beyond n taken as reserves as they come (see
    /// `jobflow::FlowConfig::reserve_bids`).
    pub reserve_bids: usize,
    /// With n bids not spread over as many operators as could bid, wait this long after the
    /// n-th for a better spread.
    pub bid_quiet: Duration,
    /// After this long with fewer than n bids, run with what there is (at least k) or fail.
    pub bid_wait_max: Duration,
    /// Extra time on top of the job's timeout before a worker counts as silent.
    pub deadline_grace: Duration,
    /// Most replacement workers assigned to one job.
    pub max_reassignments: u32,
    /// Largest output a submitter fetches.
    pub max_output_bytes: u64,
    /// Least time a worker keeps a run's output for a verdict that has not come, past the
    /// commitment deadline (default 30 minutes; `distributeai_jobflow::worker::OUTPUT_KEEP_MIN_MS`).
    pub output_keep: Duration,
    /// A simulated fault (tests and demos only).
    pub fault: Option<Fault>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            worker: true,
            max_concurrent: 2,
            offered_cpus_millis: u32::MAX,
            offered_memory_mb: u64::MAX,
            bid_window: Duration::from_secs(3),
            reserve_bids: 0,
            bid_quiet: Duration::from_millis(150),
            bid_wait_max: Duration::from_secs(60),
            deadline_grace: Duration::from_secs(60),
            max_reassignments: 4,
            max_output_bytes: 512 * 1024 * 1024,
            output_keep: Duration::from_millis(distributeai_jobflow::worker::OUTPUT_KEEP_MIN_MS),
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
    /// This node's identity cannot pay the job's rewards on top of what it promised to its
    /// jobs in flight (issue 19): workers would not bid.
    #[error(
        "this node cannot pay for the job: reward x n is {owed} credits, it can spend \
         {spendable} and has promised {promised} to jobs in flight (a new identity's grant \
         becomes spendable once identities that count, such as the network's genesis \
         identities, have judged its work; submit with reward 0 until then)"
    )]
    Uncovered {
        /// `reward x n` of the job.
        owed: u64,
        /// What this node's identity can spend, from the ledger.
        spendable: i64,
        /// What it promised to its jobs not decided yet.
        promised: u64,
    },
    /// The job manager has stopped.
    #[error("the node is shutting down")]
    Stopped,
}

/// How long a worker running one of our jobs may stay unreachable after its connection
/// dropped before its slot goes to another worker (issue 12: "say 15 s").
pub const LIVENESS_BOUND: Duration = Duration::from_secs(15);
/// Longest wait for one liveness probe.
const LIVENESS_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between liveness probes.
const LIVENESS_PROBE_PAUSE: Duration = Duration::from_secs(1);

/// Reads a job spec from JSON (a spec file, an API request). The error names the field that
/// is wrong, with its path (`resources.cpus`), and where it is in the text.
pub fn spec_from_json(json: &[u8]) -> Result<JobSpec, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("field `{path}`: {inner}")
        }
    })
}

/// Why a job was not cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No job with that id was submitted here.
    #[error("no such job")]
    Unknown,
    /// It had already ended; nothing was done.
    #[error("the job is already {}", .0.as_str())]
    Finished(model::JobStatus),
    /// The job manager has stopped.
    #[error("the node is shutting down")]
    Stopped,
}

pub use distributeai_api::Stats;

/// Spawns `task` in the current span, so what it logs carries the job's id too.
pub(crate) fn spawn_traced<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(task.in_current_span())
}

/// Every word [`work_phase_word`] gives.
pub const WORK_PHASES: [&str; 7] = [
    "bid",
    "queued",
    "running",
    "waiting",
    "committed",
    "cancelled",
    "done",
];

/// The word `GET /api/v1/stats` and the `distributeai_jobs{role="executed"}` gauge use for
/// where a worker's job is: `bid`, `queued` (assigned while every slot ran), `running`,
/// `waiting` (accepted, not running: after a restart, until it runs again), `committed`,
/// `cancelled` or `done`.
fn work_phase_word(item: &WorkItem, running: bool, queued: bool) -> String {
    match item.phase {
        model::WorkPhase::Bid if queued => "queued",
        model::WorkPhase::Bid => "bid",
        model::WorkPhase::Executing if running => "running",
        model::WorkPhase::Executing => "waiting",
        model::WorkPhase::Committed { .. } => "committed",
        model::WorkPhase::Cancelled => "cancelled",
        model::WorkPhase::Done => "done",
    }
    .to_string()
}

/// What a submitted job's metrics compare before and after a step.
struct JobMarks {
    status: model::JobStatus,
    assigned_at: Option<u64>,
    bids: usize,
    verdict: bool,
}

impl JobMarks {
    fn of(job: &Job) -> Self {
        Self {
            status: job.status(),
            assigned_at: job.times.assigned_at,
            bids: job.bids.len(),
            verdict: job.verdict.is_some(),
        }
    }
}

/// Most messages queued for the job manager; senders wait for room (the swarm's own queue
/// in front of it drops instead, see [`crate::network::EVENT_QUEUE`]).
const JOB_QUEUE: usize = 1024;
/// Most bytes of signed messages queued for the job manager (issue 20: 1,024 messages of up
/// to 1 MiB each could hold 1 GiB): 16 MiB, as the swarm's queue in front of it.
pub const JOB_QUEUE_BYTES: usize = 16 << 20;

/// Messages to the manager: API calls, network input and completions of its own tasks.
pub(crate) enum JobMsg {
    Submit {
        spec: JobSpec,
        reply: oneshot::Sender<Result<JobView, SubmitError>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Result<JobView, CancelError>>,
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
    /// A submitted job's input, from one of the manager's own tasks.
    Job {
        job: JobId,
        input: flow::Input,
    },
    /// A work item's input, from one of the manager's own tasks.
    Work {
        job: JobId,
        input: work::Input,
    },
    /// The bid on a job is decided: made with the image held (`Some(Some(id))`) or to be
    /// pulled (`Some(None)`), or not made (`None`).
    BidDecided {
        job: Verified<JobAnnouncement>,
        image: Option<Option<String>>,
    },
    /// A peer's last connection closed.
    PeerDisconnected {
        peer: PeerId,
    },
    /// A peer that disconnected could not be reached again within [`LIVENESS_BOUND`].
    PeerLost {
        peer: PeerId,
    },
    /// A peer that disconnected answered again.
    PeerBack {
        peer: PeerId,
    },
    /// An execution's task ended (its outcome was sent just before).
    ExecutionEnded {
        job: JobId,
    },
}

/// Cloneable handle to the job manager, for the API and the service loop.
#[derive(Clone)]
pub struct JobsHandle {
    tx: crate::bounded::Sender<JobMsg>,
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

    /// Cancels a job. Errors: the job is unknown, or already finished (completed, failed or
    /// cancelled: nothing is done to it).
    pub async fn cancel(&self, id: JobId) -> Result<JobView, CancelError> {
        self.ask(|reply| JobMsg::Cancel { id, reply })
            .await
            .unwrap_or(Err(CancelError::Stopped))
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

impl crate::bounded::Weigh for JobMsg {
    fn weight(&self) -> usize {
        match self {
            JobMsg::Gossip { message, .. } => crate::bounded::Weigh::weight(message),
            JobMsg::Request { request, .. } => crate::bounded::Weigh::weight(request),
            JobMsg::BidDecided { job, .. } => job.envelope.body().len(),
            _ => 0,
        }
    }
}

/// Owns all job state; see the module documentation.
pub struct JobManager {
    identity: NodeIdentity,
    network: Client,
    store: Store,
    executor: Option<Arc<dyn Executor>>,
    config: JobsConfig,
    flow: FlowConfig,
    peers: Arc<std::sync::RwLock<PeerTable>>,
    ledger: Arc<std::sync::RwLock<crate::ledger::Ledger>>,
    metrics: crate::metrics::Metrics,
    events: tokio::sync::broadcast::Sender<crate::api::ApiEvent>,
    outputs_dir: PathBuf,
    tx: crate::bounded::Sender<JobMsg>,
    rx: crate::bounded::Receiver<JobMsg>,
    /// Randomness for the machines (nonces, salts, selection), seeded from the OS.
    rng: StdRng,
    /// Jobs this node submitted.
    jobs: HashMap<JobId, Job>,
    /// Jobs this node bid on or works on, one item per job.
    work: HashMap<JobId, WorkItem>,
    /// Jobs whose bid is being decided (the image looked up), with their submitter and the
    /// bytes of their signed announcement: held until the decision, so they count against
    /// the bid bound (issue 20: 5,000 invitations each started a lookup holding up to
    /// 512 KiB).
    deciding: HashMap<JobId, distributeai_jobflow::bid_budget::HeldBid<JobId>>,
    /// Executions running now.
    running: HashMap<JobId, CancellationToken>,
    /// Records the store refused, written again on every tick.
    unsaved: std::collections::HashSet<(Table, JobId)>,
    /// Workers that disconnected while running our jobs, being probed.
    probing: std::collections::HashSet<PeerId>,
    /// Assignments answered busy, started as soon as a slot frees.
    deferred: work::DeferredAssignments,
    /// Turns for reads served off this task ([`worker::SERVES_AT_ONCE`]).
    serves: Arc<tokio::sync::Semaphore>,
    /// Bytes of output served per job we ran, against [`worker::MAX_OUTPUT_SERVES`]; an
    /// entry goes with its work item.
    served: HashMap<JobId, u64>,
    /// What each submitter promised to paid jobs in flight, as announced to this node.
    promises: distributeai_jobflow::promises::Promises,
    /// What this node saw itself of the workers on its own jobs, which steers its draws.
    first_hand: distributeai_jobflow::first_hand::FirstHand,
}

/// The node's view of its peers, as the machines ask for it: reputation from the ledger,
/// operators and capabilities from the peer table.
struct NodeDirectory<'a> {
    peers: &'a std::sync::RwLock<PeerTable>,
    ledger: &'a std::sync::RwLock<crate::ledger::Ledger>,
    first_hand: &'a distributeai_jobflow::first_hand::FirstHand,
}

impl Directory for NodeDirectory<'_> {
    /// The ledger's selection weight times what this node saw itself (issue 19): a worker
    /// caught lying on our own jobs is a last resort at once, however slowly its global
    /// standing moves.
    fn weight(&self, worker: &PublicKey) -> f64 {
        let ledger = self.ledger.read().unwrap_or_else(|p| p.into_inner());
        distributeai_verifier::reputation::selection_weight(&ledger.standing(worker))
            * self.first_hand.factor(worker)
    }

    /// The operator a worker belongs to, as far as this node can tell: the IP address its
    /// connection came from.
    fn group(&self, worker: &PublicKey) -> String {
        let Ok(peer) = worker.peer_id() else {
            return worker.to_hex();
        };
        // The IP we saw its connection come from, never the addresses it announced: a
        // Sybil could announce a fresh address each and, as the only member of its group,
        // be drawn first every time (issue 19). Peers we reach only through a relay share
        // one group, so an unknown operator earns no spread bonus.
        let table = self.peers.read().unwrap_or_else(|p| p.into_inner());
        table
            .get(&peer)
            .and_then(|r| r.observed_ip)
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "unobserved".into())
    }

    fn invitees(&self, spec: &JobSpec, exclude: &[PublicKey]) -> Vec<PublicKey> {
        let resources = spec.resources;
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .records()
            .filter(|p| {
                p.accepts_jobs
                    && p.capabilities.as_ref().is_some_and(|c| {
                        distributeai_protocol::Cpus::whole(c.cpus) >= resources.cpus
                            && c.memory_mb >= resources.memory_mb
                            && c.gpus.len() >= resources.gpus as usize
                    })
            })
            .filter_map(|p| p.public_key)
            .filter(|k| !exclude.contains(k))
            .collect()
    }

    /// How many known peers run jobs and how many of those we are connected to: a worker
    /// that cannot reach us cannot deliver its bid.
    fn worker_reach(&self) -> String {
        let table = self.peers.read().unwrap_or_else(|p| p.into_inner());
        let workers: Vec<_> = table
            .list(now_ms())
            .into_iter()
            .filter(|p| p.accepts_jobs)
            .collect();
        let connected = workers.iter().filter(|p| p.connected).count();
        let runs = if workers.len() == 1 { "runs" } else { "run" };
        format!(
            "{} {runs} jobs, {connected} of them connected to this node; \
             see `distributeai peers` for how each is reached",
            distributeai_jobflow::count(workers.len(), "known peer", "known peers"),
        )
    }

    fn spendable(&self, key: &PublicKey) -> i64 {
        let ledger = self.ledger.read().unwrap_or_else(|p| p.into_inner());
        ledger.standing(key).spendable()
    }
}

impl JobsConfig {
    /// The machines' tunables.
    pub fn flow(&self) -> FlowConfig {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        FlowConfig {
            bid_window_ms: ms(self.bid_window),
            reserve_bids: self.reserve_bids,
            bid_quiet_ms: ms(self.bid_quiet),
            bid_wait_max_ms: ms(self.bid_wait_max),
            deadline_grace_ms: ms(self.deadline_grace),
            max_reassignments: self.max_reassignments,
            max_output_bytes: self.max_output_bytes,
            output_keep_ms: ms(self.output_keep),
            pull_allowance_ms: FlowConfig::default().pull_allowance_ms,
        }
    }
}

impl JobManager {
    /// Loads stored jobs and work items; returns the manager and its handle.
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
        let (tx, rx) = crate::bounded::channel(JOB_QUEUE, JOB_QUEUE_BYTES);
        let jobs: HashMap<JobId, Job> = store
            .all::<Job>(Table::Jobs)?
            .into_iter()
            .map(|job| (job.id, job))
            .collect();
        // First-hand evidence is what our own verdicts say: rebuilt from them at start.
        let mut first_hand = distributeai_jobflow::first_hand::FirstHand::new();
        for job in jobs.values() {
            if let Some(Ok(verdict)) = job.verdict.as_ref().map(|v| v.decode_unchecked()) {
                first_hand.observe(&verdict);
            }
        }
        let work = store
            .all::<WorkItem>(Table::Work)?
            .into_iter()
            .map(|item| (item.job_id, item))
            .collect();
        let earlier = store.earlier_format_records();
        if earlier > 0 {
            warn!(
                records = earlier,
                "records stored by an earlier version (wire version 2 or before) are not resumed or read; they stay in the store's older trees"
            );
        }
        let outputs_dir = data_dir.join("outputs");
        let handle = JobsHandle {
            tx: tx.clone(),
            outputs_dir: outputs_dir.clone(),
        };
        let flow = config.flow();
        Ok((
            Self {
                identity,
                network,
                store,
                executor,
                config,
                flow,
                peers,
                ledger,
                metrics,
                events,
                outputs_dir,
                tx,
                rx,
                rng: StdRng::from_seed(rand::random()),
                jobs,
                work,
                deciding: HashMap::new(),
                serves: Arc::new(tokio::sync::Semaphore::new(worker::SERVES_AT_ONCE)),
                running: HashMap::new(),
                unsaved: Default::default(),
                probing: Default::default(),
                deferred: Default::default(),
                served: HashMap::new(),
                promises: Default::default(),
                first_hand,
            },
            handle,
        ))
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Requests in flight when the node stopped are gone: the machines send them again,
        // and re-run executions that were interrupted.
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            self.step_job(id, flow::Input::Restarted);
        }
        let ids: Vec<JobId> = self.work.keys().copied().collect();
        for id in ids {
            self.step_work(id, work::Input::Restarted);
        }
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
                let answer = match self.jobs.get(&id).map(|j| j.status()) {
                    None => Err(CancelError::Unknown),
                    Some(status) if status.is_final() => Err(CancelError::Finished(status)),
                    Some(_) => {
                        self.step_job(id, flow::Input::Cancel);
                        self.jobs
                            .get(&id)
                            .map(Job::view)
                            .ok_or(CancelError::Unknown)
                    }
                };
                let _ = reply.send(answer);
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
            JobMsg::Gossip { author, message } => {
                let _span = tracing::info_span!("gossip", peer_id = %author).entered();
                self.on_gossip(author, message)
            }
            JobMsg::Request { peer, request, id } => {
                let span = tracing::info_span!("request", peer_id = %peer);
                self.on_request(peer, request, id).instrument(span).await
            }
            JobMsg::Job { job, input } => {
                self.step_job(job, input);
            }
            JobMsg::Work { job, input } => {
                self.step_work(job, input);
            }
            JobMsg::BidDecided { job, image } => {
                self.deciding.remove(&job.envelope.job_id());
                if let Some(image) = image {
                    self.bid(job, image);
                }
            }
            JobMsg::PeerDisconnected { peer } => self.probe_if_working(peer),
            JobMsg::PeerBack { peer } => {
                self.probing.remove(&peer);
            }
            JobMsg::PeerLost { peer } => {
                self.probing.remove(&peer);
                for (id, worker) in self.assigned_to(peer) {
                    self.step_job(id, flow::Input::WorkerLost { worker });
                }
            }
            JobMsg::ExecutionEnded { job } => {
                self.running.remove(&job);
                self.start_deferred();
            }
        }
    }

    fn stats(&self) -> Stats {
        let mut jobs = HashMap::new();
        for job in self.jobs.values() {
            *jobs.entry(job.status().as_str().to_string()).or_insert(0) += 1;
        }
        let queued: std::collections::HashSet<&JobId> = self.deferred.jobs().collect();
        let mut work = HashMap::new();
        for (id, item) in &self.work {
            let word = work_phase_word(item, self.running.contains_key(id), queued.contains(id));
            *work.entry(word).or_insert(0) += 1;
        }
        Stats {
            jobs,
            work_accepted: self.work.values().filter(|w| !w.is_bid()).count(),
            work_running: self.running.len(),
            work,
        }
    }

    fn on_gossip(&mut self, author: PeerId, message: VerifiedGossip) {
        match message {
            VerifiedGossip::Job(job) => self.consider_job(author, job),
            VerifiedGossip::Cancel(cancel) => {
                let by = cancel.signer;
                self.promises.settle(&cancel.message.job_id, &by);
                self.step_work(cancel.message.job_id, work::Input::Cancelled { by });
            }
            VerifiedGossip::Verdict(verdict) => {
                self.record_verdict(&verdict);
                let by = verdict.signer;
                self.promises.settle(&verdict.message.job.job_id(), &by);
                self.step_work(verdict.message.job.job_id(), work::Input::Verdict { by });
            }
            VerifiedGossip::Node(_) => {}
        }
    }

    /// Answers request `id` with what `serve` gives (`Err`: the reason to refuse), run on a
    /// blocking thread once one of [`worker::SERVES_AT_ONCE`] turns is free: off the
    /// manager's task, so that reads for peers do not hold up everything else (issue 20).
    fn serve_off_task(
        &self,
        id: InboundRequestId,
        serve: impl FnOnce() -> Result<Response, String> + Send + 'static,
    ) {
        let (turns, network) = (self.serves.clone(), self.network.clone());
        spawn_traced(async move {
            let response = match turns.acquire_owned().await {
                Ok(_turn) => match tokio::task::spawn_blocking(serve).await {
                    Ok(answer) => answer,
                    Err(e) => Err(e.to_string()),
                },
                Err(_) => Err("the node is stopping".into()),
            }
            .unwrap_or_else(|reason| Response::Refused(short_text(&reason)));
            if network.respond(id, response).await.is_err() {
                warn!("network stopped while answering a request");
            }
        });
    }

    async fn on_request(&mut self, peer: PeerId, request: InboundRequest, id: InboundRequestId) {
        let unknown = || Response::Refused("unknown job".into());
        let response = match request {
            InboundRequest::Bid(bid) => {
                let job = bid.message.job_id;
                self.step_job(job, flow::Input::Bid(bid))
                    .unwrap_or_else(unknown)
            }
            InboundRequest::Commit(commit) => {
                let job = commit.message.job_id;
                self.step_job(job, flow::Input::Commit(commit))
                    .unwrap_or_else(unknown)
            }
            InboundRequest::Assign(assignment) => self.on_assignment(assignment),
            InboundRequest::Reveal { job_id, attempt } => match self.submitter_of(&peer, &job_id) {
                Some(from) => self
                    .step_work(job_id, work::Input::RevealRequested { from, attempt })
                    .unwrap_or_else(unknown),
                None => Response::Refused("no such assignment from you".into()),
            },
            InboundRequest::FetchOutput {
                job_id,
                offset,
                max_bytes,
            } => match self.on_fetch_request(peer, job_id, offset, max_bytes) {
                Ok(read) => return self.serve_off_task(id, move || read.read()),
                Err(reason) => Response::Refused(reason),
            },
            InboundRequest::Invite(job) => self.on_invite(peer, job),
            InboundRequest::LedgerSync(sync) => {
                // A page is up to 32 entries of up to ~1 MiB each, read under the ledger's
                // read lock.
                let ledger = self.ledger.clone();
                return self.serve_off_task(id, move || {
                    let ledger = ledger.read().unwrap_or_else(|p| p.into_inner());
                    ledger
                        .page(&sync)
                        .map(Response::Ledger)
                        .map_err(|e| e.to_string())
                });
            }
        };
        if self.network.respond(id, response).await.is_err() {
            warn!("network stopped while answering a request");
        }
    }

    fn on_tick(&mut self) {
        let unsaved: Vec<(Table, JobId)> = self.unsaved.iter().copied().collect();
        for (table, id) in unsaved {
            match table {
                Table::Work => self.save_work(id),
                _ => self.save_job(id),
            }
            if !self.unsaved.contains(&(table, id)) {
                info!(job_id = %id.short(), "stored at last");
            }
        }
        let ids: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.needs_ticks())
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.step_job(id, flow::Input::Tick);
        }
        let ids: Vec<JobId> = self.work.keys().copied().collect();
        for id in ids {
            self.step_work(id, work::Input::Tick);
        }
        self.start_deferred();
    }

    /// The jobs in which `peer` holds a slot it has not answered yet, with its key.
    fn assigned_to(&self, peer: PeerId) -> Vec<(JobId, PublicKey)> {
        self.jobs
            .values()
            .filter(|job| !job.status().is_final())
            .flat_map(|job| {
                job.executions
                    .iter()
                    .filter(move |e| {
                        e.active
                            && e.state == model::ExecutionState::Assigned
                            && e.worker.peer_id().is_ok_and(|p| p == peer)
                    })
                    .map(move |e| (job.id, e.worker))
            })
            .collect()
    }

    /// A worker running one of our jobs disconnected: try to reach it again for
    /// [`LIVENESS_BOUND`], and give up on it then, rather than at its deadline (the job's
    /// timeout plus grace). Any answer, even a refusal, shows it is there.
    fn probe_if_working(&mut self, peer: PeerId) {
        if self.assigned_to(peer).is_empty() || !self.probing.insert(peer) {
            return;
        }
        let network = self.network.clone();
        let tx = self.tx.clone();
        spawn_traced(async move {
            let give_up = tokio::time::Instant::now() + LIVENESS_BOUND;
            let mut give_up = give_up;
            loop {
                if matches!(network.route(peer).await, Ok(Some(_))) {
                    let _ = tx.send(JobMsg::PeerBack { peer }).await;
                    return;
                }
                if tokio::time::Instant::now() >= give_up {
                    // Cut off ourselves, we cannot tell a lost worker from our own outage:
                    // keep trying until we reach someone.
                    let alone = network
                        .info()
                        .await
                        .map_or(true, |i| i.connected.is_empty());
                    if !alone {
                        break;
                    }
                    give_up = tokio::time::Instant::now() + LIVENESS_PROBE_PAUSE;
                }
                let probe = Request::LedgerSync(distributeai_protocol::LedgerSyncRequest {
                    after: None,
                    limit: 1,
                });
                let attempt =
                    tokio::time::timeout(LIVENESS_PROBE_TIMEOUT, network.request(peer, probe));
                if let Ok(Ok(_)) = attempt.await {
                    let _ = tx.send(JobMsg::PeerBack { peer }).await;
                    return;
                }
                tokio::time::sleep(LIVENESS_PROBE_PAUSE).await;
            }
            warn!(%peer, "a worker running our job disconnected and could not be reached again");
            let _ = tx.send(JobMsg::PeerLost { peer }).await;
        });
    }

    /// Runs `f` on the machines with a step context: this node's clock, randomness, key,
    /// view of its peers and tunables.
    fn with_ctx<R>(
        &mut self,
        f: impl FnOnce(&mut HashMap<JobId, Job>, &mut HashMap<JobId, WorkItem>, &mut Ctx<'_>) -> R,
    ) -> R {
        let directory = NodeDirectory {
            peers: &self.peers,
            ledger: &self.ledger,
            first_hand: &self.first_hand,
        };
        let mut ctx = Ctx {
            now: now_ms(),
            identity: &self.identity,
            rng: &mut self.rng,
            directory: &directory,
            config: &self.flow,
        };
        f(&mut self.jobs, &mut self.work, &mut ctx)
    }

    /// Feeds one input to a submitted job's machine and carries out its effects; returns the
    /// reply to the request the input carried, if any.
    fn step_job(&mut self, id: JobId, input: flow::Input) -> Option<Response> {
        // The full job id, on the submitter's lines and the workers' alike, so one job can be
        // followed across nodes' logs.
        let _span = tracing::info_span!("job", job_id = %id.to_hex(), role = "submitter").entered();
        let before = self.jobs.get(&id).map(JobMarks::of)?;
        let effects =
            self.with_ctx(|jobs, _, ctx| jobs.get_mut(&id).map(|job| job.handle(input, ctx)))?;
        self.count_changes(id, before);
        self.carry_out_job(id, effects)
    }

    /// Metrics of a submitted job's step: first bid in, bidding over, verdict signed, final
    /// status reached.
    fn count_changes(&self, id: JobId, before: JobMarks) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        self.metrics
            .bids_received(job.bids.len().saturating_sub(before.bids));
        if before.bids == 0
            && let Some(first) = job.bids.first()
        {
            self.metrics
                .first_bid(first.received_at.saturating_sub(job.submitted_at));
        }
        if before.assigned_at.is_none()
            && let Some(at) = job.times.assigned_at
        {
            self.metrics
                .job_bidding(at.saturating_sub(job.submitted_at));
        }
        if !before.verdict
            && let Some(verdict) = &job.verdict
            && let Ok(verdict) = verdict.decode_unchecked()
        {
            let decided = job.times.decided_at.unwrap_or_else(now_ms);
            self.metrics.verdict(
                match verdict.outcome {
                    distributeai_protocol::VerdictOutcome::Accepted(_) => "accepted",
                    distributeai_protocol::VerdictOutcome::Failed(_) => "failed",
                },
                decided.saturating_sub(job.submitted_at),
            );
        }
        if !before.status.is_final() && job.status().is_final() {
            self.metrics.job_finished(job.status().as_str());
        }
    }

    /// Feeds one input to a work item's machine; as [`Self::step_job`].
    fn step_work(&mut self, id: JobId, input: work::Input) -> Option<Response> {
        let _span = tracing::info_span!("job", job_id = %id.to_hex(), role = "worker").entered();
        let effects =
            self.with_ctx(|_, work, ctx| work.get_mut(&id).map(|item| item.handle(input, ctx)))?;
        self.carry_out_work(id, effects)
    }

    /// Carries out a `Persist`. When the store refuses the write, the node says so and keeps
    /// the job going in memory, writing it again on every tick: stopping would leave the job
    /// without a verdict and its workers without answers.
    fn save_job(&mut self, id: JobId) {
        match self.persist_job(&id) {
            Ok(()) => {
                self.unsaved.remove(&(Table::Jobs, id));
            }
            Err(e) => {
                if self.unsaved.insert((Table::Jobs, id)) {
                    error!(job_id = %id.short(), error = %e, "cannot store the job; it goes on in memory and is written again every tick");
                }
            }
        }
    }

    /// As [`Self::save_job`], for a work item.
    fn save_work(&mut self, id: JobId) {
        match self.persist_work(&id) {
            Ok(()) => {
                self.unsaved.remove(&(Table::Work, id));
            }
            Err(e) => {
                if self.unsaved.insert((Table::Work, id)) {
                    error!(job_id = %id.short(), error = %e, "cannot store the assignment; it goes on in memory and is written again every tick");
                }
            }
        }
    }

    /// Stores a job, then tells API clients it changed.
    fn persist_job(&self, id: &JobId) -> Result<(), StoreError> {
        let Some(job) = self.jobs.get(id) else {
            return Ok(());
        };
        self.store.put(Table::Jobs, id.as_bytes(), job)?;
        let _ = self.events.send(crate::api::ApiEvent::Job {
            id: id.to_hex(),
            status: job.status(),
        });
        Ok(())
    }

    fn persist_work(&self, id: &JobId) -> Result<(), StoreError> {
        match self.work.get(id) {
            Some(item) => self.store.put(Table::Work, id.as_bytes(), item),
            None => Ok(()),
        }
    }

    /// Adds a verdict (already verified at the edge) to the ledger.
    fn record_verdict(&mut self, verdict: &Verified<Verdict>) {
        let result = self
            .ledger
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(verdict);
        match result {
            Ok(crate::ledger::Inserted::Equivocation { job, replaced }) => {
                self.metrics.dropped("verdict", "equivocation");
                warn!(job_id = %job.short(), issuer = %verdict.signer.short(), replaced, "an issuer signed two verdicts for one job: the lower content id is kept, its weight is now zero");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot store a ledger entry"),
        }
    }
}

/// Logs a machine's log effect at its level.
fn log(id: &JobId, level: Level, text: &str) {
    match level {
        Level::Debug => debug!(job_id = %id.short(), "{text}"),
        Level::Info => info!(job_id = %id.short(), "{text}"),
        Level::Warn => warn!(job_id = %id.short(), "{text}"),
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

#[cfg(test)]
mod tests {
    use super::spec_from_json;

    #[test]
    fn a_spec_that_does_not_parse_names_the_field() {
        // Issue 12's input: a fractional CPU count in a spec file is now a valid spec...
        let spec = spec_from_json(
            br#"{"image": "distributeai/toolbox:local", "command": ["true"],
                 "resources": {"cpus": 0.5, "memory_mb": 64}}"#,
        )
        .expect("half a CPU");
        assert_eq!(spec.resources.cpus.millis(), 500);
        // ...and one it cannot read names the field and the line.
        let err = spec_from_json(
            br#"{"image": "distributeai/toolbox:local", "command": ["true"],
                 "resources": {"cpus": 0.0001, "memory_mb": 64}}"#,
        )
        .expect_err("more than three decimals");
        assert!(err.starts_with("field `resources.cpus`:"), "{err}");
        assert!(err.contains("three decimals"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = spec_from_json(br#"{"image": "x", "comand": []}"#).expect_err("a typo");
        assert!(err.contains("comand"), "{err}");
        let spec =
            spec_from_json(br#"{"image": "distributeai/toolbox:local", "command": ["true"]}"#)
                .expect("a minimal spec");
        assert_eq!(spec.command, ["true"]);
    }
}
