//! The CLI commands that talk to a running node through its local HTTP API.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use distributeai_api::{ApiClient, JobStatus, JobView, Reachability};
use distributeai_protocol::JobSpec;

use crate::cli::{ApiArgs, SubmitArgs};

/// The typed client of the node the flags point at.
fn client(args: &ApiArgs) -> ApiClient {
    ApiClient::new(&args.api).with_token(crate::cli::api_token_or_default(args.api_token.clone()))
}

/// Prints `value` as pretty JSON (`--json`).
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Builds the spec from the file and flags.
fn spec_from(args: &SubmitArgs) -> Result<JobSpec> {
    let mut spec = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            crate::jobs::spec_from_json(text.as_bytes())
                .map_err(|e| anyhow::anyhow!("{} is not a valid job spec: {e}", path.display()))?
        }
        None => {
            let image = args
                .image
                .clone()
                .context("give an IMAGE (and a command after --), or a spec with --file")?;
            JobSpec::new(image, Vec::new())
        }
    };
    if args.file.is_some()
        && let Some(image) = &args.image
    {
        spec.image = image.clone();
    }
    if !args.command.is_empty() {
        spec.command = args.command.clone();
    }
    if let Some(n) = args.redundancy {
        spec.redundancy = n;
    }
    if let Some(k) = args.consensus {
        spec.consensus = k;
    }
    if let Some(cpus) = args.cpus {
        spec.resources.cpus = cpus;
    }
    if let Some(memory) = args.memory_mb {
        spec.resources.memory_mb = memory;
    }
    if let Some(timeout) = args.timeout {
        spec.timeout_s = timeout;
    }
    if let Some(reward) = args.reward {
        spec.reward = reward;
    }
    spec.check()
        .map_err(|e| anyhow::anyhow!("invalid job: {e}"))?;
    Ok(spec)
}

/// `distributeai submit`.
pub async fn submit(args: SubmitArgs) -> Result<()> {
    let spec = spec_from(&args)?;
    let api = client(&args.api);
    let job = api.submit(&spec).await.context("submitting")?;
    if !args.wait {
        if args.api.json {
            outln!("{}", serde_json::to_string_pretty(&job)?);
        } else {
            outln!("{}", job.id);
        }
        return Ok(());
    }
    if !args.api.json {
        outln!(
            "job {} submitted (n={}, k={})",
            job.id,
            job.spec.redundancy,
            job.spec.consensus
        );
    }
    let final_job = follow(&api, &job.id, !args.api.json).await?;
    if args.api.json {
        outln!("{}", serde_json::to_string_pretty(&final_job)?);
    } else {
        print_summary(&final_job)?;
        if final_job.status == JobStatus::Completed {
            let output = api
                .result_stdout(&job.id)
                .await
                .context("fetching the result")?;
            match shown_output(&output) {
                Some(text) => {
                    outln!("verified output ({}):", bytes(output.len()));
                    out_text(text)?;
                }
                None => outln!(
                    "verified output: {} ({}); `distributeai result {}` prints it, `-o DIR` writes its files",
                    bytes(output.len()),
                    if std::str::from_utf8(&output).is_ok() {
                        "too long to show here"
                    } else {
                        "not text"
                    },
                    final_job.id
                ),
            }
        }
    }
    match final_job.status {
        JobStatus::Completed => Ok(()),
        status => bail!(
            "job {} ended {}: {}",
            final_job.id,
            format!("{status:?}").to_lowercase(),
            final_job
                .failure_reason
                .as_deref()
                .unwrap_or("no reason given")
        ),
    }
}

/// Most output `submit --wait` shows in the terminal (bytes).
const MAX_SHOWN_OUTPUT: usize = 64 * 1024;

/// The output as text, if it is text and short enough to show in a terminal.
fn shown_output(output: &[u8]) -> Option<&str> {
    if output.len() > MAX_SHOWN_OUTPUT {
        return None;
    }
    std::str::from_utf8(output).ok()
}

/// A byte count, with the noun in the right number.
fn bytes(n: usize) -> String {
    distributeai_jobflow::count(n, "byte", "bytes")
}

fn out_text(text: &str) -> Result<()> {
    out_bytes(text.as_bytes())
}

/// Writes raw output to stdout; see `outln!` for why its errors are kept apart.
fn out_bytes(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).map_err(crate::StdoutError)?;
    stdout.flush().map_err(crate::StdoutError)?;
    Ok(())
}

/// Polls a job until it is final, printing its timeline as it grows.
async fn follow(api: &ApiClient, id: &str, print: bool) -> Result<JobView> {
    let mut shown = 0usize;
    let mut start: Option<u64> = None;
    loop {
        let job = api.job(id).await.context("following the job")?;
        if print {
            let lines = api.logs(id).await.context("reading the timeline")?;
            let t0 = *start.get_or_insert(job.submitted_at);
            for line in lines.iter().skip(shown) {
                let secs = line.at.saturating_sub(t0) as f64 / 1000.0;
                outln!("  [{secs:>6.2}s] {}", line.message);
            }
            shown = lines.len();
        }
        if job.status.is_final() {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_summary(job: &JobView) -> Result<()> {
    outln!(
        "job {}: {}",
        job.id,
        format!("{:?}", job.status).to_lowercase()
    );
    outln!(
        "  image: {}  n={} k={}",
        job.spec.image,
        job.spec.redundancy,
        job.spec.consensus
    );
    outln!("  bids: {}", job.bids.len());
    for e in &job.executions {
        outln!(
            "  worker {}  {:<9} hash {}  {}{}",
            e.peer_id,
            format!("{:?}", e.status).to_lowercase(),
            e.result_hash.as_deref().map(|h| &h[..12]).unwrap_or("-"),
            e.end.as_deref().unwrap_or("-"),
            e.failure
                .as_deref()
                .map(|f| format!("  ({f})"))
                .unwrap_or_default()
        );
    }
    if let Some(v) = &job.verdict {
        match (v.end.as_deref(), v.result_hash.as_deref()) {
            // Agreed, but on the job's own failure: say that first, not "accepted".
            (Some(end), Some(hash)) if !end.starts_with("exit code") => outln!(
                "  verdict: the job's own failure, agreed: {end} (result {})",
                &hash[..12.min(hash.len())]
            ),
            _ => outln!(
                "  verdict: {} {}{}",
                v.outcome,
                v.result_hash
                    .as_deref()
                    .or(v.reason.as_deref())
                    .unwrap_or(""),
                v.end
                    .as_deref()
                    .map(|end| format!(" ({end})"))
                    .unwrap_or_default()
            ),
        }
        if let Some(image) = &v.image {
            outln!("    image ran:   {image}");
        }
        if !v.agreeing.is_empty() {
            outln!("    agreeing:    {}", v.agreeing.join(", "));
        }
        if !v.disagreeing.is_empty() {
            outln!("    disagreeing: {}", v.disagreeing.join(", "));
        }
        if !v.failed.is_empty() {
            outln!("    failed:      {}", v.failed.join(", "));
        }
        if !v.silent.is_empty() {
            outln!("    silent:      {}", v.silent.join(", "));
        }
    }
    // Said once: a failed verdict already carries the reason.
    let in_verdict = job
        .verdict
        .as_ref()
        .is_some_and(|v| v.reason.is_some() && v.reason == job.failure_reason);
    if let Some(reason) = job.failure_reason.as_ref().filter(|_| !in_verdict) {
        outln!("  failed: {reason}");
    }
    if let Some(reason) = &job.queued_reason {
        outln!("  queued: {reason}");
    }
    if job.status != JobStatus::Completed {
        print_tails(job)?;
    }
    let t = &job.timings;
    let ms = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
    outln!(
        "  timings: bidding {}, execution {}, verification {}, output fetch {}, total {}",
        ms(t.bidding_ms),
        ms(t.execution_ms),
        ms(t.verification_ms),
        ms(t.fetch_ms),
        ms(t.total_ms)
    );
    Ok(())
}

/// For a job that did not complete: what its workers saw of the end (the engine's message and
/// the last output before it), from the first worker that revealed any, so the output printed
/// before a timeout is not lost (issue 12).
fn print_tails(job: &JobView) -> Result<()> {
    let Some(e) = job
        .executions
        .iter()
        .find(|e| e.detail.is_some() || e.stdout_tail.is_some() || e.stderr_tail.is_some())
    else {
        return Ok(());
    };
    outln!("  what worker {} saw of the end:", e.peer_id);
    if let Some(detail) = &e.detail {
        outln!("    {detail}");
    }
    for (name, tail) in [("stdout", &e.stdout_tail), ("stderr", &e.stderr_tail)] {
        if let Some(tail) = tail {
            outln!("    last {name}:");
            for line in tail.lines() {
                outln!("      {line}");
            }
        }
    }
    Ok(())
}

/// `distributeai get`.
pub async fn get(id: &str, args: &ApiArgs) -> Result<()> {
    let job = client(args).job(id).await.context("getting the job")?;
    if args.json {
        return print_json(&job);
    }
    print_summary(&job)?;
    Ok(())
}

/// `distributeai list`.
pub async fn list(args: &ApiArgs) -> Result<()> {
    let jobs = client(args).jobs().await.context("listing jobs")?;
    if args.json {
        return print_json(&jobs);
    }
    outln!("{:<66} {:<10} {:<5} IMAGE", "JOB ID", "STATUS", "N/K");
    for job in &jobs {
        outln!(
            "{:<66} {:<10} {:<5} {}",
            job.id,
            format!("{:?}", job.status).to_lowercase(),
            format!("{}/{}", job.spec.redundancy, job.spec.consensus),
            job.spec.image
        );
    }
    if jobs.is_empty() {
        outln!("(no jobs)");
    }
    Ok(())
}

/// `distributeai logs`.
pub async fn logs(id: &str, args: &ApiArgs) -> Result<()> {
    let lines = client(args)
        .logs(id)
        .await
        .context("reading the timeline")?;
    if args.json {
        return print_json(&lines);
    }
    let t0 = lines.first().map(|l| l.at).unwrap_or(0);
    for line in lines {
        outln!(
            "[{:>7.2}s] {}",
            line.at.saturating_sub(t0) as f64 / 1000.0,
            line.message
        );
    }
    Ok(())
}

/// `distributeai result`.
pub async fn result(id: &str, output: Option<PathBuf>, args: &ApiArgs) -> Result<()> {
    let api = client(args);
    let job = api.job(id).await.context("getting the job")?;
    if job.status == JobStatus::Failed {
        // No verified output, but what the workers saw before the end is kept: show it.
        let reason = job.failure_reason.as_deref().unwrap_or("no reason given");
        if args.json {
            let view = serde_json::json!({
                "id": job.id,
                "status": job.status,
                "failure_reason": reason,
                "executions": job.executions,
            });
            outln!("{}", serde_json::to_string_pretty(&view)?);
        } else {
            print_tails(&job)?;
        }
        bail!("job {} has no verified output: {reason}", job.id);
    }
    match output {
        None => {
            let output = api.result_stdout(id).await.context("fetching the result")?;
            if args.json {
                let text = std::str::from_utf8(&output).ok();
                let view = serde_json::json!({
                    "id": id,
                    "bytes": output.len(),
                    "text": text,
                });
                outln!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                out_bytes(&output)?;
            }
        }
        Some(dir) => {
            let tar = api.result_tar(id).await.context("fetching the result")?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // tar refuses entries that would land outside `dir` (absolute or `..` paths).
            tar::Archive::new(tar.as_slice())
                .unpack(&dir)
                .with_context(|| format!("unpacking into {}", dir.display()))?;
            eprintln!("output files written to {}", dir.display());
        }
    }
    Ok(())
}

/// `distributeai cancel`.
pub async fn cancel(id: &str, args: &ApiArgs) -> Result<()> {
    let job = client(args).cancel(id).await.context("cancelling")?;
    if args.json {
        print_json(&job)?;
    } else {
        outln!(
            "job {}: {}",
            job.id,
            format!("{:?}", job.status).to_lowercase()
        );
    }
    Ok(())
}

/// `distributeai stats`.
pub async fn stats(args: &ApiArgs) -> Result<()> {
    let stats = client(args).stats().await.context("reading stats")?;
    if args.json {
        return print_json(&stats);
    }
    let mut statuses: Vec<_> = stats.jobs.iter().collect();
    statuses.sort();
    outln!("submitted jobs:");
    for (status, count) in statuses {
        outln!("  {status:<10} {count}");
    }
    outln!(
        "work accepted: {}  running now: {}",
        stats.work_accepted,
        stats.work_running
    );
    Ok(())
}

/// `distributeai status`.
pub async fn status(args: &ApiArgs) -> Result<()> {
    let node = client(args).node().await.context("reading the node")?;
    if args.json {
        return print_json(&node);
    }
    let reach = match node.reachability {
        Reachability::Public => "public (reachable from the internet)",
        Reachability::Private => {
            "behind NAT (peers reach this node through relays, or directly once hole punching succeeds)"
        }
        Reachability::Unknown => "unknown (not judged yet)",
    };
    outln!("peer_id:       {}", node.peer_id);
    outln!(
        "role:          {}{}",
        node.role,
        if node.worker { " + worker" } else { "" }
    );
    outln!("reachability:  {reach}");
    outln!(
        "connected:     {}",
        distributeai_jobflow::count(node.connected_peers, "peer", "peers")
    );
    for relay in &node.relays {
        let state = if relay.reserved { "reserved" } else { "asking" };
        outln!("relay:         {} ({state})", relay.address);
    }
    for address in &node.announced_addrs {
        outln!("announced:     {address}");
    }
    for address in &node.listen_addrs {
        outln!("listening:     {address}");
    }
    if !node.budgets.is_empty() {
        outln!("budgets (what strangers can make this node hold or do):");
        for b in &node.budgets {
            outln!("  {:<34} {:>14}  {}", b.name, budget_value(b), b.what);
        }
    }
    Ok(())
}

/// A budget's value as people read it: MiB for bytes, yes/no for switches.
fn budget_value(b: &distributeai_api::BudgetView) -> String {
    match b.unit.as_str() {
        "bytes" => format!("{:.0} MiB", b.value / 1_048_576.0),
        "on" => if b.value > 0.0 { "yes" } else { "no" }.to_string(),
        "seconds" => format!("{:.0} s", b.value),
        "per_second" => format!("{:.0}/s", b.value),
        _ => format!("{:.0}", b.value),
    }
}

/// `distributeai verdict check`: the ledger's entry for `job_id`, or the signed verdict in
/// `file`, re-checked by the node; fails when the verdict is refused.
pub async fn verdict_check(
    job_id: Option<&str>,
    file: Option<&std::path::Path>,
    args: &ApiArgs,
) -> Result<()> {
    let api = client(args);
    let check = match (job_id, file) {
        (_, Some(path)) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the verdict in {}", path.display()))?;
            api.check_verdict(&bytes)
                .await
                .context("checking the verdict")?
        }
        (Some(id), None) => api
            .check_entry(id)
            .await
            .with_context(|| format!("checking the ledger's entry for job {id}"))?,
        (None, None) => anyhow::bail!("give a job id or --file"),
    };
    if args.json {
        print_json(&check)?;
    } else {
        outln!("job      {}", check.job_id);
        outln!("verdict  {} by {}", check.verdict_id, check.issuer);
        outln!(
            "job asks n = {}, k = {}, reward {} per agreeing worker",
            check.n,
            check.k,
            check.reward
        );
        outln!("outcome  {}", check.outcome);
        outln!("draw     {}", check.draw);
        for w in &check.workers {
            outln!("- {}: {}, paid {}", w.peer_id, w.result, w.paid);
            outln!("    proved by {}", w.evidence);
        }
        if let Some(other) = &check.equivocation {
            outln!(
                "equivocation: the issuer also signed verdict {other} for this job; its weight is zero"
            );
        }
        match &check.error {
            None => outln!(
                "valid: every node accepts it; each line follows from the worker's own signatures"
            ),
            Some(e) => outln!("REFUSED by every node: {e}"),
        }
    }
    if let Some(e) = &check.error {
        anyhow::bail!("the verdict is refused: {e}");
    }
    Ok(())
}

/// `distributeai ledger`.
pub async fn ledger(args: &ApiArgs) -> Result<()> {
    let view = client(args).ledger().await.context("reading the ledger")?;
    if args.json {
        return print_json(&view);
    }
    outln!("ledger: {} entries, summary {}", view.entries, view.summary);
    if view.genesis.is_empty() {
        outln!("genesis: none (nobody gains standing or can pay rewards; see `node --genesis`)");
    } else {
        outln!("genesis: {} (marked *)", view.genesis.join(", "));
    }
    outln!(
        "{:<54} {:>10} {:>8} {:>9} {:>7} {:>10} {:>7} {:>7}",
        "PEER ID",
        "REPUTATION",
        "CREDITS",
        "SPENDABLE",
        "AGREED",
        "DISAGREED",
        "FAILED",
        "SILENT"
    );
    for p in &view.peers {
        outln!(
            "{:<54} {:>10.1} {:>8} {:>9} {:>7} {:>10} {:>7} {:>7}",
            if p.genesis {
                format!("{}*", p.peer_id)
            } else {
                p.peer_id.clone()
            },
            p.reputation,
            p.credits,
            p.spendable,
            p.agreed,
            p.disagreed,
            p.failed,
            p.silent
        );
    }
    Ok(())
}
