//! The signed envelope on the wire: round trips, tampering and cross-type replay.

mod common;

use common::*;
use distributeai_protocol::codec;
use distributeai_protocol::*;

/// Encodes a sample `Signed<T>` of `kind` on its own (no outer enum).
fn envelope_bytes(kind: MessageKind) -> Vec<u8> {
    let (s, w) = (submitter(), worker(0));
    let r = match kind {
        MessageKind::NodeAnnouncement => {
            codec::encode(&Signed::sign(&w, &node_announcement()).expect("sign"))
        }
        MessageKind::JobAnnouncement => codec::encode(&signed_job()),
        MessageKind::JobCancel => codec::encode(&Signed::sign(&s, &job_cancel()).expect("sign")),
        MessageKind::Bid => codec::encode(&signed_bid(0)),
        MessageKind::Assignment => codec::encode(&Signed::sign(&s, &assignment()).expect("sign")),
        MessageKind::AssignmentAck => {
            codec::encode(&Signed::sign(&w, &ack(NOW, 60_000)).expect("sign"))
        }
        MessageKind::ResultCommitment => {
            codec::encode(&Signed::sign(&w, &commitment()).expect("sign"))
        }
        MessageKind::ResultReveal => codec::encode(&Signed::sign(&w, &reveal()).expect("sign")),
        MessageKind::Verdict => codec::encode(&Signed::sign(&s, &verdict()).expect("sign")),
    };
    r.expect("encode")
}

/// Decodes envelope bytes as a `Signed<T>` of `kind` and opens it.
fn open_as(kind: MessageKind, bytes: &[u8]) -> Result<(), ValidationError> {
    fn open<T: SignedMessage>(bytes: &[u8]) -> Result<(), ValidationError> {
        codec::decode::<Signed<T>>(bytes)?.open(&ctx()).map(|_| ())
    }
    match kind {
        MessageKind::NodeAnnouncement => open::<NodeAnnouncement>(bytes),
        MessageKind::JobAnnouncement => open::<JobAnnouncement>(bytes),
        MessageKind::JobCancel => open::<JobCancel>(bytes),
        MessageKind::Bid => open::<Bid>(bytes),
        MessageKind::Assignment => open::<Assignment>(bytes),
        MessageKind::AssignmentAck => open::<AssignmentAck>(bytes),
        MessageKind::ResultCommitment => open::<ResultCommitment>(bytes),
        MessageKind::ResultReveal => open::<ResultReveal>(bytes),
        MessageKind::Verdict => open::<Verdict>(bytes),
    }
}

fn round_trip<T: SignedMessage + PartialEq + std::fmt::Debug>(identity: &NodeIdentity, message: T) {
    let signed = Signed::sign(identity, &message).expect("sign");
    let bytes = codec::encode(&signed).expect("encode");
    let decoded: Signed<T> = codec::decode(&bytes).expect("decode");
    assert_eq!(decoded, signed);
    let verified = decoded.open(&ctx()).expect("open");
    assert_eq!(verified.message, message);
    assert_eq!(verified.signer, identity.public_key());
    // Encoding is deterministic, so a re-encoded envelope has the same bytes and content id.
    assert_eq!(codec::encode(&verified.envelope).expect("encode"), bytes);
    assert_eq!(verified.envelope.content_id(), signed.content_id());
}

#[test]
fn every_signed_message_type_round_trips() {
    let (s, w) = (submitter(), worker(0));
    round_trip(&w, node_announcement());
    round_trip(&s, job_announcement());
    round_trip(&s, job_cancel());
    round_trip(&w, bid());
    round_trip(&s, assignment());
    round_trip(&w, commitment());
    round_trip(
        &w,
        ResultCommitment {
            outcome: CommittedOutcome::Failed(WorkerFault::new("the container engine is down")),
            ..commitment()
        },
    );
    round_trip(&w, ack(NOW, 60_000));
    round_trip(&w, reveal());
    round_trip(&s, verdict());
    round_trip(
        &s,
        Verdict {
            outcome: VerdictOutcome::Failed("no agreement after 2 retries".into()),
            workers: vec![WorkerRecord {
                bid: signed_bid(4),
                evidence: acceptance_evidence(4),
                result: WorkerResult::Silent,
                paid: 0,
            }],
            ..verdict()
        },
    );
    for (kind, bytes) in every_signed_message() {
        decode_and_open(kind, &bytes).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

#[test]
fn unsigned_requests_and_responses_round_trip() {
    let job_id = signed_job().job_id();
    let requests = vec![
        Request::Reveal { job_id, attempt: 2 },
        Request::FetchOutput {
            job_id,
            offset: 1 << 20,
            max_bytes: 64 * 1024,
        },
        Request::LedgerSync(LedgerSyncRequest {
            after: Some(job_id),
            limit: 16,
        }),
        Request::Invite(signed_job()),
    ];
    for request in requests {
        let bytes = request.encode().expect("encode");
        assert_eq!(Request::decode(&bytes).expect("decode"), request);
    }
    let responses = vec![
        Response::Ack,
        Response::Refused("busy".into()),
        Response::Output(OutputChunk {
            offset: 3,
            total: 10,
            data: vec![1, 2, 3],
        }),
        Response::Ledger(LedgerSyncResponse {
            entries: vec![Signed::sign(&submitter(), &verdict()).expect("sign")],
            more: true,
            summary: Digest([4; 32]),
        }),
    ];
    for response in responses {
        let bytes = response.encode().expect("encode");
        assert_eq!(Response::decode(&bytes).expect("decode"), response);
    }
}

#[test]
fn changing_any_single_byte_breaks_every_message() {
    for (kind, bytes) in every_signed_message() {
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut tampered = bytes.clone();
                tampered[i] ^= flip;
                assert!(
                    decode_and_open(kind, &tampered).is_err(),
                    "{kind}: flipping byte {i} with {flip:#x} still verified"
                );
            }
        }
    }
}

#[test]
fn a_signature_for_one_type_never_verifies_as_another() {
    for signed_as in MessageKind::ALL {
        let bytes = envelope_bytes(signed_as);
        open_as(signed_as, &bytes).unwrap_or_else(|e| panic!("{signed_as}: {e}"));
        for presented_as in MessageKind::ALL {
            if presented_as != signed_as {
                assert_eq!(
                    open_as(presented_as, &bytes),
                    Err(ValidationError::BadSignature),
                    "{signed_as} presented as {presented_as}"
                );
            }
        }
    }
}

#[test]
fn a_message_signed_by_one_key_cannot_claim_another_signer() {
    let signed = signed_bid(0);
    // Swap in another worker's public key, keeping body and signature.
    let forged: Signed<Bid> = Signed::from_parts(
        signed.body().to_vec(),
        worker(1).public_key(),
        signed.signature(),
    );
    assert_eq!(forged.signer(), worker(1).public_key());
    assert_eq!(forged.open(&ctx()), Err(ValidationError::BadSignature));
}

#[test]
fn job_id_is_the_hash_of_the_signed_announcement() {
    let a = signed_job();
    assert_eq!(
        a.job_id(),
        signed_job().job_id(),
        "signing is deterministic"
    );
    let other_nonce = Signed::sign(
        &submitter(),
        &JobAnnouncement {
            nonce: 78,
            ..job_announcement()
        },
    )
    .expect("sign");
    assert_ne!(a.job_id(), other_nonce.job_id());
    let other_submitter = Signed::sign(&worker(3), &job_announcement()).expect("sign");
    assert_ne!(a.job_id(), other_submitter.job_id());
}
