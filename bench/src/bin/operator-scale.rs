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
    Operator, binary, cluster, create_integrations, ratio, simulate_workloads, watch_conditions,
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
        let ready: Arc<Mutex<HashMap<String, bool>>> = Default::default();
        let seen = ready.clone();
        tokio::spawn(watch_conditions(client.clone(), move |name, ready, _| {
            seen.lock().unwrap().insert(name.to_string(), ready.as_deref() == Some("True"));
        }));
        tokio::spawn(simulate_workloads(client.clone(), false));
        let operator =
            Operator::start(&binary, &cluster.kubeconfig_path(), &["--concurrency=16".into()])?;
        let started = Instant::now();
        create_integrations(&client, 0..n, 32).await?;
        let applied = started.elapsed();
        let converged = loop {
            let count = ready.lock().unwrap().values().filter(|r| **r).count();
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
