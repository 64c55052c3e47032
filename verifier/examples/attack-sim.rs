//! Prints the share of wrong results accepted, with and without reputation-weighted selection,
//! at 10%, 20% and 33% bad workers. `cargo run -p distributeai-verifier --example attack-sim --release [JOBS] [SEED]`

fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2026);
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
    for row in distributeai_verifier::simulation::attack_table(jobs, seed) {
        println!(
            "| {:.0}% | {:.2}% | {:.2}% | {:.2}% | {:.2}% |",
            row.bad_fraction * 100.0,
            row.uniform.wrong_share() * 100.0,
            row.weighted.wrong_share() * 100.0,
            row.uniform.no_result_share() * 100.0,
            row.weighted.no_result_share() * 100.0
        );
    }
}
