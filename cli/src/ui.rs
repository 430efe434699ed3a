//! `agentcap ui`: the read-only web UI over a recording file. The pages live in `agentcap_ui`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agentcap_ui::{ConnDb, UiConfig, UiState};
use clap::Args;

/// Flags of `agentcap ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The DuckDB recording, opened read-only (no proxy may be recording into it).
    #[arg(long, default_value = agentcap_proxy::recorder::DEFAULT_DB_PATH)]
    pub db: PathBuf,
    /// Listen address. Anything but a loopback address requires --auth-token.
    #[arg(long, default_value = "127.0.0.1:8790")]
    pub listen: SocketAddr,
    /// Token the browser must present: open /login?token=TOKEN once (sets a cookie) or send
    /// `Authorization: Bearer TOKEN`.
    #[arg(long, env = "AGENTCAP_UI_TOKEN")]
    pub auth_token: Option<String>,
    /// Extra Host name accepted (besides loopback names and the listen address), e.g. a LAN name.
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// Exchanges per page (1..=500).
    #[arg(long, default_value_t = 50)]
    pub page_rows: usize,
    /// Also stop when standard input reaches end of file (ties the UI's life to a parent process).
    #[arg(long)]
    pub exit_on_stdin_close: bool,
    /// First upgrade a recording made by an older agentcap to the current schema, in place (the only write
    /// the UI ever makes; no proxy may be recording into the file).
    #[arg(long)]
    pub migrate: bool,
}

/// Runs the UI until SIGINT / SIGTERM.
pub async fn run(a: UiArgs) -> anyhow::Result<()> {
    let cfg = UiConfig {
        listen: a.listen,
        auth_token: a.auth_token,
        allowed_hosts: a.allow_hosts,
        page_rows: a.page_rows,
        ..UiConfig::default()
    };
    cfg.validate()?;
    let path = a.db.clone();
    if a.migrate {
        if !path.is_file() {
            anyhow::bail!("{} is not a recording (no such file)", path.display());
        }
        let p = path.clone();
        let (before, after) =
            tokio::task::spawn_blocking(move || agentcap_proxy::recorder::schema::migrate_file(&p))
                .await??;
        if before == after {
            println!("{} is at schema version {after}", path.display());
        } else {
            println!(
                "{} upgraded from schema version {before} to {after}",
                path.display()
            );
        }
    }
    let db = tokio::task::spawn_blocking(move || ConnDb::open_read_only(&path)).await??;
    let state = UiState::new(Arc::new(db), cfg)?;
    let ui = agentcap_ui::start(state).await?;
    println!(
        "agentcap ui (read-only) on {} serving {}",
        ui.url(),
        a.db.display()
    );
    crate::stop_requested(a.exit_on_stdin_close).await;
    ui.shutdown().await;
    Ok(())
}
