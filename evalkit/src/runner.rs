//! The runner: every (item, config) pair through the API under a concurrency limit, an optional
//! request rate, per-attempt timeouts and jittered exponential retries (honouring `Retry-After`),
//! then graded; each result written as it finishes; Ctrl-C lets in-flight items finish.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcap_datasets::QaItem;
use agentcap_datasets::rng::AtomicSplitMix64;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};

use crate::client::{Answer, ApiClient, AttemptError, Tags};
use crate::config::{Price, RunnerSection, Variant};
use crate::grade::{self, Grade, JudgeParse};
use crate::metrics::Outcome;
use crate::recorded;
use crate::store::{AttemptRow, GradeRow, ItemRow, Store};

/// Runner settings, resolved from flags over the file's `[runner]` over defaults.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunnerOptions {
    /// Items in flight at once.
    pub concurrency: usize,
    /// Requests per second over everything (answers and judge calls), when limited.
    pub requests_per_second: Option<f64>,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Total time one request may spend, retries and waits included.
    pub max_retry_time: Duration,
    /// First backoff (doubles each retry, jittered).
    pub initial_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            concurrency: 16,
            requests_per_second: None,
            timeout: Duration::from_secs(120),
            max_attempts: 6,
            max_retry_time: Duration::from_secs(300),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RunnerOptions {
    /// The file's `[runner]` over the defaults; `concurrency` (a flag) wins.
    pub fn resolve(file: &RunnerSection, concurrency: Option<usize>) -> RunnerOptions {
        let d = RunnerOptions::default();
        RunnerOptions {
            concurrency: concurrency
                .or(file.concurrency)
                .unwrap_or(d.concurrency)
                .max(1),
            requests_per_second: file.requests_per_second,
            timeout: file.timeout_s.map_or(d.timeout, Duration::from_secs_f64),
            max_attempts: file.max_attempts.unwrap_or(d.max_attempts).max(1),
            max_retry_time: file
                .max_retry_time_s
                .map_or(d.max_retry_time, Duration::from_secs_f64),
            initial_backoff: file
                .initial_backoff_ms
                .map_or(d.initial_backoff, Duration::from_millis),
            max_backoff: file
                .max_backoff_ms
                .map_or(d.max_backoff, Duration::from_millis),
        }
    }
}

/// A stop request shared by a run and whoever may interrupt it (Ctrl-C, a test).
#[derive(Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    flag: AtomicBool,
    notify: Notify,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Stop").field(&self.is_stopped()).finish()
    }
}

impl Stop {
    /// A stop that has not been requested.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Requests the stop: no new item starts, in-flight items finish their current attempt.
    pub fn stop(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// How answers are graded.
#[derive(Debug, Clone)]
pub enum Grader {
    /// The SimpleQA judge: the template sent to `judge_model` via chat completions.
    SimpleQa {
        /// Template with `{question}`, `{target}`, `{predicted_answer}`.
        template: Arc<str>,
        /// Judge model.
        judge_model: String,
        /// How the reply is read.
        parse: JudgeParse,
    },
    /// Normalised exact match against any gold answer.
    Exact,
    /// Recorded sets: the judge says whether the answer agrees with the recorded one (same,
    /// different, one abstains), read strictly ([`crate::recorded::parse_agreement_reply`]).
    Agreement {
        /// Template with `{question}`, `{target}` (the recorded answer), `{predicted_answer}`.
        template: Arc<str>,
        /// Judge model.
        judge_model: String,
    },
    /// Recorded sets: the judge prefers the recorded answer, the candidate's, or neither, asked in
    /// both orders ([`crate::recorded::pairwise_verdict`]).
    Pairwise {
        /// Template with `{question}`, `{answer_a}`, `{answer_b}`.
        template: Arc<str>,
        /// Judge model.
        judge_model: String,
    },
}

impl Grader {
    /// `simpleqa`, `exact`, `agreement` or `pairwise`.
    pub fn name(&self) -> &'static str {
        match self {
            Grader::SimpleQa { .. } => "simpleqa",
            Grader::Exact => "exact",
            Grader::Agreement { .. } => "agreement",
            Grader::Pairwise { .. } => "pairwise",
        }
    }
}

/// A config ready to send: the request body without `inputs`.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// Name.
    pub name: String,
    /// For reports.
    pub description: String,
    /// The variant as configured.
    pub variant: Variant,
    /// `POST /v1/conversations` body without `inputs`.
    pub body: Value,
    /// The model, when known.
    pub model: Option<String>,
    /// The agent, for agent configs.
    pub agent_id: Option<String>,
    /// Its version, when known.
    pub agent_version: Option<String>,
    /// Price of the model, when the table has it.
    pub price: Option<Price>,
    /// The `recorded` column of a recorded set: its answers are the recorded ones, never sent.
    pub recorded: bool,
}

/// Live counts of one config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Graded correct.
    pub correct: usize,
    /// Graded incorrect.
    pub incorrect: usize,
    /// Graded not attempted.
    pub not_attempted: usize,
    /// Judge reply unreadable.
    pub unparseable: usize,
    /// Failed after retries.
    pub errors: usize,
    /// Answered, but the judge call failed after retries.
    pub judge_errors: usize,
}

impl Counts {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Graded(Grade::Correct) => self.correct += 1,
            Outcome::Graded(Grade::Incorrect) => self.incorrect += 1,
            Outcome::Graded(Grade::NotAttempted) => self.not_attempted += 1,
            Outcome::Unparseable => self.unparseable += 1,
            Outcome::Error => self.errors += 1,
            Outcome::JudgeError => self.judge_errors += 1,
        }
    }
}

/// One finished item, as reported to an observer.
#[derive(Debug, Clone)]
pub struct ItemEvent {
    /// Config name.
    pub config: String,
    /// Item id.
    pub item_id: String,
    /// What became of it.
    pub outcome: Outcome,
    /// Items finished so far in this session (all configs).
    pub finished: usize,
}

/// Called after each finished item (tests use it to interrupt a run).
pub type Observer = Arc<dyn Fn(&ItemEvent) + Send + Sync>;

/// Counters of one session (a run or a resume).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionStats {
    /// (item, config) pairs scheduled.
    pub scheduled: usize,
    /// Finished (answered or errored).
    pub finished: usize,
    /// Of those, errors.
    pub errors: usize,
    /// Of those, answered but not graded (the judge call failed).
    pub judge_errors: usize,
    /// HTTP attempts made (answers, judge calls).
    pub attempts: u64,
    /// Attempts that were retried.
    pub retries: u64,
    /// Wall time of the item phase.
    pub wall: Duration,
}

/// Everything the workers share.
pub(crate) struct Shared {
    pub client: ApiClient,
    pub store: Arc<Store>,
    pub run_id: String,
    pub configs: Vec<ResolvedConfig>,
    pub grader: Grader,
    pub opts: RunnerOptions,
    pub limiter: Option<Limiter>,
    pub stop: Stop,
    pub observer: Option<Observer>,
    pub progress: Progress,
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    /// The run is already marked "simulated upstream" in the store (by this session).
    pub simulated_marked: AtomicBool,
}

/// A simple request-rate limiter: one slot every `1 / rate` seconds.
pub(crate) struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    pub(crate) fn new(rate: f64) -> Option<Limiter> {
        (rate.is_finite() && rate > 0.0).then(|| Limiter {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(Instant::now()),
        })
    }

    /// Reserves the next free slot at or after `now`.
    fn reserve(&self, now: Instant) -> Instant {
        let Ok(mut next) = self.next.lock() else {
            return now;
        };
        let at = (*next).max(now);
        *next = at + self.interval;
        at
    }

    async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The progress bar (hidden when disabled or not on a terminal) and live counts per config.
pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
    names: Vec<String>,
    counts: Mutex<Vec<Counts>>,
    finished: AtomicU64,
}

impl Progress {
    pub(crate) fn new(total: usize, names: Vec<String>, visible: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = if visible && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let n = names.len();
        Progress {
            bar,
            names,
            counts: Mutex::new(vec![Counts::default(); n]),
            finished: AtomicU64::new(0),
        }
    }

    fn record(&self, config: usize, outcome: &Outcome) -> usize {
        let msg = {
            let Ok(mut c) = self.counts.lock() else {
                return 0;
            };
            c[config].add(outcome);
            self.names
                .iter()
                .zip(c.iter())
                .map(|(n, c)| {
                    format!(
                        "{n}: {} correct {} incorrect {} not attempted {} errors {} judge errors",
                        c.correct,
                        c.incorrect,
                        c.not_attempted + c.unparseable,
                        c.errors,
                        c.judge_errors
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        self.bar.set_message(msg);
        self.bar.inc(1);
        self.finished.fetch_add(1, Ordering::SeqCst) as usize + 1
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// What came of retried calls.
enum Attempted<T> {
    Ok {
        value: T,
        attempt_id: String,
        attempts: u32,
    },
    Failed {
        error: AttemptError,
        attempts: u32,
    },
    Cancelled,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The jitter generator, seeded from the clock on first use; concurrent retries draw distinct values.
static JITTER: std::sync::OnceLock<AtomicSplitMix64> = std::sync::OnceLock::new();

/// A number in [0, 1) for jitter.
fn jitter_unit() -> f64 {
    JITTER.get_or_init(AtomicSplitMix64::from_clock).next_unit()
}

/// The wait before retry number `retry` (1 = after the first failure): exponential from
/// `initial`, capped at `max`, with "equal jitter" (half fixed, half random); at least the
/// server's `Retry-After`.
pub fn backoff(
    opts: &RunnerOptions,
    retry: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let exp = opts
        .initial_backoff
        .saturating_mul(1u32 << (retry.saturating_sub(1)).min(20))
        .min(opts.max_backoff);
    let jittered = exp / 2 + exp.mul_f64(unit.clamp(0.0, 1.0) / 2.0);
    match retry_after {
        Some(ra) => ra.max(jittered),
        None => jittered,
    }
}

impl Shared {
    /// Runs `call` until it succeeds, fails for good, or the run stops; records every attempt.
    async fn with_retries<T, F, Fut>(
        &self,
        config: &str,
        item: &str,
        phase: &'static str,
        conversation_of: fn(&T) -> Option<String>,
        mut call: F,
    ) -> Attempted<T>
    where
        F: FnMut(Tags) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let first = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            if attempt > 0 && self.stop.is_stopped() {
                return Attempted::Cancelled;
            }
            attempt += 1;
            if let Some(l) = &self.limiter {
                l.acquire().await;
            }
            let attempt_id = uuid::Uuid::now_v7().simple().to_string();
            let tags = Tags {
                run_id: self.run_id.clone(),
                item: item.to_string(),
                config: config.to_string(),
                attempt: attempt_id.clone(),
                phase,
            };
            let started_at = now_rfc3339();
            let t0 = Instant::now();
            let result = match tokio::time::timeout(self.opts.timeout, call(tags)).await {
                Ok(r) => r,
                Err(_) => Err(AttemptError::Timeout(self.opts.timeout)),
            };
            let duration = t0.elapsed();
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let mut row = AttemptRow {
                attempt_id: attempt_id.clone(),
                run_id: self.run_id.clone(),
                config: config.to_string(),
                item_id: item.to_string(),
                phase: phase.to_string(),
                attempt,
                started_at,
                duration_ms: ms(duration),
                http_status: None,
                outcome: "ok".into(),
                error_class: None,
                error: None,
                retry_after_ms: None,
                backoff_ms: None,
                conversation_id: None,
            };
            match result {
                Ok(value) => {
                    row.http_status = Some(200);
                    row.conversation_id = conversation_of(&value);
                    self.store.put_attempt(row);
                    return Attempted::Ok {
                        value,
                        attempt_id,
                        attempts: attempt,
                    };
                }
                Err(error) => {
                    row.http_status = error.status();
                    row.error_class = Some(error.class().to_string());
                    row.error = Some(error.to_string());
                    row.retry_after_ms = error.retry_after().map(ms);
                    let wait = backoff(&self.opts, attempt, error.retry_after(), jitter_unit());
                    let in_budget = first.elapsed() + wait <= self.opts.max_retry_time;
                    if error.retryable() && attempt < self.opts.max_attempts && in_budget {
                        if self.stop.is_stopped() {
                            row.outcome = "cancelled".into();
                            self.store.put_attempt(row);
                            return Attempted::Cancelled;
                        }
                        row.outcome = "retry".into();
                        row.backoff_ms = Some(ms(wait));
                        self.store.put_attempt(row);
                        self.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.stop.wait() => return Attempted::Cancelled,
                        }
                    } else {
                        row.outcome = "failed".into();
                        self.store.put_attempt(row);
                        return Attempted::Failed {
                            error,
                            attempts: attempt,
                        };
                    }
                }
            }
        }
    }
}

impl Shared {
    /// [`Shared::with_retries`] as a `Result` (a stop reads as a connection error).
    pub(crate) async fn call_with_retries<T, F, Fut>(
        &self,
        config: &str,
        item: &str,
        phase: &'static str,
        conversation_of: fn(&T) -> Option<String>,
        call: F,
    ) -> Result<T, AttemptError>
    where
        F: FnMut(Tags) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        match self
            .with_retries(config, item, phase, conversation_of, call)
            .await
        {
            Attempted::Ok { value, .. } => Ok(value),
            Attempted::Failed { error, .. } => Err(error),
            Attempted::Cancelled => Err(AttemptError::Connection("the run was stopped".into())),
        }
    }
}

/// The gold answers the gold graders use: a recorded item's `metadata.gold` (its `answer` is the
/// recorded answer, not a gold one), any other item's answers.
pub fn golds(item: &QaItem) -> Vec<String> {
    if crate::recorded::is_recorded(item) {
        return item
            .metadata
            .get("gold")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
    }
    item.answers.clone()
}

fn golds_target(golds: &[String]) -> String {
    golds.join(" OR ")
}

/// What grading an answer came to.
enum Graded {
    Done(Outcome, GradeRow),
    /// The judge call failed after its retries.
    JudgeFailed(AttemptError),
    Cancelled,
}

/// Grades `answer` to `item` under the run's grader.
async fn grade_answer(sh: &Shared, cfg: &ResolvedConfig, item: &QaItem, answer: &str) -> Graded {
    let row = |grader: &str, outcome: &str| GradeRow {
        run_id: sh.run_id.clone(),
        config: cfg.name.clone(),
        item_id: item.id.clone(),
        grader: grader.into(),
        outcome: outcome.into(),
        judge_model: None,
        judge_reply: None,
        judge_attempt_id: None,
        judge_ms: None,
        graded_at: now_rfc3339(),
    };
    match &sh.grader {
        Grader::Pairwise { .. } if cfg.recorded => {
            // The recorded answer against itself: a tie by definition, no judge needed. (Under
            // agreement the judge is asked: whether it abstains is the judge's call.)
            let g = Grade::NotAttempted;
            Graded::Done(Outcome::Graded(g), row("pairwise", g.as_str()))
        }
        Grader::Agreement {
            template,
            judge_model,
        } => {
            let prompt = grade::render_grader_prompt(
                template,
                &item.question,
                recorded::recorded_answer(item),
                answer,
            );
            match judge(sh, cfg, item, judge_model, &prompt).await {
                Attempted::Cancelled => Graded::Cancelled,
                Attempted::Failed { error, .. } => Graded::JudgeFailed(error),
                Attempted::Ok {
                    value, attempt_id, ..
                } => {
                    let parsed = recorded::parse_agreement_reply(&value.text).map(|a| a.grade());
                    let mut r = row("agreement", parsed.map_or("unparseable", Grade::as_str));
                    r.judge_model = Some(judge_model.clone());
                    r.judge_reply = Some(value.text.clone());
                    r.judge_attempt_id = Some(attempt_id);
                    r.judge_ms = Some(ms(value.total));
                    Graded::Done(parsed.map_or(Outcome::Unparseable, Outcome::Graded), r)
                }
            }
        }
        Grader::Pairwise {
            template,
            judge_model,
        } => {
            let reference = recorded::recorded_answer(item);
            let orders = [
                recorded::render_pairwise_prompt(template, &item.question, reference, answer),
                recorded::render_pairwise_prompt(template, &item.question, answer, reference),
            ];
            let mut replies = Vec::with_capacity(2);
            let mut total = Duration::ZERO;
            let mut last_attempt = None;
            for prompt in &orders {
                match judge(sh, cfg, item, judge_model, prompt).await {
                    Attempted::Cancelled => return Graded::Cancelled,
                    Attempted::Failed { error, .. } => return Graded::JudgeFailed(error),
                    Attempted::Ok {
                        value, attempt_id, ..
                    } => {
                        total += value.total;
                        last_attempt = Some(attempt_id);
                        replies.push(value.text);
                    }
                }
            }
            let parsed = match (
                recorded::parse_preference_reply(&replies[0]),
                recorded::parse_preference_reply(&replies[1]),
            ) {
                (Some(a), Some(b)) => Some(recorded::pairwise_verdict(a, b)),
                _ => None,
            };
            let mut r = row("pairwise", parsed.map_or("unparseable", Grade::as_str));
            r.judge_model = Some(judge_model.clone());
            r.judge_reply = Some(serde_json::to_string(&replies).unwrap_or_default());
            r.judge_attempt_id = last_attempt;
            r.judge_ms = Some(ms(total));
            Graded::Done(parsed.map_or(Outcome::Unparseable, Outcome::Graded), r)
        }
        Grader::Exact => {
            let g = grade::exact_grade(answer, &golds(item));
            Graded::Done(
                Outcome::Graded(g),
                GradeRow {
                    run_id: sh.run_id.clone(),
                    config: cfg.name.clone(),
                    item_id: item.id.clone(),
                    grader: "exact".into(),
                    outcome: g.as_str().into(),
                    judge_model: None,
                    judge_reply: None,
                    judge_attempt_id: None,
                    judge_ms: None,
                    graded_at: now_rfc3339(),
                },
            )
        }
        Grader::SimpleQa {
            template,
            judge_model,
            parse,
        } => {
            let judge_prompt = grade::render_grader_prompt(
                template,
                &item.question,
                &golds_target(&golds(item)),
                answer,
            );
            let client = sh.client.clone();
            let judged = sh
                .with_retries(
                    &cfg.name,
                    &item.id,
                    "judge",
                    |_: &crate::client::ChatReply| None,
                    |tags| {
                        let client = client.clone();
                        let (model, prompt) = (judge_model.as_str(), judge_prompt.as_str());
                        async move { client.chat(model, prompt, &tags).await }
                    },
                )
                .await;
            match judged {
                Attempted::Cancelled => Graded::Cancelled,
                Attempted::Failed { error, .. } => Graded::JudgeFailed(error),
                Attempted::Ok {
                    value, attempt_id, ..
                } => {
                    let parsed = grade::parse_judge_reply(&value.text, *parse);
                    let outcome = match parsed {
                        Some(g) => Outcome::Graded(g),
                        None => Outcome::Unparseable,
                    };
                    Graded::Done(
                        outcome,
                        GradeRow {
                            run_id: sh.run_id.clone(),
                            config: cfg.name.clone(),
                            item_id: item.id.clone(),
                            grader: "simpleqa".into(),
                            outcome: parsed.map_or("unparseable", Grade::as_str).into(),
                            judge_model: Some(judge_model.clone()),
                            judge_reply: Some(value.text.clone()),
                            judge_attempt_id: Some(attempt_id),
                            judge_ms: Some(ms(value.total)),
                            graded_at: now_rfc3339(),
                        },
                    )
                }
            }
        }
    }
}

/// One judge call with retries.
async fn judge(
    sh: &Shared,
    cfg: &ResolvedConfig,
    item: &QaItem,
    judge_model: &str,
    prompt: &str,
) -> Attempted<crate::client::ChatReply> {
    let client = sh.client.clone();
    sh.with_retries(
        &cfg.name,
        &item.id,
        "judge",
        |_: &crate::client::ChatReply| None,
        |tags| {
            let client = client.clone();
            async move { client.chat(judge_model, prompt, &tags).await }
        },
    )
    .await
}

/// Runs one (item, config) pair to its end; `None` when the run stopped before it finished.
pub(crate) async fn run_item(sh: Arc<Shared>, job: Job) -> Option<Outcome> {
    let Job {
        position,
        item,
        config: ci,
        replace,
        regrade,
    } = job;
    let cfg = &sh.configs[ci];
    if let Some(answer) = regrade {
        // A stored answer whose judge call failed: grade it again, nothing else changes unless
        // the grade lands.
        let outcome = match grade_answer(&sh, cfg, &item, &answer).await {
            Graded::Cancelled => return None,
            Graded::JudgeFailed(_) => Outcome::JudgeError,
            Graded::Done(outcome, grade_row) => {
                sh.store.put_regrade(grade_row);
                outcome
            }
        };
        return Some(sh.finished(ci, &item.id, outcome));
    }
    // A recorded turn is replayed with its history as `inputs`; the prompt template does not apply.
    let replay = recorded::replay_inputs(&item);
    let prompt = match &replay {
        Some(_) => item.question.clone(),
        None => cfg.variant.render_prompt(&item.question),
    };
    let mut body = cfg.body.clone();
    if let Value::Object(o) = &mut body {
        let inputs = replay.unwrap_or_else(|| Value::String(prompt.clone()));
        o.insert("inputs".into(), inputs);
    }
    let (topic, answer_type) = crate::data::labels(&item);
    let mut row = ItemRow {
        run_id: sh.run_id.clone(),
        config: cfg.name.clone(),
        item_id: item.id.clone(),
        position,
        question: item.question.clone(),
        // A recorded item's `answer` is the recorded answer, not a gold one: its golds are
        // `metadata.gold` (often none).
        golds: serde_json::to_string(&golds(&item)).unwrap_or_else(|_| "[]".into()),
        topic,
        answer_type,
        prompt,
        replace,
        ..ItemRow::default()
    };
    if cfg.recorded {
        return recorded_item(&sh, ci, cfg, &item, row).await;
    }
    let client = sh.client.clone();
    let answered = sh
        .with_retries(
            &cfg.name,
            &item.id,
            "answer",
            |a: &Answer| a.conversation_id.clone(),
            |tags| {
                let client = client.clone();
                let body = &body;
                async move { client.start_conversation(body, &tags).await }
            },
        )
        .await;
    let (answer, attempt_id, attempts) = match answered {
        Attempted::Cancelled => return None,
        Attempted::Failed { error, attempts } => {
            row.status = "error".into();
            row.attempts = attempts;
            row.error_kind = Some(error.class().to_string());
            row.error = Some(error.to_string());
            row.finished_at = now_rfc3339();
            sh.store.put_item(row, None);
            return Some(sh.finished(ci, &item.id, Outcome::Error));
        }
        Attempted::Ok {
            value,
            attempt_id,
            attempts,
        } => (value, attempt_id, attempts),
    };
    row.status = "answered".into();
    row.answer = Some(answer.text.clone());
    row.conversation_id = answer.conversation_id.clone();
    row.answer_attempt_id = Some(attempt_id);
    row.attempts = attempts;
    row.ttft_ms = answer.ttft.map(ms);
    row.total_ms = Some(ms(answer.total));
    row.prompt_tokens = answer.usage.prompt;
    row.completion_tokens = answer.usage.completion;
    row.connector_tokens = answer.usage.connector;
    row.connectors = (!answer.usage.connectors.is_empty())
        .then(|| serde_json::to_string(&answer.usage.connectors).unwrap_or_default());
    row.tool_executions = answer.tool_executions;
    row.cost_usd = cfg.price.as_ref().map(|p| {
        let calls: BTreeMap<String, u64> = answer.usage.connectors.clone();
        p.cost(
            answer.usage.prompt,
            answer.usage.completion,
            answer.usage.connector,
            &calls,
        )
    });

    grade_and_store(&sh, ci, cfg, &item, &answer.text, row).await
}

/// Grades an answered item, stores its row (with its grade, or as a judge error that keeps the answer) and
/// counts it finished; `None` when the run was cancelled while the judge was asked.
async fn grade_and_store(
    sh: &Shared,
    ci: usize,
    cfg: &ResolvedConfig,
    item: &QaItem,
    answer: &str,
    mut row: ItemRow,
) -> Option<Outcome> {
    let (outcome, grade_row) = match grade_answer(sh, cfg, item, answer).await {
        Graded::Cancelled => return None,
        Graded::JudgeFailed(error) => {
            // The answer and its figures stay; the grade is missing and counted apart.
            row.status = "judge_error".into();
            row.error_kind = Some(format!("judge_{}", error.class()));
            row.error = Some(format!("judge: {error}"));
            (Outcome::JudgeError, None)
        }
        Graded::Done(outcome, grade_row) => (outcome, Some(grade_row)),
    };
    row.finished_at = now_rfc3339();
    sh.store.put_item(row, grade_row);
    Some(sh.finished(ci, &item.id, outcome))
}

/// The `recorded` column's item: the recorded answer with its recorded figures, no request.
async fn recorded_item(
    sh: &Shared,
    ci: usize,
    cfg: &ResolvedConfig,
    item: &QaItem,
    mut row: ItemRow,
) -> Option<Outcome> {
    let p = recorded::provenance(item);
    if p.simulated_upstream && !sh.simulated_marked.swap(true, Ordering::Relaxed) {
        sh.store.mark_simulated(&sh.run_id);
    }
    let answer = recorded::recorded_answer(item).to_string();
    row.status = "answered".into();
    row.answer = Some(answer.clone());
    row.conversation_id = p.conversation_id;
    row.attempts = 0;
    row.ttft_ms = p.first_event_ms;
    row.total_ms = p.latency_ms;
    row.prompt_tokens = p.prompt_tokens.unwrap_or(0);
    row.completion_tokens = p.completion_tokens.unwrap_or(0);
    row.cost_usd = cfg.price.as_ref().map(|pr| {
        pr.cost(
            row.prompt_tokens,
            row.completion_tokens,
            0,
            &BTreeMap::new(),
        )
    });
    grade_and_store(sh, ci, cfg, item, &answer, row).await
}

impl Shared {
    fn finished(&self, ci: usize, item_id: &str, outcome: Outcome) -> Outcome {
        // The twin announces itself on every response: label the run as soon as it has.
        if self.client.saw_simulated_upstream()
            && !self.simulated_marked.swap(true, Ordering::Relaxed)
        {
            self.store.mark_simulated(&self.run_id);
        }
        let n = self.progress.record(ci, &outcome);
        if let Some(obs) = &self.observer {
            obs(&ItemEvent {
                config: self.configs[ci].name.clone(),
                item_id: item_id.to_string(),
                outcome: outcome.clone(),
                finished: n,
            });
        }
        outcome
    }
}

/// One scheduled pair.
pub(crate) struct Job {
    pub position: usize,
    pub item: Arc<QaItem>,
    pub config: usize,
    /// The pair has an error row that this result replaces (resume --retry-errors).
    pub replace: bool,
    /// The pair is stored as `judge_error` with this answer: only grade it again (resume
    /// --retry-errors), no new conversation.
    pub regrade: Option<String>,
}

/// Runs `jobs` under the concurrency limit until all finish or the run stops.
pub(crate) async fn execute(sh: Arc<Shared>, jobs: Vec<Job>) -> SessionStats {
    let t0 = Instant::now();
    let scheduled = jobs.len();
    let permits = Arc::new(Semaphore::new(sh.opts.concurrency));
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let sh = sh.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let permit = tokio::select! {
                p = permits.acquire_owned() => p.ok()?,
                _ = sh.stop.wait() => return None,
            };
            if sh.stop.is_stopped() {
                return None;
            }
            let out = run_item(sh, job).await;
            drop(permit);
            out
        });
    }
    let mut stats = SessionStats {
        scheduled,
        ..SessionStats::default()
    };
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Some(outcome)) => {
                stats.finished += 1;
                match outcome {
                    Outcome::Error => stats.errors += 1,
                    Outcome::JudgeError => stats.judge_errors += 1,
                    _ => {}
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "an eval item task failed"),
        }
    }
    sh.progress.finish();
    stats.attempts = sh.attempts.load(Ordering::Relaxed);
    stats.retries = sh.retries.load(Ordering::Relaxed);
    stats.wall = t0.elapsed();
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let o = RunnerOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RunnerOptions::default()
        };
        assert_eq!(backoff(&o, 1, None, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(&o, 1, None, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(&o, 3, None, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(&o, 10, None, 1.0), Duration::from_millis(1000));
        assert_eq!(
            backoff(&o, 1, Some(Duration::from_secs(2)), 0.5),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff(&o, 3, Some(Duration::from_millis(10)), 1.0),
            Duration::from_millis(400)
        );
        let u = jitter_unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn the_rate_limiter_hands_out_evenly_spaced_slots() {
        assert!(Limiter::new(0.0).is_none());
        assert!(Limiter::new(f64::NAN).is_none());
        let l = Limiter::new(4.0).unwrap();
        let t0 = Instant::now() + Duration::from_secs(10);
        let slots: Vec<Duration> = (0..3).map(|_| l.reserve(t0) - t0).collect();
        assert_eq!(
            slots,
            [
                Duration::ZERO,
                Duration::from_millis(250),
                Duration::from_millis(500)
            ]
        );
        // After an idle spell the next slot is "now", not a backlog.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.reserve(later), later);
    }

    #[test]
    fn options_resolve_flags_over_file_over_defaults() {
        let file = RunnerSection {
            concurrency: Some(4),
            max_attempts: Some(2),
            timeout_s: Some(1.5),
            ..RunnerSection::default()
        };
        let o = RunnerOptions::resolve(&file, None);
        assert_eq!(o.concurrency, 4);
        assert_eq!(o.max_attempts, 2);
        assert_eq!(o.timeout, Duration::from_millis(1500));
        assert_eq!(RunnerOptions::resolve(&file, Some(9)).concurrency, 9);
        assert_eq!(
            RunnerOptions::resolve(&RunnerSection::default(), None),
            RunnerOptions::default()
        );
    }
}
