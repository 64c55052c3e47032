//! Prints the attack simulation's tables: the share of wrong results accepted, with and without
//! reputation-weighted selection, at 10%, 20% and 33% bad workers; farming rings against an
//! honest worker; where a ring stops being held down; and slandering submitters.
//! `cargo run -p distributeai-verifier --example attack-sim --release [JOBS] [SEED]`

use distributeai_verifier::reputation::{GRANT, NEWCOMER_WEIGHT};
use distributeai_verifier::simulation::{
    self, HONEST_SUBMITTERS, RingSettings, SlanderSettings, farming_ring, honest_worker,
    jobs_to_weight, ring_limit, ring_takeoff_size, slander,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2026);
    wrong_results(jobs, seed);
    farming_rings();
    fresh_keys();
    takeoff();
    slanderers();
}

fn wrong_results(jobs: usize, seed: u64) {
    println!(
        "attack simulation: 200 workers, {jobs} jobs, n=3 k=2, 12 bidders per job, seed {seed}"
    );
    println!(
        "bad workers are a third each random liars, colluders, and Sybils (colluders on throwaway identities)"
    );
    println!();
    println!(
        "| bad workers | wrong accepted, uniform | wrong accepted, reputation-weighted | no result, uniform | no result, weighted |"
    );
    println!("|---|---|---|---|---|");
    for row in simulation::attack_table(jobs, seed) {
        println!(
            "| {:.0}% | {:.2}% | {:.2}% | {:.2}% | {:.2}% |",
            row.bad_fraction * 100.0,
            row.uniform.wrong_share() * 100.0,
            row.weighted.wrong_share() * 100.0,
            row.uniform.no_result_share() * 100.0,
            row.weighted.no_result_share() * 100.0
        );
    }
    println!();
}

fn farming_rings() {
    println!(
        "farming rings: fresh keys signing verdicts only about each other (each entry names the next \
         min(r-1, 64) members agreeing and tries to pay each 1 credit), against one fresh honest \
         worker running as many jobs for {HONEST_SUBMITTERS} established submitters in turn, paid 1 credit a job"
    );
    println!();
    println!(
        "| ring size | entries signed | ring: issuer weight | ring: selection weight | ring: credits held | ring: credits spendable | honest worker: issuer weight | honest worker: selection weight | honest worker: credits spendable |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in simulation::ring_table(&[2, 5, 10, 25, 50], &[100, 1_000, 10_000]) {
        println!(
            "| {} | {} | {:.4} | {:.4} | {} | {} | {:.4} | {:.2} | {} |",
            row.settings.ring,
            row.settings.entries,
            row.ring.issuer_weight,
            row.ring.selection_weight,
            row.ring.credits,
            row.ring.spendable,
            row.honest.issuer_weight,
            row.honest.selection_weight,
            row.honest.spendable,
        );
    }
    let to_unlock = (1..=100)
        .find(|&j| honest_worker(j, 0).spendable >= GRANT)
        .unwrap_or(0);
    println!();
    println!(
        "the honest worker's grant is spendable after {to_unlock} jobs; its weight passes 0.25 after {} jobs and 0.9 after {} jobs (each from a distinct established submitter)",
        show(jobs_to_weight(0.2499)),
        show(jobs_to_weight(0.9)),
    );
    println!();
}

fn fresh_keys() {
    let keys = 1_000;
    let entries = 100_000;
    let ring = farming_ring(&RingSettings {
        ring: keys,
        entries,
        reward: 1_000_000_000,
        backers: 0,
    });
    println!(
        "what an attacker with many fresh keys and no honest work can gain: {keys} keys signing {entries} \
         entries of 64 workers each, paying 10^9 a worker: issuer weight {:.4} (a newcomer's is {NEWCOMER_WEIGHT}), \
         selection weight {:.4}, reputation {:.1}, credits spendable {} of {} held ({} payments void)",
        ring.issuer_weight,
        ring.selection_weight,
        ring.reputation,
        ring.spendable,
        ring.credits,
        ring.voided,
    );
    println!();
}

fn takeoff() {
    println!(
        "where it stops holding: a ring lifts itself only when each member already has history from \
         judges outside it (history 1 per distinct established judge, i.e. per identity of the attacker \
         that matured by honest work)"
    );
    println!();
    println!(
        "| outside history per member | its weight | smallest ring that lifts itself to full weight | weight of a 10-ring (mean field) |"
    );
    println!("|---|---|---|---|");
    for s in [0.0, 1.0, 2.0, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0] {
        println!(
            "| {s} | {:.4} | {} | {:.4} |",
            ring_limit(1, s),
            show(ring_takeoff_size(s)),
            ring_limit(10, s),
        );
    }
    println!();
    println!(
        "simulated: rings backed by m established identities of the attacker (each judging every member agreeing twice), then 10,000 ring entries"
    );
    println!();
    println!(
        "| backers m | ring size | ring: issuer weight | ring: credits spendable | mean-field weight |"
    );
    println!("|---|---|---|---|---|");
    for backers in [0, 1, 4, 5, 6] {
        for ring in [2, 10, 25, 50] {
            let out = farming_ring(&RingSettings {
                ring,
                entries: 10_000,
                reward: 0,
                backers,
            });
            println!(
                "| {backers} | {ring} | {:.4} | {} | {:.4} |",
                out.issuer_weight,
                out.spendable,
                ring_limit(ring, backers as f64),
            );
        }
    }
    println!();
}

fn slanderers() {
    println!(
        "slandering submitters: each slander is a job of the slanderer taken by two of its liars and \
         one honest worker, whose own signed reveal shows it disagreeing; the worker ran 100 honest jobs first"
    );
    println!();
    println!(
        "| slanderer | its weight | slanders | worker reputation | worker selection weight | history each liar gained |"
    );
    println!("|---|---|---|---|---|---|");
    let kinds: [(&str, f64, bool); 5] = [
        ("fresh key or ring member", 0.0, false),
        ("judged by 2 established", 2.0, false),
        ("judged by 5 established", 5.0, false),
        ("established", 20.0, false),
        ("established equivocator", 20.0, true),
    ];
    for (name, history, equivocator) in kinds {
        for slanders in [1, 10, 100] {
            let out = slander(&SlanderSettings {
                slanderer_history: history,
                equivocator,
                honest_jobs: 100,
                slanders,
            });
            println!(
                "| {name} | {:.4} | {slanders} | {:.1} -> {:.1} | {:.2} -> {:.2} | {:.3} |",
                out.slanderer_weight,
                out.before.reputation,
                out.after.reputation,
                out.before.selection_weight,
                out.after.selection_weight,
                out.liar_history,
            );
        }
    }
}

fn show(n: Option<usize>) -> String {
    n.map_or_else(|| "never".to_owned(), |n| n.to_string())
}
