//! `exec` and `http` triggers: run the user's rotation function.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rotary_core::service::{Dispatch, RotationService};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::redact::redact;

/// Output kept per stream; the rest is dropped (and the log says so).
const OUTPUT_CAP: usize = 64 * 1024;
/// Read beyond the cap by more than the longest possible value, so that a
/// value straddling the cap is redacted whole before the text is cut.
const READ_CAP: usize = OUTPUT_CAP + 64 * 1024;

pub struct Runner {
    pub rotation: Arc<RotationService>,
    /// Base URL of this server, given to functions as `endpoint`.
    pub endpoint: String,
    http: reqwest::Client,
}

pub struct ExecOutcome {
    /// `exit status 0`, `killed by signal 9`, `timed out after 30 s`…
    pub outcome: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = READ_CAP.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (out, truncated)
}

/// Runs `command` with `args` as JSON on stdin and each argument as an
/// environment variable of the same name (string values as they are, others
/// as JSON). Kills the process at `timeout`, or when `stop` resolves (the job
/// was closed: timed out or cancelled), with its answer as the reason.
pub async fn run_exec(
    config: &Value,
    args: &Map<String, Value>,
    timeout: Duration,
    stop: impl std::future::Future<Output = String>,
) -> std::io::Result<ExecOutcome> {
    let argv: Vec<&str> =
        config["command"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let Some((program, rest)) = argv.split_first() else {
        return Err(std::io::Error::other("config.command is empty"));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so that a timeout or cancel kills everything
        // the function started, not just the first process.
        .process_group(0)
        // A clean environment: the server's own (ROTARY_MASTER_KEY, admin
        // keys, …) never reaches a function.
        .env_clear();
    for k in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    if let Some(dir) = config.get("workingDir").and_then(Value::as_str) {
        cmd.current_dir(dir);
    }
    for (k, v) in args {
        let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
        cmd.env(k, text);
    }
    let mut child = cmd.spawn()?;
    let group = child.id();
    let input = serde_json::to_vec(args).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // A function that does not read stdin closes it early: not an error.
        let _ = stdin.write_all(&input).await;
    }
    let out = tokio::spawn(read_capped(child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?));
    let err = tokio::spawn(read_capped(child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?));
    let outcome = tokio::select! {
        r = tokio::time::timeout(timeout, child.wait()) => match r {
            Ok(Ok(status)) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "ended".to_owned(),
            },
            Ok(Err(e)) => format!("could not be waited for: {e}"),
            Err(_) => {
                let _ = child.kill().await;
                format!("killed after the {} s timeout", timeout.as_secs())
            }
        },
        why = stop => {
            let _ = child.kill().await;
            format!("stopped: {why}")
        }
    };
    // Whatever the function left running in its group goes too (it would
    // otherwise hold the output pipes open, or change the database later).
    if let Some(pgid) = group {
        let _ = tokio::process::Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status().await;
    }
    let (stdout, t1) = out.await.unwrap_or_default();
    let (stderr, t2) = err.await.unwrap_or_default();
    Ok(ExecOutcome { outcome, stdout, stderr, truncated: t1 || t2 })
}

impl Runner {
    pub fn new(rotation: Arc<RotationService>, endpoint: String) -> Self {
        Self { rotation, endpoint, http: reqwest::Client::new() }
    }

    /// Runs one dispatched job to the end of its function. Never panics; every
    /// failure ends up in the job log.
    pub async fn run(&self, d: Dispatch) {
        let now = d.job.started_at.unwrap_or_default();
        match d.trigger.kind.as_str() {
            "postgres" => return crate::builtin::run(&crate::postgres::Postgres, &self.rotation, d, now).await,
            "mysql" => return crate::builtin::run(&crate::mysql::MySql, &self.rotation, d, now).await,
            _ => {}
        }
        let mut args = d.params.clone();
        args.insert("secretId".into(), Value::String(d.job.secret_id.clone()));
        args.insert("jobToken".into(), Value::String(d.token.expose_secret().to_owned()));
        args.insert("endpoint".into(), Value::String(self.endpoint.clone()));
        let config: Value = serde_json::from_str(&d.trigger.config).unwrap_or(Value::Null);
        let timeout = Duration::from_millis(d.timeout_ms.max(1000) as u64);
        let job = d.job.clone();
        // Values in the chain now (the function sees them at start) and after
        // it ran (what it generated or stored) are all redacted.
        let before = self.rotation.redactions(&job).await.unwrap_or_default();
        let params =
            args.values().filter_map(Value::as_str).map(|v| secrecy::SecretString::from(v.to_owned())).collect();
        let runner = RunLog { runner: self, before, params };
        runner.go(&job, &d, &config, &args, timeout).await;
    }
}

struct RunLog<'a> {
    runner: &'a Runner,
    before: Vec<secrecy::SecretString>,
    /// The trigger's default parameters (keys, tokens) and the job token.
    params: Vec<secrecy::SecretString>,
}

impl RunLog<'_> {
    async fn go(
        &self,
        job: &rotary_core::store::JobRow,
        d: &Dispatch,
        config: &Value,
        args: &Map<String, Value>,
        timeout: Duration,
    ) {
        let rotation = &self.runner.rotation;
        match d.trigger.kind.as_str() {
            "exec" => match run_exec(config, args, timeout, self.closed(&job.id)).await {
                Ok(o) => {
                    self.log_output(job, "stdout", &o.stdout).await;
                    self.log_output(job, "stderr", &o.stderr).await;
                    if o.truncated {
                        let _ = rotation.append_log(job, "output", "INFO", "output over 64 KiB was dropped").await;
                    }
                    let _ = rotation
                        .append_log(job, "function", "INFO", &format!("the function ended: {}", o.outcome))
                        .await;
                    if let Err(e) = rotation.function_ended(&job.id, &o.outcome).await {
                        tracing::warn!(job = %job.id, error = %e, "closing the job failed");
                    }
                }
                Err(e) => {
                    let why = format!("the command could not be started: {e}");
                    let _ = rotation.append_log(job, "function", "FAILED", &why).await;
                    let _ = rotation.function_ended(&job.id, "not started").await;
                }
            },
            "http" => {
                let url = config["url"].as_str().unwrap_or_default();
                let res = self.runner.http.post(url).json(args).timeout(timeout).send().await;
                let (failed, msg) = match res {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await.unwrap_or_default();
                        self.log_output(job, "response", &body[..body.len().min(READ_CAP)]).await;
                        (!status.is_success(), format!("the function's URL answered {status}"))
                    }
                    // Never the URL's query (it may hold a token): only the kind of failure.
                    Err(e) if e.is_timeout() => (true, "the function's URL did not answer in time".to_owned()),
                    Err(e) if e.is_connect() => (true, "the function's URL could not be reached".to_owned()),
                    Err(_) => (true, "the call to the function's URL failed".to_owned()),
                };
                let _ = rotation.append_log(job, "function", if failed { "FAILED" } else { "INFO" }, &msg).await;
                if failed {
                    // The function did not run (or said it failed): end the job
                    // now. On success it drives the job itself, and the job's
                    // deadline ends it if it does not.
                    let _ = rotation.function_ended(&job.id, &msg).await;
                }
            }
            other => {
                let _ = rotation.function_ended(&job.id, &format!("unsupported trigger type {other}")).await;
            }
        }
    }

    /// Resolves when the job is no longer open (timed out, cancelled, or
    /// closed by the function itself), with its status.
    async fn closed(&self, job_id: &str) -> String {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match self.runner.rotation.job_status(job_id).await {
                Ok(Some(s)) if matches!(s.as_str(), "QUEUED" | "DISPATCHED" | "RUNNING") => {}
                // Succeeded or failed through the action API: let the process
                // finish on its own (it is printing its last lines).
                Ok(Some(s)) if matches!(s.as_str(), "SUCCEEDED" | "FAILED") => std::future::pending::<()>().await,
                Ok(Some(s)) => return format!("the job was closed ({s})"),
                Ok(None) => return "the job no longer exists".to_owned(),
                Err(_) => {}
            }
        }
    }

    async fn log_output(&self, job: &rotary_core::store::JobRow, stream: &str, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let rotation = &self.runner.rotation;
        let text = String::from_utf8_lossy(bytes);
        let params = self.params.clone();
        let mut values = match rotation.redactions(job).await {
            Ok(v) => v,
            Err(e) => {
                // Without the values to redact, the output cannot be logged safely.
                tracing::warn!(job = %job.id, error = %e, "output not logged: redaction values unavailable");
                let _ = rotation.append_log(job, stream, "INFO", "output withheld: it could not be redacted").await;
                return;
            }
        };
        values.extend(self.before.iter().cloned());
        values.extend(params);
        let mut clean = redact(&text, &values);
        if clean.len() > OUTPUT_CAP {
            let mut cut = OUTPUT_CAP;
            while !clean.is_char_boundary(cut) {
                cut -= 1;
            }
            clean.truncate(cut);
            clean.push_str(" [output over 64 KiB dropped]");
        }
        let _ = rotation.append_log(job, stream, "INFO", &clean).await;
    }
}
