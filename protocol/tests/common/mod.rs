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

pub fn reveal() -> ResultReveal {
    let manifest = manifest();
    ResultReveal {
        job_id: signed_job().job_id(),
        attempt: 0,
        result_hash: manifest.result_hash().expect("hash"),
        salt: Digest([9; 32]),
        manifest,
        diagnostics: Diagnostics {
            detail: String::new(),
            stdout_tail: b"hello\n".to_vec(),
            stderr_tail: Vec::new(),
        },
        issued_at: NOW,
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

pub fn verdict() -> Verdict {
    let manifest = manifest();
    Verdict {
        job: signed_job(),
        outcome: VerdictOutcome::Accepted(AgreedResult {
            hash: manifest.result_hash().expect("hash"),
            end: manifest.end,
            image: manifest.image,
        }),
        workers: vec![
            WorkerRecord {
                bid: signed_bid(0),
                commitment: Some(signed_commitment(0)),
                result: WorkerResult::Agreed,
                paid: 10,
            },
            WorkerRecord {
                bid: signed_bid(1),
                commitment: Some(signed_commitment(1)),
                result: WorkerResult::Agreed,
                paid: 10,
            },
            WorkerRecord {
                bid: signed_bid(2),
                commitment: Some(signed_commitment(2)),
                result: WorkerResult::Disagreed(ResultHash([0xee; 32])),
                paid: 0,
            },
        ],
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
            MessageKind::ResultCommitment,
            enc(Request::Commit(Signed::sign(&w, &commitment()).expect("sign")).encode()),
        ),
        (
            MessageKind::ResultReveal,
            enc(Response::Reveal(Signed::sign(&w, &reveal()).expect("sign")).encode()),
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
        MessageKind::ResultReveal => match Response::decode(bytes)? {
            Response::Reveal(m) => m.open(&ctx).map(|_| ()),
            _ => Err(ValidationError::Invalid {
                field: "response",
                reason: "unexpected variant".into(),
            }),
        },
    }
}
