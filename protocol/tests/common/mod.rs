//! Sample messages of every type, signed by fixed identities, for the protocol tests.

#![allow(dead_code, unreachable_pub)]

use distributeai_protocol::*;

pub const NOW: u64 = 1_800_000_000_000;

pub fn ctx() -> ValidationContext {
    ValidationContext::live_at(NOW)
}

pub fn submitter() -> NodeIdentity {
    NodeIdentity::from_secret([1; 32])
}

pub fn worker(i: u8) -> NodeIdentity {
    NodeIdentity::from_secret([10 + i; 32])
}

pub fn node_announcement() -> NodeAnnouncement {
    NodeAnnouncement {
        capabilities: Capabilities {
            cpus: 8,
            memory_mb: 16_384,
            gpus: vec![GpuInfo {
                vendor: "nvidia".into(),
                model: "RTX 4090".into(),
                memory_mb: 24_576,
            }],
            region: "eu-west".into(),
            version: "0.1.0".into(),
            images: vec![LocalImage {
                reference: "distributeai/toolbox:local".into(),
                digest: Some(format!("sha256:{}", "ab".repeat(32))),
            }],
        },
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        links: vec![PeerLink {
            peer: worker(1).peer_id().to_string(),
            relayed: false,
        }],
        accepts_jobs: true,
        issued_at: NOW,
        started_at: NOW - 60_000,
        sequence: 3,
    }
}

pub fn spec() -> JobSpec {
    let mut spec = JobSpec::new(
        "distributeai/toolbox:local",
        vec!["sh".into(), "-c".into(), "echo hi | sha256sum".into()],
    );
    spec.env.insert("SEED".into(), "42".into());
    spec.reward = 10;
    spec
}

pub fn job_announcement() -> JobAnnouncement {
    JobAnnouncement {
        spec: spec(),
        nonce: 77,
        issued_at: NOW,
        expires_at: NOW + 3_600_000,
    }
}

pub fn signed_job() -> Signed<JobAnnouncement> {
    Signed::sign(&submitter(), &job_announcement()).expect("sign")
}

pub fn job_cancel() -> JobCancel {
    JobCancel {
        job_id: signed_job().job_id(),
        reason: "changed my mind".into(),
        issued_at: NOW,
    }
}

/// The image id every sample worker runs.
pub const IMAGE: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

pub fn bid() -> Bid {
    Bid {
        job_id: signed_job().job_id(),
        image: Some(IMAGE.into()),
        running_jobs: 1,
        issued_at: NOW,
    }
}

pub fn signed_bid(worker_index: u8) -> Signed<Bid> {
    Signed::sign(&worker(worker_index), &bid()).expect("sign")
}

pub fn assignment() -> Assignment {
    Assignment {
        job_id: signed_job().job_id(),
        worker: worker(0).public_key(),
        attempt: 0,
        deadline: NOW + 600_000,
        issued_at: NOW,
    }
}

pub fn manifest() -> OutputManifest {
    OutputManifest::from_outputs(
        0,
        IMAGE,
        b"hello\n",
        &[
            ("result.txt".into(), b"42".to_vec()),
            ("img/a.png".into(), vec![1, 2, 3]),
        ],
    )
    .expect("manifest")
}

pub fn commitment() -> ResultCommitment {
    let manifest = manifest();
    let hash = manifest.result_hash().expect("hash");
    ResultCommitment {
        job_id: signed_job().job_id(),
        attempt: 0,
        outcome: CommittedOutcome::Committed(distributeai_protocol::result_hash::commitment(
            &worker(0).public_key(),
            &signed_job().job_id(),
            0,
            &hash,
            &Digest([9; 32]),
        )),
        issued_at: NOW,
    }
}

/// Another worker's different output: a disagreeing result.
pub fn other_manifest() -> OutputManifest {
    OutputManifest::from_outputs(0, IMAGE, b"bye\n", &[]).expect("manifest")
}

/// Worker `i`'s salt in the samples.
fn salt(i: u8) -> Digest {
    Digest([90 + i; 32])
}

/// Worker `i`'s reveal of `manifest`.
pub fn reveal_of(i: u8, manifest: &OutputManifest) -> ResultReveal {
    ResultReveal {
        job_id: signed_job().job_id(),
        attempt: 0,
        result_hash: manifest.result_hash().expect("hash"),
        salt: salt(i),
        end: manifest.end,
        image: manifest.image.clone(),
        issued_at: NOW,
    }
}

/// Worker 0's reveal of the sample manifest.
pub fn reveal() -> ResultReveal {
    reveal_of(0, &manifest())
}

/// Worker 0's answer to a reveal request: its signed reveal with the manifest.
pub fn revealed() -> RevealedResult {
    RevealedResult {
        reveal: Signed::sign(&worker(0), &reveal()).expect("sign"),
        manifest: manifest(),
        diagnostics: Diagnostics {
            detail: String::new(),
            stdout_tail: b"hello\n".to_vec(),
            stderr_tail: Vec::new(),
        },
    }
}

/// Worker `i`'s signed commitment to `manifest`, which its [`reveal_of`] opens.
pub fn commitment_to(i: u8, manifest: &OutputManifest) -> Signed<ResultCommitment> {
    let hash = manifest.result_hash().expect("hash");
    let job_id = signed_job().job_id();
    let commit = ResultCommitment {
        job_id,
        attempt: 0,
        outcome: CommittedOutcome::Committed(distributeai_protocol::result_hash::commitment(
            &worker(i).public_key(),
            &job_id,
            0,
            &hash,
            &salt(i),
        )),
        issued_at: NOW,
    };
    Signed::sign(&worker(i), &commit).expect("sign")
}

/// Worker `i`'s evidence of having revealed `manifest`, as the holder of attempt `i`.
pub fn revealed_evidence(i: u8, manifest: &OutputManifest) -> Evidence {
    Evidence::revealed_by(
        &worker(i),
        signed_job().job_id(),
        u32::from(i),
        manifest,
        salt(i),
        NOW,
    )
    .expect("sign")
}

/// Worker `i`'s signed failure report.
pub fn failure_evidence(i: u8, reason: &str) -> Evidence {
    let commit = ResultCommitment {
        attempt: u32::from(i),
        outcome: CommittedOutcome::Failed(WorkerFault::new(reason)),
        ..commitment()
    };
    Evidence::Failed {
        commitment: Signed::sign(&worker(i), &commit).expect("sign"),
    }
}

/// A worker's acceptance of its assignment, signed at `at` with `deadline_ms` to commit.
pub fn ack(at: u64, deadline_ms: u64) -> AssignmentAck {
    AssignmentAck {
        job_id: signed_job().job_id(),
        attempt: 0,
        deadline_ms,
        issued_at: at,
    }
}

/// Worker `i`'s evidence of having accepted its assignment four minutes before the verdict,
/// with a minute to commit: its deadline has passed.
pub fn acceptance_evidence(i: u8) -> Evidence {
    let ack = AssignmentAck {
        attempt: u32::from(i),
        ..ack(NOW - 240_000, 60_000)
    };
    Evidence::Accepted {
        acceptance: Signed::sign(&worker(i), &ack).expect("sign"),
    }
}

/// The sample draw: workers 0 to 4 bid; 0, 1 and 2 weigh 1 and 3 and 4 nothing, so the draw
/// picks 0, 1 and 2 for the three slots, and 3 and 4 came in as replacements.
pub fn sample_draw() -> Draw {
    Draw {
        candidates: (0..5).map(signed_bid).collect(),
        weights: vec![1_000_000, 1_000_000, 1_000_000, 0, 0],
        groups: vec![0, 1, 2, 3, 4],
    }
}

/// Worker `i`'s signed commitment for the sample job.
pub fn signed_commitment(i: u8) -> Signed<ResultCommitment> {
    let commit = ResultCommitment {
        outcome: CommittedOutcome::Committed(Digest([i; 32])),
        ..commitment()
    };
    Signed::sign(&worker(i), &commit).expect("sign")
}

/// The sample verdict: workers 0 and 1 agree (k = 2), 2 disagrees, 3 reported a failure and
/// 4 went silent, each with its own signed evidence.
pub fn verdict() -> Verdict {
    let manifest = manifest();
    let other = other_manifest();
    Verdict {
        job: signed_job(),
        outcome: VerdictOutcome::Accepted(AgreedResult {
            hash: manifest.result_hash().expect("hash"),
            end: manifest.end,
            image: manifest.image.clone(),
        }),
        workers: vec![
            WorkerRecord {
                bid: signed_bid(0),
                evidence: revealed_evidence(0, &manifest),
                result: WorkerResult::Agreed,
                paid: 10,
            },
            WorkerRecord {
                bid: signed_bid(1),
                evidence: revealed_evidence(1, &manifest),
                result: WorkerResult::Agreed,
                paid: 10,
            },
            WorkerRecord {
                bid: signed_bid(2),
                evidence: revealed_evidence(2, &other),
                result: WorkerResult::Disagreed(other.result_hash().expect("hash")),
                paid: 0,
            },
            WorkerRecord {
                bid: signed_bid(3),
                evidence: failure_evidence(3, "engine down"),
                result: WorkerResult::Failed(WorkerFault::new("engine down")),
                paid: 0,
            },
            WorkerRecord {
                bid: signed_bid(4),
                evidence: acceptance_evidence(4),
                result: WorkerResult::Silent,
                paid: 0,
            },
        ],
        draw: sample_draw(),
        issued_at: NOW,
    }
}

/// One signed sample of every message type, as gossip or request payloads.
pub fn every_signed_message() -> Vec<(MessageKind, Vec<u8>)> {
    let s = submitter();
    let w = worker(0);
    let enc = |r: Result<Vec<u8>, EncodeError>| r.expect("encode");
    vec![
        (
            MessageKind::NodeAnnouncement,
            enc(
                GossipMessage::Node(Signed::sign(&w, &node_announcement()).expect("sign")).encode(),
            ),
        ),
        (
            MessageKind::JobAnnouncement,
            enc(GossipMessage::Job(signed_job()).encode()),
        ),
        (
            MessageKind::JobCancel,
            enc(GossipMessage::Cancel(Signed::sign(&s, &job_cancel()).expect("sign")).encode()),
        ),
        (MessageKind::Bid, enc(Request::Bid(signed_bid(0)).encode())),
        (
            MessageKind::Assignment,
            enc(Request::Assign(Signed::sign(&s, &assignment()).expect("sign")).encode()),
        ),
        (
            MessageKind::AssignmentAck,
            enc(Response::Accepted(Signed::sign(&w, &ack(NOW, 60_000)).expect("sign")).encode()),
        ),
        (
            MessageKind::ResultCommitment,
            enc(Request::Commit(Signed::sign(&w, &commitment()).expect("sign")).encode()),
        ),
        (
            MessageKind::ResultReveal,
            // Diagnostics are not signed (they are the worker's view, not agreed on, and come
            // over its authenticated connection): left empty so every byte here is covered.
            enc(Response::Reveal(RevealedResult {
                diagnostics: Diagnostics::default(),
                ..revealed()
            })
            .encode()),
        ),
        (
            MessageKind::Verdict,
            enc(GossipMessage::Verdict(Signed::sign(&s, &verdict()).expect("sign")).encode()),
        ),
    ]
}

/// Decodes bytes produced by [`every_signed_message`] and opens the signed part.
pub fn decode_and_open(kind: MessageKind, bytes: &[u8]) -> Result<(), ValidationError> {
    let ctx = ctx();
    match kind {
        MessageKind::NodeAnnouncement
        | MessageKind::JobAnnouncement
        | MessageKind::JobCancel
        | MessageKind::Verdict => GossipMessage::decode_verified(bytes, &ctx).map(|_| ()),
        MessageKind::Bid | MessageKind::Assignment | MessageKind::ResultCommitment => {
            match Request::decode(bytes)? {
                Request::Bid(m) => m.open(&ctx).map(|_| ()),
                Request::Assign(m) => m.open(&ctx).map(|_| ()),
                Request::Commit(m) => m.open(&ctx).map(|_| ()),
                _ => Err(ValidationError::Invalid {
                    field: "request",
                    reason: "unexpected variant".into(),
                }),
            }
        }
        MessageKind::AssignmentAck | MessageKind::ResultReveal => match Response::decode(bytes)? {
            Response::Accepted(m) => m.open(&ctx).map(|_| ()),
            Response::Reveal(m) => m.open(&ctx).map(|_| ()),
            _ => Err(ValidationError::Invalid {
                field: "response",
                reason: "unexpected variant".into(),
            }),
        },
    }
}
