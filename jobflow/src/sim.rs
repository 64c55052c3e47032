//! A deterministic simulator of a whole network, built from the real machines.
//!
//! Submitters run [`SubmittedJob`]s and workers run [`WorkItem`]s, exchanging real signed
//! protocol messages that every receiver opens and validates as the node's edge does. One
//! seeded scheduler (a queue of timed events, ties broken by insertion order) decides
//! everything else:
//!
//! - messages are delayed at random, lost, duplicated (and so reordered);
//! - requests whose request or answer is lost time out, as libp2p's request-response does;
//! - some workers lie (alone, or colluding on one wrong result), stay silent, are slow, or
//!   crash and restart from their persisted records; submitters crash and restart too;
//! - partitions cut groups of nodes off and heal;
//! - every node's clock is skewed, within the protocol's bound;
//! - executions take simulated time and end in success, the job's own failure, or a timeout.
//!
//! The same seed replays exactly the same run. [`run`] returns the run's [`Report`] with the
//! [`invariants`](crate::invariants) it broke, and with a readable trace when asked.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use distributeai_protocol::codec;
use distributeai_protocol::limits::MAX_CLOCK_SKEW_MS;
use distributeai_protocol::{
    Diagnostics, Digest, GossipMessage, JobEnd, JobId, JobSpec, NodeIdentity, OutputManifest,
    PublicKey, Request, Resources, Response, ResultHash, Signed, ValidationContext,
};
use distributeai_verifier::reputation;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::invariants::{self, CommitmentSigned, JobFacts, SignedVerdict, Trace, Violation};
use crate::submitter::{self as flow, FetchResult, Gossip, Phase, RevealAnswer, SubmittedJob};
use crate::worker::{self as work, Executed, WorkItem};
use crate::{Answer, Ctx, Directory, FlowConfig, Level, short};

/// How often every node's machines get a tick (simulated ms).
pub const TICK_MS: u64 = 250;
/// After this long without an answer a request fails in transit (simulated ms).
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long after losing a worker a submitter gives up on it (the node's `LIVENESS_BOUND`).
const LIVENESS_MS: u64 = 15_000;
/// A quorum of honest commitments this long before expiry leaves time to reveal (one grace
/// period) and fetch, whatever partitions and loss do (simulated ms).
const LIVENESS_MARGIN_MS: u64 = 60_000;
/// Simulated wall-clock time at the start of a run (ms since the epoch).
const EPOCH_MS: u64 = 1_800_000_000_000;

/// How a worker behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs jobs and reports what it got.
    Honest,
    /// Reports a consistent wrong result; liars of one group report the same one (collusion).
    Liar {
        /// Its group.
        group: u8,
    },
    /// Accepts assignments and never runs them.
    Silent,
    /// Honest, but runs everything twice as slowly.
    Slow,
    /// Honest, but crashes now and then and restarts from its stored records.
    Crashy,
    /// Reports the honest result but serves output that does not match it.
    BadOutput,
    /// Runs the job faithfully, but its tag for the job's image points at another image
    /// (issue 12): the same output from another image id, which must never agree with the
    /// honest result. Counted with the liars: several of them agree with each other.
    OtherImage,
}

impl Behaviour {
    fn honest(self) -> bool {
        matches!(
            self,
            Behaviour::Honest | Behaviour::Slow | Behaviour::Crashy
        )
    }
}

/// How a job's run ends, whoever runs it. Every one is a result the workers agree on: the
/// job's own failures are decided like its output (issue 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nature {
    /// Exits 0 after this many ms.
    Success(u64),
    /// Exits 1 after this many ms.
    JobFailure(u64),
    /// Runs past its timeout and is killed.
    Timeout,
    /// Its main process is killed for memory after this many ms.
    OutOfMemory(u64),
}

/// One job to submit.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// Index of the submitting node.
    pub submitter: usize,
    /// When (simulated ms from the start).
    pub at: u64,
    /// The spec.
    pub spec: JobSpec,
    /// How its runs end.
    pub nature: Nature,
    /// When its submitter cancels it (simulated ms from the start), if it does.
    pub cancel_at: Option<u64>,
}

/// The shape of one run, drawn from its seed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The seed: the same seed gives the same run.
    pub seed: u64,
    /// Submitting nodes (they run no jobs).
    pub submitters: usize,
    /// Worker nodes and how each behaves.
    pub workers: Vec<Behaviour>,
    /// The jobs.
    pub jobs: Vec<JobPlan>,
    /// Chance that a message is lost.
    pub loss: f64,
    /// Chance that a message is delivered twice.
    pub duplicate: f64,
    /// Longest delivery delay (ms).
    pub max_delay_ms: u64,
    /// Partitions: start, duration (ms) and the nodes cut off.
    pub partitions: Vec<(u64, u64, Vec<usize>)>,
    /// Submitter crashes: node, at, down for (ms).
    pub submitter_crashes: Vec<(usize, u64, u64)>,
    /// Each node's clock offset (ms), within the protocol's bound.
    pub skews: Vec<i64>,
    /// Executions each worker runs at once.
    pub slots: usize,
    /// The machines' tunables.
    pub flow: FlowConfig,
}

impl Settings {
    /// A run drawn from `seed`: a few submitters and workers, some of them faulty, a batch of
    /// jobs, and the network's faults.
    pub fn random(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_5eed);
        let submitters = rng.random_range(1..=3);
        let worker_count = rng.random_range(3..=8);
        let colluding = rng.random_bool(0.3);
        let workers: Vec<Behaviour> = (0..worker_count)
            .map(|i| match rng.random_range(0..100) {
                0..60 => Behaviour::Honest,
                60..70 => Behaviour::Liar {
                    group: if colluding { 0 } else { i as u8 + 1 },
                },
                70..76 => Behaviour::Silent,
                76..78 => Behaviour::BadOutput,
                78..80 => Behaviour::OtherImage,
                80..89 => Behaviour::Slow,
                _ => Behaviour::Crashy,
            })
            .collect();
        let job_count = rng.random_range(2..=8);
        let jobs = (0..job_count)
            .map(|i| {
                let timeout_s = rng.random_range(10..=30u32);
                let redundancy = rng.random_range(1..=3u8);
                let consensus = rng.random_range(1..=redundancy);
                let nature = match rng.random_range(0..100) {
                    0..80 => Nature::Success(rng.random_range(500..=u64::from(timeout_s) * 300)),
                    80..88 => Nature::JobFailure(rng.random_range(100..=2_000)),
                    88..92 => Nature::OutOfMemory(rng.random_range(100..=2_000)),
                    _ => Nature::Timeout,
                };
                let at = rng.random_range(0..30_000);
                JobPlan {
                    submitter: rng.random_range(0..submitters),
                    at,
                    cancel_at: rng
                        .random_bool(0.1)
                        .then(|| at + rng.random_range(0..20_000)),
                    spec: JobSpec {
                        image: format!("sim/job-{i}"),
                        image_digest: None,
                        command: vec!["run".into(), i.to_string()],
                        env: Default::default(),
                        resources: Resources {
                            cpus: distributeai_protocol::Cpus::whole(1),
                            memory_mb: 64,
                            gpus: 0,
                        },
                        timeout_s,
                        redundancy,
                        consensus,
                        reward: 1,
                        network: false,
                    },
                    nature,
                }
            })
            .collect();
        let nodes = submitters + worker_count;
        let partitions = (0..rng.random_range(0..=2))
            .map(|_| {
                let cut = (0..nodes).filter(|_| rng.random_bool(0.3)).collect();
                (
                    rng.random_range(0..90_000),
                    rng.random_range(1_000..=10_000),
                    cut,
                )
            })
            .collect();
        let submitter_crashes = (0..rng.random_range(0..=2))
            .map(|_| {
                (
                    rng.random_range(0..submitters),
                    rng.random_range(1_000..350_000),
                    rng.random_range(500..=40_000),
                )
            })
            .collect();
        // Pairwise differences up to 120 s (issue 12's skewed worker), inside the protocol's
        // bound of 300 s.
        let bound = (MAX_CLOCK_SKEW_MS / 5) as i64;
        let skews = (0..nodes)
            .map(|_| rng.random_range(-bound..=bound))
            .collect();
        Self {
            seed,
            submitters,
            workers,
            jobs,
            loss: rng.random_range(0.0..0.15),
            duplicate: rng.random_range(0.0..0.1),
            max_delay_ms: rng.random_range(5..=800),
            partitions,
            submitter_crashes,
            skews,
            slots: rng.random_range(1..=2),
            flow: FlowConfig {
                bid_window_ms: 3_000,
                reserve_bids: rng.random_range(0..=2),
                bid_quiet_ms: if rng.random_bool(0.5) { 150 } else { 750 },
                bid_wait_max_ms: 20_000,
                deadline_grace_ms: 20_000,
                max_reassignments: 4,
                max_output_bytes: 1 << 20,
                output_keep_ms: crate::worker::OUTPUT_KEEP_MIN_MS,
                pull_allowance_ms: 20_000,
            },
        }
    }
}

impl Settings {
    /// A burst (issue 12): one submitter sends `jobs` jobs (n=2, k=2) at the same moment to
    /// `workers` honest workers with `slots` slots each, far more than the free slots, on a
    /// network that delivers everything. Every job must complete: none may fail for
    /// capacity.
    pub fn burst(seed: u64, jobs: usize, workers: usize, slots: usize) -> Self {
        let mut settings = Self::random(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        settings.submitters = 1;
        settings.workers = vec![Behaviour::Honest; workers];
        settings.loss = 0.0;
        settings.duplicate = 0.0;
        settings.max_delay_ms = rng.random_range(1..=50);
        settings.partitions.clear();
        settings.submitter_crashes.clear();
        settings.skews = vec![0; 1 + workers];
        settings.slots = slots;
        settings.jobs = (0..jobs)
            .map(|i| JobPlan {
                submitter: 0,
                at: 0,
                cancel_at: None,
                spec: JobSpec {
                    redundancy: 2,
                    consensus: 2,
                    timeout_s: 30,
                    command: vec!["burst".into(), i.to_string()],
                    image: format!("sim/burst-{i}"),
                    ..settings.jobs[0].spec.clone()
                },
                nature: Nature::Success(rng.random_range(500..=1_500)),
            })
            .collect();
        settings
    }
}

/// What a run did and broke.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Jobs submitted.
    pub jobs: usize,
    /// Of which completed (k agreed, output verified).
    pub completed: usize,
    /// Events processed (deliveries, ticks, executions, faults): the schedule's length.
    pub events: u64,
    /// Messages sent (before loss).
    pub messages: u64,
    /// The broken invariants.
    pub violations: Vec<Violation>,
    /// A readable trace, when asked for.
    pub trace: Vec<String>,
}

#[derive(Debug, Clone)]
enum Msg {
    Gossip(GossipMessage),
    Request {
        id: u64,
        request: Request,
    },
    Response {
        id: u64,
        response: Response,
    },
    Fetch {
        id: u64,
        job: JobId,
        agreed: ResultHash,
    },
    FetchAnswer {
        id: u64,
        result: FetchResult,
    },
}

#[derive(Debug, Clone)]
enum Event {
    Submit(usize),
    Cancel(usize),
    Tick(usize),
    Deliver {
        from: usize,
        to: usize,
        msg: Msg,
    },
    Timeout {
        id: u64,
    },
    Published {
        node: usize,
        job: JobId,
        what: Gossip,
    },
    ExecDone {
        node: usize,
        job: JobId,
        generation: u64,
        executed: Executed,
    },
    Crash {
        node: usize,
        down_for: u64,
    },
    Restart(usize),
    /// A submitter's liveness probe of a worker it lost the connection to, `LIVENESS_MS`
    /// later (the node driver's `LIVENESS_BOUND`).
    Probe(usize),
}

/// What to tell a machine when a request is answered or times out.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    Assign { job: JobId, worker: PublicKey },
    Reveal { job: JobId, worker: PublicKey },
    Fetch { job: JobId, worker: PublicKey },
    Commit { job: JobId },
    Bid { job: JobId },
    Nothing,
}

struct Pending {
    node: usize,
    generation: u64,
    waiting: Waiting,
}

struct Node {
    identity: NodeIdentity,
    key: PublicKey,
    behaviour: Option<Behaviour>,
    skew: i64,
    up: bool,
    generation: u64,
    rng: StdRng,
    jobs: BTreeMap<JobId, SubmittedJob>,
    work: BTreeMap<JobId, WorkItem>,
    stored_jobs: BTreeMap<JobId, SubmittedJob>,
    stored_work: BTreeMap<JobId, WorkItem>,
    standings: reputation::Book<PublicKey>,
    ledger: BTreeMap<JobId, Digest>,
    running: BTreeSet<JobId>,
    /// Assignments it answered busy, oldest first, started as slots free (in memory only,
    /// like the node's).
    deferred: work::DeferredAssignments,
    /// What each submitter promised to jobs in flight, as this node saw them.
    promises: crate::promises::Promises,
    /// What this node saw itself of the workers on its own jobs.
    first_hand: crate::first_hand::FirstHand,
    /// Jobs it held when it crashed: its runs of them are not counted as done correctly.
    crashed_holding: BTreeSet<JobId>,
    down_since: Option<u64>,
    downtime: Vec<(u64, u64)>,
}

/// What a simulated node knows of the others.
struct SimDirectory<'a> {
    standings: &'a reputation::Book<PublicKey>,
    first_hand: &'a crate::first_hand::FirstHand,
    workers: &'a [PublicKey],
}

impl Directory for SimDirectory<'_> {
    fn weight(&self, worker: &PublicKey) -> f64 {
        reputation::selection_weight(&self.standings.standing(worker))
            * self.first_hand.factor(worker)
    }
    fn group(&self, worker: &PublicKey) -> String {
        worker.to_hex()
    }
    fn invitees(&self, _spec: &JobSpec, exclude: &[PublicKey]) -> Vec<PublicKey> {
        self.workers
            .iter()
            .filter(|w| !exclude.contains(w))
            .copied()
            .collect()
    }
    fn worker_reach(&self) -> String {
        format!("{} workers in the simulation", self.workers.len())
    }
    fn spendable(&self, key: &PublicKey) -> i64 {
        self.standings
            .get(key)
            .copied()
            .unwrap_or_default()
            .spendable()
    }
}

struct Sim {
    settings: Settings,
    now: u64,
    seq: u64,
    queue: BinaryHeap<std::cmp::Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Event>>,
    rng: StdRng,
    nodes: Vec<Node>,
    worker_keys: Vec<PublicKey>,
    pending: BTreeMap<u64, Pending>,
    next_request: u64,
    trace: Trace,
    job_ids: BTreeMap<JobId, usize>,
    log: Option<Vec<String>>,
    processed: u64,
    messages: u64,
    /// Partitions in force: the nodes cut off from the others.
    cut: Vec<BTreeSet<usize>>,
}

/// Runs one simulation; with `trace`, the report carries a line per event.
pub fn run(settings: Settings, trace: bool) -> Report {
    let mut sim = Sim::new(settings, trace);
    sim.run();
    sim.report()
}

/// The image id every simulated worker holds.
const SIM_IMAGE: &str = "sha256:5151515151515151515151515151515151515151515151515151515151515151";

/// The image id an [`Behaviour::OtherImage`] worker holds under the same reference.
const OTHER_IMAGE: &str = "sha256:6262626262626262626262626262626262626262626262626262626262626262";

/// The manifest of a run that exited with `code` after printing `stdout`.
fn manifest_of(code: i64, stdout: &str) -> OutputManifest {
    OutputManifest::from_outputs(code, SIM_IMAGE, stdout.as_bytes(), &[])
        .expect("a one-line stdout and no files make a valid manifest")
}

/// What an honest run of `job` produces.
fn honest_manifest(job: &JobPlan) -> OutputManifest {
    match job.nature {
        Nature::Success(_) => manifest_of(0, &format!("{} ok", job.spec.image)),
        Nature::JobFailure(_) => manifest_of(1, &format!("{} failed", job.spec.image)),
        Nature::Timeout => OutputManifest::without_output(JobEnd::TimedOut, SIM_IMAGE),
        Nature::OutOfMemory(_) => OutputManifest::without_output(JobEnd::OutOfMemory, SIM_IMAGE),
    }
}

impl Sim {
    fn new(settings: Settings, trace: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let count = settings.submitters + settings.workers.len();
        let nodes: Vec<Node> = (0..count)
            .map(|i| {
                let identity = NodeIdentity::from_secret(rng.random());
                let key = identity.public_key();
                Node {
                    identity,
                    key,
                    behaviour: i
                        .checked_sub(settings.submitters)
                        .map(|w| settings.workers[w]),
                    skew: settings.skews[i],
                    up: true,
                    generation: 0,
                    rng: StdRng::seed_from_u64(rng.random()),
                    jobs: BTreeMap::new(),
                    work: BTreeMap::new(),
                    stored_jobs: BTreeMap::new(),
                    stored_work: BTreeMap::new(),
                    standings: Default::default(),
                    ledger: BTreeMap::new(),
                    running: BTreeSet::new(),
                    deferred: Default::default(),
                    promises: Default::default(),
                    first_hand: Default::default(),
                    crashed_holding: BTreeSet::new(),
                    down_since: None,
                    downtime: Vec::new(),
                }
            })
            .collect();
        // The simulated network is an established one: its submitters count, and their
        // credits cover every batch, so bids are never withheld for pay (issue 19's credit
        // rules are the ledger's, tested in the verifier; promises are tracked here as on a
        // node). Seeded the same in every node's book, so all nodes still agree.
        let mut nodes = nodes;
        let submitter_keys: Vec<PublicKey> =
            nodes[..settings.submitters].iter().map(|n| n.key).collect();
        for node in &mut nodes {
            for key in &submitter_keys {
                node.standings.seed(
                    *key,
                    reputation::Standing {
                        history: 20.0,
                        credits: 1_000_000,
                        ..Default::default()
                    },
                );
            }
        }
        let worker_keys = nodes[settings.submitters..].iter().map(|n| n.key).collect();
        let mut sim = Self {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            rng,
            nodes,
            worker_keys,
            pending: BTreeMap::new(),
            next_request: 0,
            trace: Trace::default(),
            job_ids: BTreeMap::new(),
            log: trace.then(Vec::new),
            processed: 0,
            messages: 0,
            cut: Vec::new(),
            settings,
        };
        for node in 0..count {
            let first = sim.rng.random_range(0..TICK_MS);
            sim.schedule(first, Event::Tick(node));
        }
        for (i, job) in sim.settings.jobs.clone().iter().enumerate() {
            sim.schedule(job.at, Event::Submit(i));
            if let Some(at) = job.cancel_at {
                sim.schedule(at, Event::Cancel(i));
            }
        }
        for (node, at, down_for) in sim.settings.submitter_crashes.clone() {
            sim.schedule(at, Event::Crash { node, down_for });
        }
        sim
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Some(event));
        self.queue
            .push(std::cmp::Reverse((at, self.seq, self.events.len() - 1)));
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if let Some(log) = &mut self.log {
            log.push(format!("{:>9.3}s {}", self.now as f64 / 1000.0, text()));
        }
    }

    fn local_now(&self, node: usize) -> u64 {
        (EPOCH_MS + self.now).saturating_add_signed(self.nodes[node].skew)
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.cut
            .iter()
            .any(|side| side.contains(&a) != side.contains(&b))
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        self.messages += 1;
        if self.rng.random_bool(self.settings.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.settings.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(1..=self.settings.max_delay_ms);
            self.schedule(
                self.now + delay,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn request(&mut self, from: usize, to: usize, request: Request, waiting: Waiting) {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(
            id,
            Pending {
                node: from,
                generation: self.nodes[from].generation,
                waiting,
            },
        );
        self.schedule(self.now + REQUEST_TIMEOUT_MS, Event::Timeout { id });
        self.send(from, to, Msg::Request { id, request });
    }

    fn node_of(&self, key: &PublicKey) -> Option<usize> {
        self.nodes.iter().position(|n| n.key == *key)
    }

    fn run(&mut self) {
        let last_expiry = self
            .settings
            .jobs
            .iter()
            .map(|j| {
                let timeout = u64::from(j.spec.timeout_s) * 1000;
                j.at + self.settings.flow.bid_wait_max_ms
                    + (timeout + self.settings.flow.deadline_grace_ms)
                        * (u64::from(self.settings.flow.max_reassignments) + 2)
            })
            .max()
            .unwrap_or(0);
        let hard_end = last_expiry + 2 * MAX_CLOCK_SKEW_MS / 5 + 120_000;
        while let Some(std::cmp::Reverse((at, _, index))) = self.queue.pop() {
            if at > hard_end {
                break;
            }
            self.now = at;
            let Some(event) = self.events[index].take() else {
                continue;
            };
            self.processed += 1;
            self.on_event(event);
            if self.processed.is_multiple_of(512) && self.settled() {
                break;
            }
        }
    }

    /// Every job submitted, decided and its decision published, and every node up.
    fn settled(&self) -> bool {
        self.job_ids.len() == self.settings.jobs.len()
            && self.nodes.iter().all(|n| n.up)
            && self
                .nodes
                .iter()
                .all(|n| n.jobs.values().all(|j| !j.needs_ticks()))
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Submit(i) => self.submit(i),
            Event::Cancel(i) => {
                let node = self.settings.jobs[i].submitter;
                let job = self
                    .job_ids
                    .iter()
                    .find(|(_, j)| **j == i)
                    .map(|(id, _)| *id);
                match job {
                    Some(id) if self.nodes[node].up => {
                        self.note(|| format!("node {node} cancels {}", id.short()));
                        self.step_job(node, id, flow::Input::Cancel);
                    }
                    // Not submitted yet, or the node is down: the user tries again.
                    _ => self.schedule(self.now + 1_000, Event::Cancel(i)),
                }
            }
            Event::Tick(node) => {
                if self.nodes[node].up {
                    let ids: Vec<JobId> = self.nodes[node]
                        .jobs
                        .iter()
                        .filter(|(_, j)| j.needs_ticks())
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.step_job(node, id, flow::Input::Tick);
                    }
                    let ids: Vec<JobId> = self.nodes[node].work.keys().copied().collect();
                    for id in ids {
                        self.step_work(node, id, work::Input::Tick);
                    }
                    self.start_deferred(node);
                }
                self.schedule(self.now + TICK_MS, Event::Tick(node));
            }
            Event::Deliver { from, to, msg } => {
                if !self.nodes[to].up || self.partitioned(from, to) {
                    return;
                }
                self.deliver(from, to, msg);
            }
            Event::Timeout { id } => {
                if let Some(p) = self.pending.remove(&id) {
                    self.answer(p, Err("request timed out".into()));
                }
            }
            Event::Published { node, job, what } => {
                if self.nodes[node].up {
                    let input = flow::Input::Published {
                        what,
                        result: Ok(()),
                    };
                    self.step_job(node, job, input);
                }
            }
            Event::ExecDone {
                node,
                job,
                generation,
                executed,
            } => {
                let n = &mut self.nodes[node];
                if !n.up || n.generation != generation || !n.running.remove(&job) {
                    return;
                }
                self.note(|| format!("node {node} executed {}: {executed:?}", job.short()));
                self.step_work(node, job, work::Input::Executed(executed));
                self.start_deferred(node);
            }
            Event::Crash { node, down_for } => self.crash(node, down_for),
            Event::Restart(node) => self.restart(node),
            Event::Probe(worker) => self.probe(worker),
        }
        self.apply_partitions();
    }

    fn apply_partitions(&mut self) {
        let now = self.now;
        let cut: Vec<BTreeSet<usize>> = self
            .settings
            .partitions
            .iter()
            .filter(|(at, len, _)| *at <= now && now < at + len)
            .map(|(_, _, cut)| cut.iter().copied().collect())
            .collect();
        if cut.len() > self.cut.len() {
            // Connections across the new cut drop: submitters probe the workers they lost.
            for worker in self.settings.submitters..self.nodes.len() {
                self.schedule(now + LIVENESS_MS, Event::Probe(worker));
            }
        }
        self.cut = cut;
    }

    /// Every submitter that still cannot reach `worker` gives up on its runs.
    fn probe(&mut self, worker: usize) {
        let key = self.nodes[worker].key;
        for submitter in 0..self.settings.submitters {
            let lost = !self.nodes[worker].up || self.partitioned(submitter, worker);
            if !lost || !self.nodes[submitter].up {
                continue;
            }
            let jobs: Vec<JobId> = self.nodes[submitter]
                .jobs
                .iter()
                .filter(|(_, j)| {
                    j.execution(&key).is_some_and(|e| {
                        e.active && e.state == crate::submitter::ExecutionState::Assigned
                    })
                })
                .map(|(id, _)| *id)
                .collect();
            for id in jobs {
                self.note(|| {
                    format!(
                        "node {submitter} gives up on node {worker} for {}",
                        id.short()
                    )
                });
                self.step_job(submitter, id, flow::Input::WorkerLost { worker: key });
            }
        }
    }

    fn submit(&mut self, i: usize) {
        let plan = self.settings.jobs[i].clone();
        let node = plan.submitter;
        if !self.nodes[node].up {
            // The user tries again once the node is back.
            self.schedule(self.now + 1_000, Event::Submit(i));
            return;
        }
        let submitted = self.with_ctx(node, |_, _, ctx| SubmittedJob::submit(plan.spec, ctx));
        let (job, effects) = match submitted {
            Ok(done) => done,
            Err(e) => panic!("the simulator's spec is invalid: {e}"),
        };
        let id = job.id;
        self.job_ids.insert(id, i);
        self.nodes[node].jobs.insert(id, job);
        self.note(|| format!("node {node} submits job {} ({i})", id.short()));
        self.carry_out_job(node, id, effects);
    }

    /// Runs `f` on a node's machines with its step context: its clock, rng, key and ledger.
    /// Ticks a copy of every work item, in memory and stored, past its job's life: those that
    /// still hold an output folder or are not forgotten ([`invariants::outputs_released`]).
    fn held_after_life(&mut self) -> Vec<(JobId, PublicKey)> {
        let mut held = Vec::new();
        for node in 0..self.nodes.len() {
            let n = &mut self.nodes[node];
            let mut items: BTreeMap<JobId, WorkItem> = n.stored_work.clone();
            items.extend(n.work.iter().map(|(id, item)| (*id, item.clone())));
            let directory = SimDirectory {
                standings: &n.standings,
                first_hand: &n.first_hand,
                workers: &self.worker_keys,
            };
            for (id, mut item) in items {
                let mut ctx = Ctx {
                    now: item.expires_at + work::FORGET_AFTER_EXPIRY_MS + 1,
                    identity: &n.identity,
                    rng: &mut n.rng,
                    directory: &directory,
                    config: &self.settings.flow,
                };
                let mut fx = item.handle(work::Input::Restarted, &mut ctx);
                fx.extend(item.handle(work::Input::Tick, &mut ctx));
                let released = item.result.as_ref().is_none_or(|r| r.dir.is_none());
                if !released || !fx.contains(&work::Effect::Forget) {
                    held.push((id, n.key));
                }
            }
        }
        held
    }

    fn with_ctx<R>(
        &mut self,
        node: usize,
        f: impl FnOnce(
            &mut BTreeMap<JobId, SubmittedJob>,
            &mut BTreeMap<JobId, WorkItem>,
            &mut Ctx<'_>,
        ) -> R,
    ) -> R {
        let now = self.local_now(node);
        let n = &mut self.nodes[node];
        let directory = SimDirectory {
            standings: &n.standings,
            first_hand: &n.first_hand,
            workers: &self.worker_keys,
        };
        let mut ctx = Ctx {
            now,
            identity: &n.identity,
            rng: &mut n.rng,
            directory: &directory,
            config: &self.settings.flow,
        };
        f(&mut n.jobs, &mut n.work, &mut ctx)
    }

    fn step_job(&mut self, node: usize, id: JobId, input: flow::Input) -> Option<Response> {
        let (effects, decision) = self.with_ctx(node, |jobs, _, ctx| {
            let job = jobs.get_mut(&id)?;
            let effects = job.handle(input, ctx);
            let decision = match job.phase {
                Phase::Decided { outcome, .. } => Some(outcome),
                _ => None,
            };
            Some((effects, decision))
        })?;
        let last = self
            .trace
            .decisions
            .iter()
            .rev()
            .find(|(j, _)| *j == id)
            .map(|(_, d)| *d);
        if last != Some(decision) {
            self.trace.decisions.push((id, decision));
        }
        self.carry_out_job(node, id, effects)
    }

    fn step_work(&mut self, node: usize, id: JobId, input: work::Input) -> Option<Response> {
        let effects = self.with_ctx(node, |_, work, ctx| {
            work.get_mut(&id).map(|item| item.handle(input, ctx))
        })?;
        self.carry_out_work(node, id, effects)
    }

    fn broadcast(&mut self, from: usize, message: GossipMessage) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, Msg::Gossip(message.clone()));
            }
        }
    }

    fn carry_out_job(
        &mut self,
        node: usize,
        id: JobId,
        effects: Vec<flow::Effect>,
    ) -> Option<Response> {
        let mut reply = None;
        for effect in effects {
            match effect {
                flow::Effect::Persist => {
                    if let Some(job) = self.nodes[node].jobs.get(&id).cloned() {
                        self.nodes[node].stored_jobs.insert(id, job);
                    }
                }
                flow::Effect::Publish { what, message } => {
                    self.note(|| format!("node {node} publishes {what:?} of {}", id.short()));
                    self.broadcast(node, message);
                    let delay = self.rng.random_range(1..=50);
                    self.schedule(
                        self.now + delay,
                        Event::Published {
                            node,
                            job: id,
                            what,
                        },
                    );
                }
                flow::Effect::Assign { worker, assignment } => {
                    if let Some(to) = self.node_of(&worker) {
                        self.note(|| format!("node {node} assigns {} to node {to}", id.short()));
                        self.request(
                            node,
                            to,
                            Request::Assign(assignment),
                            Waiting::Assign { job: id, worker },
                        );
                    }
                }
                flow::Effect::RequestReveal { worker, attempt } => {
                    if let Some(to) = self.node_of(&worker) {
                        let request = Request::Reveal {
                            job_id: id,
                            attempt,
                        };
                        self.request(node, to, request, Waiting::Reveal { job: id, worker });
                    }
                }
                flow::Effect::Invite { peer, announcement } => {
                    if let Some(to) = self.node_of(&peer) {
                        self.request(node, to, Request::Invite(announcement), Waiting::Nothing);
                    }
                }
                flow::Effect::Fetch { worker, agreed, .. } => {
                    if let Some(to) = self.node_of(&worker) {
                        let rid = self.next_request;
                        self.next_request += 1;
                        self.pending.insert(
                            rid,
                            Pending {
                                node,
                                generation: self.nodes[node].generation,
                                waiting: Waiting::Fetch { job: id, worker },
                            },
                        );
                        self.schedule(self.now + REQUEST_TIMEOUT_MS, Event::Timeout { id: rid });
                        self.send(
                            node,
                            to,
                            Msg::Fetch {
                                id: rid,
                                job: id,
                                agreed,
                            },
                        );
                    }
                }
                flow::Effect::Reply(response) => reply = Some(response),
                flow::Effect::RecordVerdict(signed) => {
                    let Ok(verdict) = signed.decode_unchecked() else {
                        continue;
                    };
                    self.nodes[node].first_hand.observe(&verdict);
                    self.note(|| {
                        format!(
                            "node {node} signs the verdict of {}: {:?}",
                            id.short(),
                            verdict.outcome
                        )
                    });
                    self.trace.verdicts.push(SignedVerdict {
                        job: id,
                        signer: signed.signer(),
                        content_id: signed.content_id(),
                        verdict,
                    });
                    self.enter_verdict(node, &signed);
                }
                flow::Effect::Log(level, text) => {
                    if level != Level::Debug {
                        self.note(|| format!("node {node} {}: {text}", id.short()));
                    }
                }
            }
        }
        reply
    }

    fn carry_out_work(
        &mut self,
        node: usize,
        id: JobId,
        effects: Vec<work::Effect>,
    ) -> Option<Response> {
        let mut reply = None;
        for effect in effects {
            match effect {
                work::Effect::Persist => {
                    if let Some(item) = self.nodes[node].work.get(&id).cloned() {
                        self.nodes[node].stored_work.insert(id, item);
                    }
                }
                work::Effect::Forget => {
                    self.nodes[node].work.remove(&id);
                    self.nodes[node].stored_work.remove(&id);
                }
                work::Effect::SendBid(bid) => {
                    let submitter = self.nodes[node].work.get(&id).map(|w| w.submitter);
                    if let Some(to) = submitter.and_then(|s| self.node_of(&s)) {
                        self.request(node, to, Request::Bid(bid), Waiting::Bid { job: id });
                    }
                }
                work::Effect::Start { spec, .. } => self.start(node, id, &spec),
                work::Effect::Stop => {
                    self.nodes[node].running.remove(&id);
                }
                work::Effect::SendCommit(commit) => {
                    if let Ok(c) = commit.decode_unchecked() {
                        let outcome = codec::encode(&c.outcome).unwrap_or_default();
                        let worker = self.nodes[node].key;
                        self.trace.commitments.push(CommitmentSigned {
                            job: id,
                            worker,
                            outcome,
                            at: self.now,
                        });
                    }
                    let submitter = self.nodes[node].work.get(&id).map(|w| w.submitter);
                    if let Some(to) = submitter.and_then(|s| self.node_of(&s)) {
                        self.request(
                            node,
                            to,
                            Request::Commit(commit),
                            Waiting::Commit { job: id },
                        );
                    }
                }
                work::Effect::RemoveOutput(_) => {}
                work::Effect::Reply(response) => reply = Some(response),
                work::Effect::Log(level, text) => {
                    if level != Level::Debug {
                        self.note(|| format!("node {node} (worker) {}: {text}", id.short()));
                    }
                }
            }
        }
        reply
    }

    fn start(&mut self, node: usize, id: JobId, spec: &JobSpec) {
        let worker = self.nodes[node].key;
        self.trace.starts.push((id, worker, self.now));
        let Some(&plan_index) = self.job_ids.get(&id) else {
            return;
        };
        let plan = self.settings.jobs[plan_index].clone();
        let behaviour = self.nodes[node].behaviour.unwrap_or(Behaviour::Honest);
        self.note(|| format!("node {node} ({behaviour:?}) starts {}", id.short()));
        if behaviour == Behaviour::Silent {
            return;
        }
        let timeout = u64::from(spec.timeout_s) * 1000;
        let after = match plan.nature {
            Nature::Success(ms) | Nature::JobFailure(ms) | Nature::OutOfMemory(ms) => {
                if behaviour == Behaviour::Slow {
                    (ms * 2).min(timeout - 500)
                } else {
                    ms
                }
            }
            Nature::Timeout => timeout,
        };
        let manifest = match behaviour {
            Behaviour::Liar { group } => {
                manifest_of(0, &format!("{} lie {group}", plan.spec.image))
            }
            Behaviour::OtherImage => OutputManifest {
                image: OTHER_IMAGE.into(),
                ..honest_manifest(&plan)
            },
            _ => honest_manifest(&plan),
        };
        let dir = manifest.end.is_exit().then(|| format!("sim/{node}"));
        let executed = Executed::Completed {
            manifest,
            diagnostics: Diagnostics::default(),
            dir,
        };
        let n = &mut self.nodes[node];
        n.running.insert(id);
        let generation = n.generation;
        self.schedule(
            self.now + after,
            Event::ExecDone {
                node,
                job: id,
                generation,
                executed,
            },
        );
        if behaviour == Behaviour::Crashy && self.rng.random_bool(0.5) {
            let at = self.rng.random_range(0..=after);
            let down_for = self.rng.random_range(200..=30_000);
            self.schedule(self.now + at, Event::Crash { node, down_for });
        }
    }

    fn crash(&mut self, node: usize, down_for: u64) {
        let n = &mut self.nodes[node];
        if !n.up {
            return;
        }
        n.up = false;
        n.generation += 1;
        // Runs it was in the middle of: executing, or committed and not yet delivered.
        let held: Vec<JobId> = n
            .work
            .iter()
            .filter(|(_, w)| {
                matches!(
                    w.phase,
                    work::WorkPhase::Executing | work::WorkPhase::Committed { delivered: false }
                )
            })
            .map(|(id, _)| *id)
            .collect();
        n.crashed_holding.extend(held);
        n.running.clear();
        n.jobs.clear();
        n.work.clear();
        n.deferred.clear();
        n.down_since = Some(self.now);
        self.note(|| format!("node {node} crashes for {down_for} ms"));
        self.schedule(self.now + down_for, Event::Restart(node));
        self.schedule(self.now + LIVENESS_MS, Event::Probe(node));
    }

    fn restart(&mut self, node: usize) {
        let now = self.now;
        let n = &mut self.nodes[node];
        n.up = true;
        if let Some(since) = n.down_since.take() {
            n.downtime.push((since, now));
        }
        n.jobs = n.stored_jobs.clone();
        n.work = n.stored_work.clone();
        self.note(|| format!("node {node} restarts"));
        let ids: Vec<JobId> = self.nodes[node].jobs.keys().copied().collect();
        for id in ids {
            self.step_job(node, id, flow::Input::Restarted);
        }
        let ids: Vec<JobId> = self.nodes[node].work.keys().copied().collect();
        for id in ids {
            self.step_work(node, id, work::Input::Restarted);
        }
    }

    /// Applies a verdict to a node's ledger (first one per job wins, as the node's ledger
    /// refuses a second) and standings.
    fn enter_verdict(&mut self, node: usize, signed: &Signed<distributeai_protocol::Verdict>) {
        let Ok(verdict) = signed.decode_unchecked() else {
            return;
        };
        let job = verdict.job.job_id();
        let n = &mut self.nodes[node];
        if n.ledger.contains_key(&job) {
            return;
        }
        n.ledger.insert(job, signed.content_id());
        let entry = crate::ledger_entry(&verdict, signed.signer(), signed.content_id());
        reputation::apply(&mut n.standings, &entry);
    }

    fn answer(&mut self, p: Pending, result: Result<Response, String>) {
        let node = p.node;
        if !self.nodes[node].up || self.nodes[node].generation != p.generation {
            return;
        }
        let context = ValidationContext::live_at(self.local_now(node));
        let answer = |result: Result<Response, String>| match result {
            Ok(Response::Ack) => Answer::Ack,
            Ok(Response::Accepted(signed)) => match signed.open(&context) {
                Ok(ack) => Answer::Accepted(Box::new(ack)),
                Err(e) => Answer::Refused(e.to_string()),
            },
            Ok(Response::Refused(reason)) => Answer::Refused(reason),
            Ok(Response::Busy) => Answer::Busy,
            Ok(other) => Answer::Refused(format!("unexpected answer {other:?}")),
            Err(e) => Answer::Unreachable(e),
        };
        match p.waiting {
            Waiting::Assign { job, worker } => {
                let answer = answer(result);
                self.note(|| {
                    format!(
                        "node {node}: assignment of {} to {} answered {answer:?}",
                        job.short(),
                        short(&worker)
                    )
                });
                self.step_job(node, job, flow::Input::AssignAnswer { worker, answer });
            }
            Waiting::Reveal { job, worker } => {
                let answer = match result {
                    Ok(Response::Reveal(answer)) => match answer.open(&context) {
                        Ok(reveal) => RevealAnswer::Reveal(Box::new(flow::OpenedReveal {
                            reveal,
                            manifest: answer.manifest,
                            diagnostics: answer.diagnostics,
                        })),
                        Err(e) => RevealAnswer::Refused(e.to_string()),
                    },
                    other => match answer(other) {
                        Answer::Unreachable(e) => RevealAnswer::Unreachable(e),
                        Answer::Refused(e) => RevealAnswer::Refused(e),
                        Answer::Ack | Answer::Accepted(_) | Answer::Busy => {
                            RevealAnswer::Refused("an ack, not a reveal".into())
                        }
                    },
                };
                self.step_job(node, job, flow::Input::RevealAnswer { worker, answer });
            }
            Waiting::Fetch { job, worker } => {
                self.note(|| {
                    format!(
                        "node {node}: output of {} from {}: {result:?}",
                        job.short(),
                        short(&worker)
                    )
                });
                let result = match result {
                    Err(e) => FetchResult::Transport(e),
                    Ok(_) => return,
                };
                self.step_job(node, job, flow::Input::Fetched { worker, result });
            }
            Waiting::Commit { job } => {
                let answer = answer(result);
                self.note(|| {
                    format!(
                        "node {node}: commitment to {} answered {answer:?}",
                        job.short()
                    )
                });
                self.step_work(node, job, work::Input::CommitAnswer(answer));
            }
            Waiting::Bid { job } => {
                let answer = answer(result);
                self.step_work(node, job, work::Input::BidAnswer(answer));
            }
            Waiting::Nothing => {}
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        let context = ValidationContext::live_at(self.local_now(to));
        match msg {
            Msg::Gossip(message) => self.on_gossip(to, message, &context),
            Msg::Request { id, request } => {
                let response = self.on_request(from, to, request, &context);
                self.send(to, from, Msg::Response { id, response });
            }
            Msg::Response { id, response } => {
                if let Some(p) = self.pending.remove(&id) {
                    self.answer(p, Ok(response));
                }
            }
            Msg::Fetch { id, job, agreed } => {
                let submitter = self.nodes[from].key;
                let bad = self.nodes[to].behaviour == Some(Behaviour::BadOutput);
                let result = match self.nodes[to].work.get(&job).and_then(|w| {
                    w.output_for(&submitter)?;
                    w.result.as_ref().map(|r| r.hash)
                }) {
                    Some(_) if bad => {
                        FetchResult::Invalid("a file does not match the manifest".into())
                    }
                    Some(hash) if hash == agreed => FetchResult::Verified,
                    Some(_) => {
                        FetchResult::Invalid("the output does not match the agreed hash".into())
                    }
                    None => FetchResult::Invalid("the worker refused: no output".into()),
                };
                self.send(to, from, Msg::FetchAnswer { id, result });
            }
            Msg::FetchAnswer { id, result } => {
                if let Some(p) = self.pending.remove(&id) {
                    let node = p.node;
                    if !self.nodes[node].up || self.nodes[node].generation != p.generation {
                        return;
                    }
                    if let Waiting::Fetch { job, worker } = p.waiting {
                        self.note(|| {
                            format!(
                                "node {node}: output of {} from {}: {result:?}",
                                job.short(),
                                short(&worker)
                            )
                        });
                        self.step_job(node, job, flow::Input::Fetched { worker, result });
                    }
                }
            }
        }
    }

    fn on_gossip(&mut self, to: usize, message: GossipMessage, context: &ValidationContext) {
        match message {
            GossipMessage::Job(signed) => {
                if let Ok(job) = signed.open(context) {
                    self.consider(to, job);
                }
            }
            GossipMessage::Cancel(signed) => {
                if let Ok(cancel) = signed.open(context) {
                    let by = cancel.signer;
                    self.nodes[to].promises.settle(&cancel.message.job_id, &by);
                    self.step_work(to, cancel.message.job_id, work::Input::Cancelled { by });
                }
            }
            GossipMessage::Verdict(signed) => {
                if signed.open(&(*context).archived()).is_ok() {
                    self.enter_verdict(to, &signed);
                    let job = signed.decode_unchecked().map(|v| v.job.job_id());
                    if let Ok(job) = job {
                        let by = signed.signer();
                        self.nodes[to].promises.settle(&job, &by);
                        self.step_work(to, job, work::Input::Verdict { by });
                    }
                }
            }
            GossipMessage::Node(_) => {}
        }
    }

    /// Starts assignments the node answered busy, oldest first, while it has free slots, as
    /// the node's driver does.
    fn start_deferred(&mut self, node: usize) {
        while self.nodes[node].up && self.free_slots(node) > 0 {
            let now = self.local_now(node);
            let n = &mut self.nodes[node];
            let items = &n.work;
            let Some((assignment, _waited_ms)) = n
                .deferred
                .next(now, |job| items.get(job).is_some_and(|w| w.is_bid()))
            else {
                return;
            };
            let job = assignment.message.job_id;
            let free_slots = self.free_slots(node);
            self.step_work(
                node,
                job,
                work::Input::Assigned {
                    assignment,
                    free_slots,
                },
            );
        }
    }

    /// Slots of `node` not running an execution.
    fn free_slots(&self, node: usize) -> usize {
        let busy = self.nodes[node]
            .work
            .values()
            .filter(|w| w.occupies_slot())
            .count();
        self.settings.slots.saturating_sub(busy)
    }

    fn consider(
        &mut self,
        node: usize,
        job: distributeai_protocol::Verified<distributeai_protocol::JobAnnouncement>,
    ) {
        let id = job.envelope.job_id();
        let n = &self.nodes[node];
        if n.behaviour.is_none() {
            return;
        }
        if n.work.contains_key(&id) {
            // Invited again (or gossiped twice): a bid still waiting goes again.
            self.step_work(node, id, work::Input::Invited);
            return;
        }
        let spendable = n.standings.standing(&job.signer).spendable();
        let now = self.local_now(node);
        let n = &mut self.nodes[node];
        let promised = n.promises.promise(
            job.signer,
            id,
            &job.message.spec,
            job.message.expires_at,
            spendable,
            now,
        );
        if promised.is_err() {
            return;
        }
        let running = self.nodes[node].running.len() as u32;
        // Every third node lacks the image and says it would pull it (the submitter then
        // allows for the pull: `FlowConfig::pull_allowance_ms`).
        let image = (node % 3 != 2).then(|| SIM_IMAGE.to_string());
        let made = self.with_ctx(node, |_, _, ctx| WorkItem::bid(&job, image, running, ctx));
        if let Ok((item, effects)) = made {
            self.nodes[node].work.insert(id, item);
            self.carry_out_work(node, id, effects);
        }
    }

    fn on_request(
        &mut self,
        from: usize,
        to: usize,
        request: Request,
        context: &ValidationContext,
    ) -> Response {
        let from_key = self.nodes[from].key;
        match request {
            Request::Bid(signed) => match signed.open(context) {
                Ok(bid) if bid.signer == from_key => {
                    let job = bid.message.job_id;
                    self.step_job(to, job, flow::Input::Bid(bid))
                        .unwrap_or_else(|| Response::Refused("unknown job".into()))
                }
                Ok(_) => Response::Refused("the bid is signed by another node".into()),
                Err(e) => Response::Refused(e.to_string()),
            },
            Request::Commit(signed) => match signed.open(context) {
                Ok(commit) if commit.signer == from_key => {
                    let job = commit.message.job_id;
                    self.step_job(to, job, flow::Input::Commit(commit))
                        .unwrap_or_else(|| Response::Refused("unknown job".into()))
                }
                Ok(_) => Response::Refused("the commitment is signed by another node".into()),
                Err(e) => Response::Refused(e.to_string()),
            },
            Request::Assign(signed) => match signed.open(context) {
                Ok(assignment) => {
                    let job = assignment.message.job_id;
                    let n = &self.nodes[to];
                    if !n.work.contains_key(&job) {
                        return Response::Refused("this node did not bid on this job".into());
                    }
                    let free_slots = self.free_slots(to);
                    let response = self
                        .step_work(
                            to,
                            job,
                            work::Input::Assigned {
                                assignment: assignment.clone(),
                                free_slots,
                            },
                        )
                        .unwrap_or_else(|| Response::Refused("unknown job".into()));
                    if response == Response::Busy {
                        let now = self.local_now(to);
                        self.nodes[to].deferred.busy(now, assignment);
                    }
                    response
                }
                Err(e) => Response::Refused(e.to_string()),
            },
            Request::Reveal { job_id, attempt } => {
                let input = work::Input::RevealRequested {
                    from: from_key,
                    attempt,
                };
                self.step_work(to, job_id, input)
                    .unwrap_or_else(|| Response::Refused("no such assignment from you".into()))
            }
            Request::Invite(signed) => match signed.open(context) {
                Ok(job) if job.signer == from_key => {
                    self.consider(to, job);
                    Response::Ack
                }
                _ => Response::Refused("invalid invitation".into()),
            },
            Request::FetchOutput { .. } | Request::LedgerSync(_) => {
                Response::Refused("not simulated".into())
            }
        }
    }

    fn report(mut self) -> Report {
        // The facts the invariants need, from what the nodes stored and did.
        let mut completed = 0;
        for (id, index) in self.job_ids.clone() {
            let plan = &self.settings.jobs[index];
            let submitter = &self.nodes[plan.submitter];
            let job = submitter.stored_jobs.get(&id);
            if job.is_some_and(|j| {
                matches!(
                    j.phase,
                    Phase::Decided {
                        outcome: flow::Outcome::Completed,
                        ..
                    }
                )
            }) {
                completed += 1;
            }
            let expires_at = job.map_or(0, |j| j.expires_at);
            let expiry_sim = expires_at
                .saturating_sub(EPOCH_MS)
                .saturating_add_signed(-submitter.skew);
            let down_after_expiry: u64 = submitter
                .downtime
                .iter()
                .filter(|(_, until)| *until >= expiry_sim)
                .map(|(since, until)| until - since.max(&expiry_sim))
                .sum();
            let honest_hash = honest_manifest(plan).result_hash().ok();
            let liars_assigned = self
                .trace
                .starts
                .iter()
                .filter(|(j, _, _)| *j == id)
                .filter_map(|(_, w, _)| self.node_of(w))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|n| {
                    matches!(
                        self.nodes[*n].behaviour,
                        Some(Behaviour::Liar { .. } | Behaviour::OtherImage)
                    )
                })
                .count();
            // Honest runs: an honest worker that committed to the honest result and never
            // crashed holding the job.
            let mut honest_commits = Vec::new();
            if let Some(honest) = honest_hash {
                for node in &self.nodes {
                    let honest_worker = node.behaviour.is_some_and(Behaviour::honest);
                    let kept = node.stored_work.get(&id).and_then(|w| w.result.as_ref());
                    if honest_worker
                        && !node.crashed_holding.contains(&id)
                        && kept.is_some_and(|r| r.hash == honest)
                    {
                        self.trace.honest_runs.insert((id, node.key));
                        // For liveness, only results the submitter took count: a worker whose
                        // acknowledgements were all lost was replaced in good faith.
                        let taken = job
                            .and_then(|j| j.execution(&node.key))
                            .is_some_and(|e| e.active && e.committed_at.is_some());
                        if !taken {
                            continue;
                        }
                        let first = self
                            .trace
                            .commitments
                            .iter()
                            .find(|c| c.job == id && c.worker == node.key)
                            .map(|c| c.at);
                        honest_commits.extend(first);
                    }
                }
            }
            // A quorum of honest results in time, fewer than k liars, no cancel, and the
            // submitter up from then on: nothing excuses anything but a completed job.
            honest_commits.sort_unstable();
            let k = usize::from(plan.spec.consensus);
            let quorum_at = honest_commits.get(k.saturating_sub(1)).copied();
            let submitter_down_after =
                |at: u64| submitter.downtime.iter().any(|(_, until)| *until >= at);
            let must_complete = quorum_at.is_some_and(|at| {
                at + LIVENESS_MARGIN_MS <= expiry_sim && !submitter_down_after(at)
            }) && liars_assigned < k
                && plan.cancel_at.is_none();
            self.trace.jobs.push(JobFacts {
                job: id,
                k,
                expires_at,
                decided_at: job.and_then(|j| j.times.finished_at),
                slack_ms: down_after_expiry + 2 * TICK_MS,
                honest_hash,
                liars_assigned,
                must_complete,
                outcome: job.and_then(|j| match j.phase {
                    Phase::Decided { outcome, .. } => Some(outcome),
                    _ => None,
                }),
                accepted: job
                    .and_then(|j| j.verdict.as_ref())
                    .and_then(|v| v.decode_unchecked().ok())
                    .and_then(|v| match v.outcome {
                        distributeai_protocol::VerdictOutcome::Accepted(agreed) => {
                            Some(agreed.hash)
                        }
                        distributeai_protocol::VerdictOutcome::Failed(_) => None,
                    }),
            });
        }
        self.trace.held_after_life = self.held_after_life();
        let violations = invariants::check(&self.trace);
        Report {
            seed: self.settings.seed,
            jobs: self.job_ids.len(),
            completed,
            events: self.processed,
            messages: self.messages,
            violations,
            trace: self.log.unwrap_or_default(),
        }
    }
}
