//! A recording proxy with the UI attached to its live recording, in one process: what a running proxy's admin
//! listener will serve, available now for the browser suite's live-tail test and for trying the tail by hand.
//!
//! ```text
//! cargo run -p agentcap-ui --example live -- <upstream URL> <db file>
//! ```
//!
//! Prints `proxy http://ADDR ui http://ADDR/` and runs until standard input closes.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use agentcap_proxy::ProxyConfig;
use agentcap_proxy::recorder::RecorderConfig;
use agentcap_ui::{ConnDb, UiConfig, UiState};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(upstream), Some(db)) = (args.next(), args.next()) else {
        return Err("usage: live <upstream URL> <db file>".into());
    };
    let mut cfg = ProxyConfig::new(upstream.parse()?, RecorderConfig::new(db));
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.admin_listen = None;
    cfg.shutdown_grace = Duration::from_secs(5);
    let proxy = agentcap_proxy::start(cfg).await?;
    let conn = proxy.recorder().connection()?;
    let ui_cfg = UiConfig {
        listen: "127.0.0.1:0".parse()?,
        ..UiConfig::default()
    };
    let ui = agentcap_ui::start(UiState::new(Arc::new(ConnDb::new(conn)), ui_cfg)?).await?;
    println!("proxy http://{} ui {}", proxy.addr(), ui.url());
    // The recorder commits every 200 ms at the latest, so the tail sees new rows within about that.
    tokio::task::spawn_blocking(|| {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
    })
    .await?;
    ui.shutdown().await;
    proxy.shutdown().await?;
    Ok(())
}
