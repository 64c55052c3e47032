//! Validation rules: bounds, consensus parameters, clocks and verdict consistency.

mod common;

use common::*;
use distributeai_protocol::limits::*;
use distributeai_protocol::*;

type SpecEdit = Box<dyn FnOnce(&mut JobSpec)>;

fn spec_error(edit: impl FnOnce(&mut JobSpec)) -> ValidationError {
    let mut spec = spec();
    edit(&mut spec);
    spec.check().expect_err("spec should be rejected")
}

fn field_of(err: &ValidationError) -> &'static str {
    err.field().unwrap_or_else(|| panic!("no field in {err:?}"))
}

#[test]
fn spec_errors_name_the_field() {
    spec().check().expect("sample is valid");
    let cases: Vec<(&str, SpecEdit)> = vec![
        ("image", Box::new(|s| s.image.clear())),
        (
            "image",
            Box::new(|s| s.image = "a".repeat(MAX_IMAGE_LEN + 1)),
        ),
        ("image", Box::new(|s| s.image = "busybox; rm -rf /".into())),
        (
            "image_digest",
            Box::new(|s| s.image_digest = Some("md5:abc".into())),
        ),
        (
            "command",
            Box::new(|s| s.command = vec!["x".into(); MAX_COMMAND_ARGS + 1]),
        ),
        (
            "command",
            Box::new(|s| s.command = vec!["x".repeat(MAX_ARG_LEN + 1)]),
        ),
        ("command", Box::new(|s| s.command = vec!["a\0b".into()])),
        (
            "env",
            Box::new(|s| {
                s.env.insert("1BAD".into(), "v".into());
            }),
        ),
        (
            "env",
            Box::new(|s| {
                s.env.insert("K".into(), "v".repeat(MAX_ENV_VALUE_LEN + 1));
            }),
        ),
        (
            "env",
            Box::new(|s| {
                s.env = (0..=MAX_ENV_ENTRIES)
                    .map(|i| (format!("K{i}"), String::new()))
                    .collect();
            }),
        ),
        (
            "resources.cpus",
            Box::new(|s| s.resources.cpus = Cpus::whole(0)),
        ),
        (
            "resources.memory_mb",
            Box::new(|s| s.resources.memory_mb = 1),
        ),
        (
            "resources.memory_mb",
            Box::new(|s| s.resources.memory_mb = MAX_MEMORY_MB + 1),
        ),
        (
            "resources.gpus",
            Box::new(|s| s.resources.gpus = MAX_GPUS + 1),
        ),
        ("timeout_s", Box::new(|s| s.timeout_s = 0)),
        ("timeout_s", Box::new(|s| s.timeout_s = MAX_TIMEOUT_S + 1)),
        ("consensus", Box::new(|s| s.consensus = 0)),
        ("consensus", Box::new(|s| s.consensus = 4)),
        // n out of range is n's fault, whatever k is (it used to be reported as k's).
        (
            "redundancy",
            Box::new(|s| {
                s.redundancy = MAX_REDUNDANCY + 1;
                s.consensus = 1;
            }),
        ),
        ("redundancy", Box::new(|s| s.redundancy = 0)),
        ("reward", Box::new(|s| s.reward = u64::MAX)),
    ];
    for (field, edit) in cases {
        let err = spec_error(edit);
        assert_eq!(field_of(&err), field, "{err}");
        assert!(
            err.to_string().contains(field) || field == "consensus",
            "{err}"
        );
    }
}

#[test]
fn consensus_bounds_are_exactly_one_to_n_to_sixteen() {
    for n in 0..=MAX_REDUNDANCY + 1 {
        for k in 0..=n + 1 {
            let mut s = spec();
            s.redundancy = n;
            s.consensus = k;
            let valid = 1 <= k && k <= n && n <= MAX_REDUNDANCY;
            let checked = s.check();
            assert_eq!(checked.is_ok(), valid, "n={n} k={k}");
            // An n out of range is blamed on n, whatever k is.
            if n == 0 || n > MAX_REDUNDANCY {
                let e = checked.expect_err("refused");
                assert_eq!(field_of(&e), "redundancy", "n={n} k={k}: {e}");
            }
        }
    }
}

#[test]
fn json_spec_uses_defaults_and_refuses_unknown_fields() {
    let spec: JobSpec =
        serde_json::from_str(r#"{"image": "busybox", "command": ["true"]}"#).expect("parse");
    assert_eq!(spec.redundancy, 3);
    assert_eq!(spec.consensus, 2);
    assert_eq!(spec.timeout_s, JobSpec::DEFAULT_TIMEOUT_S);
    spec.check().expect("valid");
    assert!(serde_json::from_str::<JobSpec>(r#"{"image": "busybox", "redundnacy": 3}"#).is_err());
}

#[test]
fn cpus_are_decimal_in_specs_and_exact_on_the_wire() {
    // Issue 12: `"cpus": 0.5` was refused by serde with a message that did not name the field.
    let half: JobSpec = serde_json::from_str(
        r#"{"image": "busybox", "command": ["true"], "resources": {"cpus": 0.5}}"#,
    )
    .expect("a fractional CPU count parses");
    assert_eq!(half.resources.cpus, Cpus::from_millis(500));
    assert_eq!(half.resources.cpus.nano_cpus(), 500_000_000);
    half.check().expect("valid");
    let two: JobSpec = serde_json::from_str(
        r#"{"image": "busybox", "command": ["true"], "resources": {"cpus": 2}}"#,
    )
    .expect("a whole count parses");
    assert_eq!(two.resources.cpus, Cpus::whole(2));
    // Written back as it was given, and the same through CBOR.
    let json = serde_json::to_value(&half).expect("json");
    assert_eq!(json["resources"]["cpus"], serde_json::json!(0.5));
    assert_eq!(
        serde_json::to_value(&two).expect("json")["resources"]["cpus"],
        2
    );
    let bytes = codec::encode(&half).expect("cbor");
    let back: JobSpec = codec::decode(&bytes).expect("decode");
    assert_eq!(back, half);
    assert_eq!(Cpus::from_millis(2250).to_string(), "2.25");
    assert_eq!(Cpus::parse("0.25"), Ok(Cpus::from_millis(250)));
    // More than three decimals, negative, or not a number: refused, saying why.
    for bad in [r#"0.0001"#, r#"-1"#, r#""one""#] {
        let text = format!(r#"{{"image": "busybox", "resources": {{"cpus": {bad}}}}}"#);
        assert!(serde_json::from_str::<JobSpec>(&text).is_err(), "{bad}");
    }
    assert!(Cpus::parse("1e-4").is_err());
    // Parsed, but below what Docker takes: refused naming the field.
    let mut tiny = half.clone();
    tiny.resources.cpus = Cpus::from_millis(5);
    let err = tiny.check().expect_err("0.005 CPUs");
    assert!(err.to_string().contains("resources.cpus"), "{err}");
}

#[test]
fn timestamps_outside_the_skew_are_refused_when_live_only() {
    let s = submitter();
    let at = |issued_at| {
        Signed::sign(
            &s,
            &JobCancel {
                issued_at,
                ..job_cancel()
            },
        )
        .expect("sign")
    };
    let live = ctx();
    at(NOW).open(&live).expect("now");
    at(NOW - MAX_CLOCK_SKEW_MS)
        .open(&live)
        .expect("edge of the skew");
    assert!(matches!(
        at(NOW - MAX_CLOCK_SKEW_MS - 1).open(&live),
        Err(ValidationError::Stale { .. })
    ));
    assert!(matches!(
        at(NOW + MAX_CLOCK_SKEW_MS + 1).open(&live),
        Err(ValidationError::FromFuture { .. })
    ));
    // Archived messages may be old but never from the future.
    at(NOW - 10 * MAX_CLOCK_SKEW_MS)
        .open(&live.archived())
        .expect("old archived");
    assert!(
        at(NOW + MAX_CLOCK_SKEW_MS + 1)
            .open(&live.archived())
            .is_err()
    );
}

#[test]
fn expired_or_overlong_jobs_are_refused() {
    let s = submitter();
    let job = |expires_at| {
        Signed::sign(
            &s,
            &JobAnnouncement {
                expires_at,
                ..job_announcement()
            },
        )
        .expect("sign")
    };
    let later = ValidationContext::live_at(NOW + 2_000);
    assert!(matches!(
        job(NOW + 1_000).open(&later),
        Err(ValidationError::Expired { .. })
    ));
    assert!(job(NOW).open(&ctx()).is_err());
    assert!(job(NOW + MAX_JOB_LIFETIME_MS + 1).open(&ctx()).is_err());
}

/// Issue 12's input: a worker whose clock runs 120 s ahead refused every assignment whose
/// deadline (timeout + 60 s) was under 120 s away, with "expired at ...". A deadline is a
/// duration from `issued_at`; only `issued_at` is held to the skew bound.
#[test]
fn an_assignment_is_judged_by_its_duration_not_by_the_receivers_clock() {
    let short = Assignment {
        deadline: NOW + 65_000,
        ..assignment()
    };
    let signed = Signed::sign(&submitter(), &short).expect("sign");
    let ahead = ValidationContext::live_at(NOW + 120_000);
    assert!(
        signed.open(&ahead).is_ok(),
        "{:?}",
        signed.open(&ahead).err()
    );
    // Beyond the skew bound, the error says so, with both times.
    let far = ValidationContext::live_at(NOW + MAX_CLOCK_SKEW_MS + 1);
    let err = signed.open(&far).expect_err("too far").to_string();
    assert!(err.contains("clock skew"), "{err}");
    assert!(
        err.contains(&NOW.to_string()) && err.contains(&(NOW + MAX_CLOCK_SKEW_MS + 1).to_string()),
        "{err}"
    );
}

#[test]
fn reveal_must_match_its_manifest() {
    let mut answer = revealed();
    answer.reveal = Signed::sign(
        &worker(0),
        &ResultReveal {
            result_hash: ResultHash([1; 32]),
            ..reveal()
        },
    )
    .expect("sign");
    let err = answer.open(&ctx()).expect_err("mismatch");
    assert_eq!(field_of(&err), "result_hash");
    // The end and image the worker signs are those of its manifest.
    let mut answer = revealed();
    answer.reveal = Signed::sign(
        &worker(0),
        &ResultReveal {
            end: JobEnd::Exited { code: 1 },
            ..reveal()
        },
    )
    .expect("sign");
    let err = answer.open(&ctx()).expect_err("mismatch");
    assert_eq!(field_of(&err), "manifest", "{err}");
    revealed().open(&ctx()).expect("the sample opens");
}

/// The error of a reveal answer whose manifest (and so signed hash) was edited.
fn reveal_error(edit: impl FnOnce(&mut RevealedResult)) -> ValidationError {
    let mut answer = revealed();
    edit(&mut answer);
    let hash = answer.manifest.result_hash().unwrap_or(ResultHash([0; 32]));
    let reveal = ResultReveal {
        result_hash: hash,
        end: answer.manifest.end,
        image: answer.manifest.image.clone(),
        ..reveal()
    };
    answer.reveal = Signed::sign(&worker(0), &reveal).expect("sign");
    answer.open(&ctx()).expect_err("refused")
}

#[test]
fn a_reveal_names_the_bound_it_breaks() {
    // A job that did not exit has no output to claim.
    let err = reveal_error(|r| r.manifest.end = JobEnd::TimedOut);
    assert_eq!(field_of(&err), "manifest", "{err}");
    // The image that ran is a digest, and required unless it was unavailable.
    let err = reveal_error(|r| r.manifest.image = "latest".into());
    assert_eq!(field_of(&err), "image", "{err}");
    let err = reveal_error(|r| r.manifest.image.clear());
    assert_eq!(field_of(&err), "image", "{err}");
    // An unavailable image has no id: one claimed anyway would make a verdict others refuse.
    let err = reveal_error(|r| {
        r.manifest = OutputManifest::without_output(JobEnd::ImageUnavailable, IMAGE);
    });
    assert_eq!(field_of(&err), "image", "{err}");
    // Tails are bounded.
    let err = reveal_error(|r| r.diagnostics.stderr_tail = vec![b'x'; MAX_TAIL_BYTES + 1]);
    assert_eq!(field_of(&err), "diagnostics.stderr_tail", "{err}");
    let err = reveal_error(|r| r.diagnostics.detail = "x".repeat(MAX_REASON_LEN + 1));
    assert_eq!(field_of(&err), "diagnostics.detail", "{err}");
}

#[test]
fn long_texts_are_cut_at_a_word_never_inside_one() {
    let text = "exec: \"nonexistentcmd\": executable file not found in $PATH";
    assert_eq!(validate::fit_text(text, 200), text);
    let cut = validate::fit_text(text, 30);
    assert!(cut.len() <= 30, "{cut}");
    assert_eq!(cut, "exec: \"nonexistentcmd\":…");
    // One word longer than the limit is cut on a character boundary.
    let cut = validate::fit_text(&"é".repeat(40), 20);
    assert!(cut.len() <= 20 && cut.ends_with('…'), "{cut}");
    // A worker fault keeps a whole engine message.
    let long = format!("{} end", "word ".repeat(300));
    assert_eq!(WorkerFault::new(&long).reason, long);
}

fn open_verdict(signer: &NodeIdentity, verdict: Verdict) -> Result<(), ValidationError> {
    Signed::sign(signer, &verdict)
        .expect("sign")
        .open(&ctx())
        .map(|_| ())
}

/// The field a refused verdict's error names, through nesting.
fn verdict_error(v: Verdict) -> String {
    match open_verdict(&submitter(), v) {
        Ok(()) => panic!("the verdict was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn forged_verdicts_are_rejected() {
    let s = submitter();
    open_verdict(&s, verdict()).expect("sample is valid");

    // Issued by someone other than the job's submitter.
    assert!(matches!(
        open_verdict(&worker(0), verdict()),
        Err(ValidationError::WrongSigner(_))
    ));

    // A worker whose bid was for another job.
    let mut v = verdict();
    let other_job = Signed::sign(
        &s,
        &JobAnnouncement {
            nonce: 1,
            ..job_announcement()
        },
    )
    .expect("sign")
    .job_id();
    v.workers[0].bid = Signed::sign(
        &worker(0),
        &Bid {
            job_id: other_job,
            ..bid()
        },
    )
    .expect("sign");
    assert!(matches!(
        open_verdict(&s, v),
        Err(ValidationError::JobIdMismatch { .. })
    ));

    // A worker listed twice to reach consensus.
    let mut v = verdict();
    v.workers[1].bid = signed_bid(0);
    v.workers[1].evidence = v.workers[0].evidence.clone();
    assert!(open_verdict(&s, v).is_err());

    // Accepted with fewer agreeing workers than k.
    let mut v = verdict();
    v.workers[1].result = WorkerResult::Failed(WorkerFault::new("engine down"));
    v.workers[1].evidence = failure_evidence(1, "engine down");
    v.workers[1].paid = 0;
    assert!(verdict_error(v).contains("no hash is revealed by 2 workers"));

    // Paying a worker that did not agree, or more than the reward.
    let mut v = verdict();
    v.workers[2].paid = 10;
    assert!(open_verdict(&s, v).is_err());
    let mut v = verdict();
    v.workers[0].paid = 11;
    assert!(open_verdict(&s, v).is_err());

    // A bid whose signature was tampered with (claims a worker who never bid).
    let mut v = verdict();
    let genuine = signed_bid(0);
    v.workers[0].bid = Signed::from_parts(
        genuine.body().to_vec(),
        worker(7).public_key(),
        genuine.signature(),
    );
    assert!(matches!(
        open_verdict(&s, v),
        Err(ValidationError::Nested {
            field: "workers.bid",
            ..
        })
    ));

    // Evidence signed by another worker than the one judged.
    let mut v = verdict();
    v.workers[2].evidence = revealed_evidence(0, &other_manifest());
    assert!(matches!(
        open_verdict(&s, v),
        Err(ValidationError::WrongSigner(_))
    ));

    // A failed job cannot list agreeing workers.
    let mut v = verdict();
    v.outcome = VerdictOutcome::Failed("gave up".into());
    for w in &mut v.workers {
        w.paid = 0;
    }
    assert!(open_verdict(&s, v).is_err());

    // A job that no worker took leaves no entry.
    let mut v = verdict();
    v.outcome = VerdictOutcome::Failed("nobody bid".into());
    v.workers.clear();
    assert!(verdict_error(v).contains("no ledger entry"));
}

/// Issue 19: a submitter that slanders a bidder it never assigned (workers bid on every job
/// they can run, so it holds their signed bids) is refused: silence needs the worker's signed
/// acceptance of its assignment.
#[test]
fn slandering_a_silent_bidder_it_never_assigned_is_refused() {
    let mut v = verdict();
    v.workers.push(WorkerRecord {
        bid: signed_bid(5),
        // The only signature of worker 5 the submitter holds is its bid.
        evidence: Evidence::Failed {
            commitment: signed_commitment(5),
        },
        result: WorkerResult::Silent,
        paid: 0,
    });
    assert!(verdict_error(v).contains("silence needs the worker's signed acceptance"));
    // Its acceptance, but before the deadline it accepted has passed.
    let mut v = verdict();
    v.workers[4].evidence = Evidence::Accepted {
        acceptance: Signed::sign(&worker(4), &ack(NOW, 600_000)).expect("sign"),
    };
    assert!(verdict_error(v).contains("before the deadline"));
    // The acceptance of another job.
    let mut v = verdict();
    let mut other = ack(NOW - 240_000, 60_000);
    other.job_id = JobId([3; 32]);
    v.workers[4].evidence = Evidence::Accepted {
        acceptance: Signed::sign(&worker(4), &other).expect("sign"),
    };
    assert!(matches!(
        open_verdict(&submitter(), v),
        Err(ValidationError::JobIdMismatch { .. })
    ));
    // A failure the worker never reported.
    let mut v = verdict();
    v.workers[4].result = WorkerResult::Failed(WorkerFault::new("made up"));
    assert!(verdict_error(v).contains("failure needs the worker's signed failure report"));
    let mut v = verdict();
    v.workers[3].result = WorkerResult::Failed(WorkerFault::new("something else"));
    assert!(verdict_error(v).contains("the one the worker signed"));
}

/// Issue 19: the protocol's old sample listed a worker as disagreeing with a hash it never
/// committed to, and validated. A disagreement now needs the worker's reveal of that hash,
/// opening its commitment.
#[test]
fn a_disagreement_needs_a_reveal_that_opens_the_commitment() {
    let other = other_manifest();
    // The charge names a hash the worker never revealed.
    let mut v = verdict();
    v.workers[2].result = WorkerResult::Disagreed(ResultHash([0xee; 32]));
    assert!(verdict_error(v).contains("the hash the worker revealed"));
    // The reveal is missing: only the commitment is shown.
    let mut v = verdict();
    v.workers[2].evidence = Evidence::Failed {
        commitment: commitment_to(2, &other),
    };
    assert!(verdict_error(v).contains("commitment and the reveal that opens it"));
    // A reveal that does not open the commitment (another salt).
    let mut v = verdict();
    let mut reveal = reveal_of(2, &other);
    reveal.salt = Digest([1; 32]);
    v.workers[2].evidence = Evidence::Revealed {
        commitment: commitment_to(2, &other),
        reveal: Signed::sign(&worker(2), &reveal).expect("sign"),
    };
    assert!(verdict_error(v).contains("does not open the commitment"));
    // The commitment of a failure cannot be opened as a result.
    let mut v = verdict();
    let Evidence::Failed { commitment } = failure_evidence(2, "engine down") else {
        unreachable!()
    };
    v.workers[2].evidence = Evidence::Revealed {
        commitment,
        reveal: Signed::sign(&worker(2), &reveal_of(2, &other)).expect("sign"),
    };
    assert!(verdict_error(v).contains("needs a commitment to one"));
}

/// Issue 19: the first workers are drawn among the bids, weighted, with uniforms from a hash
/// of the job and the bids: anyone replays the draw from the verdict.
#[test]
fn the_draw_is_replayed_from_the_recorded_bids() {
    let job_id = signed_job().job_id();
    let draw = sample_draw();
    let mut chosen = draw.chosen(&job_id, 3);
    chosen.sort_by_key(|k| k.to_hex());
    let mut expected: Vec<PublicKey> = (0..3).map(|i| worker(i).public_key()).collect();
    expected.sort_by_key(|k| k.to_hex());
    assert_eq!(chosen, expected);
    // The same draw on every node: uniforms come from the job and the bids alone.
    assert_eq!(draw.uniforms(&job_id), sample_draw().uniforms(&job_id));
    assert!(draw.uniforms(&job_id).iter().all(|u| *u > 0.0 && *u <= 1.0));

    // Attempt 0 given to a worker the draw did not pick (the submitter favoured worker 4).
    let mut v = verdict();
    v.draw.weights = vec![1_000_000, 1_000_000, 0, 0, 1_000_000];
    assert!(verdict_error(v).contains("the draw did not pick"));
    // A candidate's bid for another job, or one worker twice.
    let mut v = verdict();
    v.draw.candidates.push(signed_bid(0));
    v.draw.weights.push(0);
    v.draw.groups.push(5);
    assert!(verdict_error(v).contains("a worker bid twice"));
    let mut v = verdict();
    v.draw.groups.pop();
    assert!(verdict_error(v).contains("one weight and one group per candidate"));
    let mut v = verdict();
    v.draw = Draw {
        candidates: Vec::new(),
        weights: Vec::new(),
        groups: Vec::new(),
    };
    assert!(verdict_error(v).contains("drawn from no candidates"));
}

/// Issue 19: a worker whose reveal matches the accepted hash cannot be called disagreeing.
#[test]
fn a_disagreement_whose_reveal_matches_the_accepted_hash_is_refused() {
    let manifest = manifest();
    let mut v = verdict();
    v.workers[2].evidence = revealed_evidence(2, &manifest);
    v.workers[2].result = WorkerResult::Disagreed(manifest.result_hash().expect("hash"));
    assert!(verdict_error(v).contains("does not follow"));
    // Nor left unpaid as agreeing.
    let mut v = verdict();
    v.workers[2].evidence = revealed_evidence(2, &manifest);
    v.workers[2].result = WorkerResult::Agreed;
    assert!(verdict_error(v).contains("reward"));
    // Paid, it is a correct record.
    let mut v = verdict();
    v.workers[2].evidence = revealed_evidence(2, &manifest);
    v.workers[2].result = WorkerResult::Agreed;
    v.workers[2].paid = 10;
    open_verdict(&submitter(), v).expect("three agreeing workers");
}

/// Issue 19: the outcome is recomputed from the reveals with the k-of-n tally, in the
/// verdict's order: the accepted hash must be the one k reveals reach first.
#[test]
fn the_outcome_is_recomputed_from_the_reveals() {
    let other = other_manifest();
    let other_hash = other.result_hash().expect("hash");
    // Claiming the minority hash was accepted.
    let mut v = verdict();
    v.outcome = VerdictOutcome::Accepted(AgreedResult {
        hash: other_hash,
        end: other.end,
        image: other.image.clone(),
    });
    assert!(verdict_error(v).contains("not the one the revealed results decide"));
    // Failing a job whose reveals reach consensus.
    let mut v = verdict();
    v.outcome = VerdictOutcome::Failed("no agreement".into());
    assert!(verdict_error(v).contains("must be accepted"));
    // A job that timed out on k workers is decided as such; claiming it exited is refused.
    let mut v = verdict();
    if let VerdictOutcome::Accepted(agreed) = &mut v.outcome {
        agreed.end = JobEnd::TimedOut;
    }
    assert!(verdict_error(v).contains("end and image"));
    // A failed job with only failures and silences is an entry.
    let mut v = verdict();
    v.outcome = VerdictOutcome::Failed("no agreement".into());
    v.workers.drain(..3);
    open_verdict(&submitter(), v).expect("failures and silence with evidence");
}

#[test]
fn node_announcement_bounds() {
    let w = worker(0);
    let mut a = node_announcement();
    a.listen_addrs = vec!["/ip4/1.2.3.4/tcp/1".into(); MAX_LISTEN_ADDRS + 1];
    assert!(Signed::sign(&w, &a).expect("sign").open(&ctx()).is_err());
    let mut a = node_announcement();
    a.capabilities.region = "x".repeat(MAX_SHORT_TEXT_LEN + 1);
    assert!(Signed::sign(&w, &a).expect("sign").open(&ctx()).is_err());
    let mut a = node_announcement();
    a.started_at = a.issued_at + 1;
    assert!(Signed::sign(&w, &a).expect("sign").open(&ctx()).is_err());
    // The links that draw the mesh: bounded, and each a PeerId.
    let mut a = node_announcement();
    a.links = vec![a.links[0].clone(); MAX_ANNOUNCED_LINKS + 1];
    assert!(Signed::sign(&w, &a).expect("sign").open(&ctx()).is_err());
    let mut a = node_announcement();
    a.links[0].peer = "not a peer".into();
    let refused = Signed::sign(&w, &a)
        .expect("sign")
        .open(&ctx())
        .expect_err("refused");
    assert!(refused.to_string().contains("links"), "{refused}");
    Signed::sign(&w, &node_announcement())
        .expect("sign")
        .open(&ctx())
        .expect("the fixture is valid");
}

#[test]
fn an_announcement_without_links_from_an_older_node_still_reads() {
    #[derive(serde::Serialize)]
    struct Older {
        capabilities: Capabilities,
        listen_addrs: Vec<String>,
        accepts_jobs: bool,
        issued_at: u64,
        started_at: u64,
        sequence: u64,
    }
    let a = node_announcement();
    let older = Older {
        capabilities: a.capabilities.clone(),
        listen_addrs: a.listen_addrs.clone(),
        accepts_jobs: a.accepts_jobs,
        issued_at: a.issued_at,
        started_at: a.started_at,
        sequence: a.sequence,
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&older, &mut bytes).expect("encode");
    let read: NodeAnnouncement = ciborium::from_reader(bytes.as_slice()).expect("decode");
    assert!(read.links.is_empty());
    assert_eq!(read.listen_addrs, a.listen_addrs);
}

#[test]
fn reasons_are_stable_labels() {
    assert_eq!(ValidationError::BadSignature.reason(), "bad_signature");
    let oversized = Request::decode(&vec![0u8; MAX_MESSAGE_BYTES + 1]).expect_err("too big");
    assert_eq!(oversized.reason(), "oversized");
    assert_eq!(
        Request::decode(&[0xff]).expect_err("junk").reason(),
        "undecodable"
    );
}

/// Issue 19: a verdict about a job that could not have been announced live when its work was
/// done is refused: a node that did not see the announcement checks that the verdict and
/// every piece of evidence were signed within the job's life as the protocol bounds it.
#[test]
fn a_verdict_for_a_job_that_was_never_live_is_refused() {
    // A job announced ten days ago, judged now: far past its expiry and the day allowed.
    let mut old = job_announcement();
    old.issued_at = NOW - 10 * 24 * 3_600_000;
    old.expires_at = old.issued_at + 3_600_000;
    let mut v = verdict();
    v.job = Signed::sign(&submitter(), &old).expect("sign");
    assert!(verdict_error(v).contains("soon after it expires"));
    // Evidence signed before the job existed (a bid from an hour before its announcement).
    let mut v = verdict();
    let early = Bid {
        issued_at: NOW - 3_600_000,
        ..bid()
    };
    v.workers[0].bid = Signed::sign(&worker(0), &early).expect("sign");
    assert!(verdict_error(v).contains("outside the job's life"));
    // A verdict dated before its job.
    let mut v = verdict();
    v.issued_at = NOW - 3_600_000;
    assert!(open_verdict(&submitter(), v).is_err());
}
