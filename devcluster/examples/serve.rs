//! Runs a devcluster until interrupted, printing the admin kubeconfig path.
//!
//! `cargo run -p devcluster --example serve -- [STATE_DIR]`

#[tokio::main]
async fn main() -> Result<(), devcluster::Error> {
    let state_dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let cluster =
        devcluster::DevCluster::start(devcluster::Config { state_dir, ..Default::default() })
            .await?;
    println!("KUBECONFIG={}", cluster.kubeconfig_path().display());
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
