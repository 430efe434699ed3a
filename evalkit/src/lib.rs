//! The eval runner: datasets through agent configurations, graded, with confidence intervals,
//! paired comparisons and latency, each answer linked to its recorded conversation.
//!
//! - [`config`]: the TOML file of named variants. [`data`]: which dataset, its sample, the grader
//!   template. [`client`]: conversations and judge calls over HTTP(S), SSE read with
//!   `agentcap-wire`. [`runner`]: concurrency, rate limit, timeouts, retries, grading.
//!   [`store`]: the `eval_*` tables in DuckDB. [`session`]: a run or a resume from start to end
//!   (the recording proxy embedded by default). [`history`]: stored runs read back (list, show,
//!   compare). [`fetch`]: `datasets fetch`. [`recorded`]: recorded conversations as eval sets
//!   (`datasets from-recording`, `--dataset recorded:FILE`, the agreement and pairwise graders).
//! - [`grade`], [`metrics`], [`report`]: grading rules, statistics and report rendering.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agentcap_evalkit::EvalError> {
//! use agentcap_evalkit::{ConfigFile, RunSpec, Stop, run};
//! let text = "[[config]]\nname = \"closed\"\nmodel = \"mistral-medium-latest\"\n";
//! let configs = ConfigFile::parse("configs.toml", text)?;
//! let mut spec = RunSpec::new("mini-qa", configs, text, "http://127.0.0.1:8080", "evals.duckdb");
//! spec.limit = Some(10);
//! let outcome = run(spec, Stop::new()).await?;
//! println!("{}", agentcap_evalkit::report::render(&outcome.report, agentcap_evalkit::report::Format::Table));
//! # Ok(()) }
//! ```

pub mod client;
pub mod config;
pub mod data;
pub mod fetch;
pub mod grade;
pub mod history;
pub mod metrics;
pub mod recorded;
pub mod report;
pub mod runner;
pub mod session;
pub mod store;

pub use config::{ConfigError, ConfigFile};
pub use runner::{ItemEvent, Observer, RunnerOptions, Stop};
pub use session::{
    DEFAULT_JUDGE, EmbeddedAdmin, GraderChoice, ResumeSpec, RunOutcome, RunSpec, Target, resume,
    run,
};

/// What can go wrong in an eval (who failed is in the variant; the large ones are boxed).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The configuration file.
    #[error(transparent)]
    Config(Box<ConfigError>),
    /// The dataset.
    #[error(transparent)]
    Data(Box<data::DataError>),
    /// The results database.
    #[error(transparent)]
    Store(Box<store::StoreError>),
    /// The embedded proxy.
    #[error("embedded proxy: {0}")]
    Proxy(Box<agentcap_proxy::ProxyError>),
    /// Creating or looking up agents at run start failed.
    #[error("{0}")]
    Setup(String),
    /// A run, config or file that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Anything else the operator asked for that cannot be done.
    #[error("{0}")]
    Invalid(String),
}

impl From<ConfigError> for EvalError {
    fn from(e: ConfigError) -> Self {
        EvalError::Config(Box::new(e))
    }
}

impl From<data::DataError> for EvalError {
    fn from(e: data::DataError) -> Self {
        EvalError::Data(Box::new(e))
    }
}

impl From<store::StoreError> for EvalError {
    fn from(e: store::StoreError) -> Self {
        EvalError::Store(Box::new(e))
    }
}

impl From<duckdb::Error> for EvalError {
    fn from(e: duckdb::Error) -> Self {
        EvalError::Store(Box::new(store::StoreError::Db(e)))
    }
}

impl From<agentcap_proxy::ProxyError> for EvalError {
    fn from(e: agentcap_proxy::ProxyError) -> Self {
        EvalError::Proxy(Box::new(e))
    }
}
