//! Benchmark (issue 6): N Integrations applied to devcluster; time until all are Ready, and the
//! operator's peak resident memory. Targets at 10,000: converged in under 120 s, under 150 MiB.
//!
//! `bench/operator/run.sh` builds the release binary and runs this for 1,000 and 10,000.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard_bench::{
    Observed, Operator, binary, cluster, create_integrations, progress_line, ratio,
    simulate_workloads, watch_conditions,
};

/// Measure convergence time and memory of the operator at scale.
#[derive(Parser)]
struct Args {
    /// Integration counts to measure, each in a fresh cluster.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    counts: Vec<usize>,
    /// The switchboard binary (default: target/release/switchboard).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Give up after this many seconds per count.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = binary(args.binary);
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: cargo build --release -p switchboard",
        binary.display()
    );
    for n in args.counts {
        let (cluster, client) = cluster().await?;
        let observed: Arc<Mutex<HashMap<String, Observed>>> = Default::default();
        let seen = observed.clone();
        tokio::spawn(watch_conditions(client.clone(), move |name, now| {
            seen.lock().unwrap().insert(name.to_string(), now);
        }));
        tokio::spawn(simulate_workloads(client.clone(), false));
        let operator =
            Operator::start(&binary, &cluster.kubeconfig_path(), &["--concurrency=16".into()])?;
        let started = Instant::now();
        create_integrations(&client, 0..n, 32).await?;
        let applied = started.elapsed();
        let mut last_progress = Instant::now();
        let converged = loop {
            let count = {
                let observed = observed.lock().unwrap();
                if last_progress.elapsed() >= Duration::from_secs(10) {
                    last_progress = Instant::now();
                    eprintln!("{}", progress_line(started.elapsed(), &observed, n));
                }
                observed.values().filter(|o| o.ready.as_deref() == Some("True")).count()
            };
            if count >= n {
                break Some(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(args.timeout) {
                eprintln!("only {count} of {n} Ready after {}s", args.timeout);
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        println!("== {n} Integrations (applied in {:.1} s)", applied.as_secs_f64());
        match converged {
            Some(t) => {
                let target = if n >= 10_000 { 120.0 } else { 12.0 };
                println!(
                    "{}",
                    ratio(
                        "time until every Integration is Ready",
                        t.as_secs_f64(),
                        target,
                        true,
                        "s"
                    )
                );
            }
            None => println!("time until every Integration is Ready: did not converge"),
        }
        let target = 150.0;
        println!(
            "{}",
            ratio("operator peak resident memory", operator.peak_rss_mib(), target, true, "MiB")
        );
        println!("{:<44} {:>10.1} s", "operator CPU time", operator.cpu_seconds());
        drop(operator);
        drop(cluster);
    }
    Ok(())
}
