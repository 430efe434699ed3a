//! `agentcap conversations list | show`: recorded conversations, and one conversation as a tree of turns,
//! entries and restart branches. The data comes from `agentcap_proxy::views`, the text from `agentcap_ui::text`.

use agentcap_proxy::views;
use agentcap_ui::text;
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use crate::query::{SourceArgs, emit, source};

/// `agentcap conversations …`.
#[derive(Debug, Subcommand)]
pub enum ConversationsCommand {
    /// Recent conversations, newest first: agent, model, turns, tokens, timing, errors, parent.
    List(ListArgs),
    /// One conversation as a tree: turns with timings, entries, tool and function calls, handoffs, and the
    /// conversations restarted from it (attached under the entry they branch from).
    Show(ShowArgs),
}

/// Output format of `conversations list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A text table.
    Table,
    /// An array of objects.
    Json,
}

/// Output format of `conversations show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// An indented tree.
    Tree,
    /// The tree as JSON.
    Json,
}

/// Flags of `conversations list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show at most this many conversations.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Flags of `conversations show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The conversation id (`conv_…`).
    pub conversation_id: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "tree")]
    pub format: ShowFormat,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Runs a `conversations` subcommand.
pub async fn run(cmd: ConversationsCommand) -> anyhow::Result<()> {
    match cmd {
        ConversationsCommand::List(a) => {
            let src = source(a.source);
            let q = views::sql::list_sql(a.limit);
            let rows = views::summaries(&src.query_with(q.text, &q.params).await?);
            match a.format {
                ListFormat::Table => emit(&format!("{}\n", text::render_list(&rows))),
                ListFormat::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&rows)?)),
            }
        }
        ConversationsCommand::Show(a) => {
            let src = source(a.source);
            let id = a.conversation_id.clone();
            let rt = tokio::runtime::Handle::current();
            let tree = tokio::task::spawn_blocking(move || {
                views::show(|sql, params| rt.block_on(src.query_with(sql, params)), &id)
            })
            .await
            .context("the query thread failed")??;
            let Some(tree) = tree else {
                bail!("no conversation {} in the recording", a.conversation_id);
            };
            match a.format {
                ShowFormat::Tree => emit(&text::render_tree(&tree)),
                ShowFormat::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&tree)?)),
            }
        }
    }
}
