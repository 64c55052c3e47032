//! A hostile peer for the tests: a bare libp2p peer with keys of its own that signs forged
//! ledger entries in the real protocol, gossips them and serves them over ledger sync
//! (issue 19). Nothing here is in the product: it is what an attacker with a modified node
//! would send.

use distributeai_protocol::time::now_ms;
use distributeai_protocol::*;

use super::TestPeer;
use super::jobs::BOUND;

/// Publishes `message` from the adversary's peer until the mesh takes it (a fresh peer has no
/// mesh peers for a moment).
pub async fn publish(peer: &TestPeer, message: GossipMessage) {
    let published = super::wait_until(BOUND, || {
        let message = message.clone();
        async move { peer.client.publish(message).await.is_ok() }
    })
    .await;
    assert!(published, "the adversary's gossip was never published");
}

/// The image every forged job names: any reference will do, nothing ever runs.
pub const IMAGE: &str = "sha256:5555555555555555555555555555555555555555555555555555555555555555";

/// Signs the pieces of forged entries: `issuer` is the adversary peer's own key (gossip must
/// be signed by its author), `accomplice` a second fresh key that plays the worker.
pub struct Forger<'a> {
    pub issuer: &'a NodeIdentity,
    pub accomplice: &'a NodeIdentity,
}

impl Forger<'_> {
    /// A job the issuer announces, live now: n = 1, k = 1.
    pub fn job(&self, nonce: u64, reward: u64) -> Signed<JobAnnouncement> {
        self.job_at(nonce, reward, now_ms())
    }

    /// A job the issuer announced at `at` (ms), open for a minute.
    pub fn job_at(&self, nonce: u64, reward: u64, at: u64) -> Signed<JobAnnouncement> {
        let mut spec = JobSpec::new("distributeai/toolbox:local", vec!["true".into()]);
        spec.redundancy = 1;
        spec.consensus = 1;
        spec.reward = reward;
        spec.timeout_s = 5;
        let job = JobAnnouncement {
            spec,
            nonce,
            issued_at: at,
            expires_at: at + 60_000,
        };
        Signed::sign(self.issuer, &job).expect("sign")
    }

    /// `worker`'s signed bid for `job`.
    pub fn bid(&self, worker: &NodeIdentity, job: &Signed<JobAnnouncement>) -> Signed<Bid> {
        self.bid_at(worker, job, now_ms())
    }

    fn bid_at(&self, worker: &NodeIdentity, job: &Signed<JobAnnouncement>, at: u64) -> Signed<Bid> {
        let bid = Bid {
            job_id: job.job_id(),
            image: Some(IMAGE.into()),
            running_jobs: 0,
            issued_at: at,
        };
        Signed::sign(worker, &bid).expect("sign")
    }

    /// The accomplice's record as a worker that "agreed", with evidence it signed itself:
    /// valid by the protocol, since the accomplice signs whatever it is asked to.
    pub fn agreed(&self, job: &Signed<JobAnnouncement>, paid: u64) -> (WorkerRecord, AgreedResult) {
        self.agreed_at(job, paid, now_ms())
    }

    fn agreed_at(
        &self,
        job: &Signed<JobAnnouncement>,
        paid: u64,
        at: u64,
    ) -> (WorkerRecord, AgreedResult) {
        let manifest = OutputManifest::from_outputs(0, IMAGE, b"forged", &[]).expect("manifest");
        let evidence = Evidence::revealed_by(
            self.accomplice,
            job.job_id(),
            0,
            &manifest,
            Digest([3; 32]),
            at,
        )
        .expect("sign");
        let record = WorkerRecord {
            bid: self.bid_at(self.accomplice, job, at),
            evidence,
            result: WorkerResult::Agreed,
            paid,
        };
        let agreed = AgreedResult {
            hash: manifest.result_hash().expect("hash"),
            end: manifest.end,
            image: IMAGE.into(),
        };
        (record, agreed)
    }

    /// A verdict on `job` by the issuer.
    pub fn verdict(
        &self,
        job: &Signed<JobAnnouncement>,
        outcome: VerdictOutcome,
        workers: Vec<WorkerRecord>,
    ) -> Signed<Verdict> {
        self.verdict_at(job, outcome, workers, now_ms())
    }

    fn verdict_at(
        &self,
        job: &Signed<JobAnnouncement>,
        outcome: VerdictOutcome,
        workers: Vec<WorkerRecord>,
        at: u64,
    ) -> Signed<Verdict> {
        let draw = Draw::even(workers.iter().map(|w| w.bid.clone()).collect());
        let verdict = Verdict {
            job: job.clone(),
            outcome,
            workers,
            draw,
            issued_at: at,
        };
        Signed::sign(self.issuer, &verdict).expect("sign")
    }

    /// Issue 19's minted credits: a job with an absurd reward "agreed" on by the accomplice.
    pub fn minted(&self, nonce: u64) -> Signed<Verdict> {
        let job = self.job(nonce, 1_000_000_000_000_000_000);
        let (record, agreed) = self.agreed(&job, 1_000_000_000_000_000_000);
        self.verdict(&job, VerdictOutcome::Accepted(agreed), vec![record])
    }

    /// An entry of a farming ring: the accomplice agreed on an unpaid job of the issuer's.
    pub fn farmed(&self, nonce: u64) -> Signed<Verdict> {
        let job = self.job(nonce, 0);
        let (record, agreed) = self.agreed(&job, 0);
        self.verdict(&job, VerdictOutcome::Accepted(agreed), vec![record])
    }

    /// A farming ring's entry for a job announced at `at` (ms) and judged a second later:
    /// behind entries already held, it is out of the ledger's canonical order.
    pub fn farmed_at(&self, nonce: u64, at: u64) -> Signed<Verdict> {
        let job = self.job_at(nonce, 0, at);
        let (record, agreed) = self.agreed_at(&job, 0, at + 500);
        self.verdict_at(
            &job,
            VerdictOutcome::Accepted(agreed),
            vec![record],
            at + 1000,
        )
    }

    /// Two different verdicts on one job, both valid: the issuer equivocates.
    pub fn equivocation(&self, nonce: u64) -> (Signed<Verdict>, Signed<Verdict>) {
        let job = self.job(nonce, 0);
        let (record, agreed) = self.agreed(&job, 0);
        let first = self.verdict(&job, VerdictOutcome::Accepted(agreed), vec![record.clone()]);
        let mut again = record;
        again.paid = 0;
        let first_verdict = first.decode_unchecked().expect("decode");
        let second = Verdict {
            job: job.clone(),
            outcome: first_verdict.outcome,
            workers: vec![again],
            draw: first_verdict.draw,
            issued_at: now_ms() + 1,
        };
        (first, Signed::sign(self.issuer, &second).expect("sign"))
    }

    /// Slander of an honest bidder: `bid` is its genuine signed bid on the issuer's `job`; it
    /// is called silent and failed with "evidence" the issuer signed itself.
    pub fn slander(&self, job: &Signed<JobAnnouncement>, bid: Signed<Bid>) -> Vec<Signed<Verdict>> {
        let ack = AssignmentAck {
            job_id: job.job_id(),
            attempt: 0,
            deadline_ms: 1,
            issued_at: now_ms() - 10_000,
        };
        let fault = WorkerFault::new("made up");
        let failure = ResultCommitment {
            job_id: job.job_id(),
            attempt: 0,
            outcome: CommittedOutcome::Failed(fault.clone()),
            issued_at: now_ms(),
        };
        let records = [
            (
                Evidence::Accepted {
                    acceptance: Signed::sign(self.issuer, &ack).expect("sign"),
                },
                WorkerResult::Silent,
            ),
            (
                Evidence::Failed {
                    commitment: Signed::sign(self.issuer, &failure).expect("sign"),
                },
                WorkerResult::Failed(fault),
            ),
        ];
        records
            .into_iter()
            .map(|(evidence, result)| {
                let record = WorkerRecord {
                    bid: bid.clone(),
                    evidence,
                    result,
                    paid: 0,
                };
                self.verdict(
                    &job.clone(),
                    VerdictOutcome::Failed("slander".into()),
                    vec![record],
                )
            })
            .collect()
    }

    /// The issuer's signed announcement of itself as a node, so that honest nodes sync from
    /// it.
    pub fn node_announcement(&self, listen: &[libp2p::Multiaddr]) -> Signed<NodeAnnouncement> {
        let now = now_ms();
        let announcement = NodeAnnouncement {
            capabilities: Capabilities {
                cpus: 4,
                memory_mb: 4096,
                gpus: vec![],
                region: "adversary".into(),
                version: "0.1.0".into(),
                images: vec![],
            },
            listen_addrs: listen.iter().map(|a| a.to_string()).collect(),
            accepts_jobs: false,
            issued_at: now,
            started_at: now,
            sequence: 1,
            links: vec![],
        };
        Signed::sign(self.issuer, &announcement).expect("sign")
    }
}
