//! The rest of the client: secret odds and ends, rotation settings and jobs,
//! triggers, access keys, audit, and `run`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use tokio::signal::unix::{SignalKind, signal};

use super::{Global, print_json, profile, resolve};

#[derive(Subcommand, Debug)]
pub enum RotationCmd {
    /// Turn automatic rotation on.
    #[command(after_help = "Examples:\n  rotary rotation enable app/db --period 30 --trigger pg-rotator")]
    Enable {
        secret: String,
        #[arg(long)]
        period: i64,
        /// Trigger name or id.
        #[arg(long)]
        trigger: String,
    },
    /// Turn automatic rotation off.
    #[command(after_help = "Examples:\n  rotary rotation disable app/db")]
    Disable { secret: String },
    /// Change the period (days); re-plans, never rotates by itself.
    #[command(after_help = "Examples:\n  rotary rotation period app/db 7")]
    Period { secret: String, days: i64 },
    /// Retry a failed rotation.
    #[command(after_help = "Examples:\n  rotary rotation retry app/db")]
    Retry { secret: String },
    /// Cancel the open rotation job (its function is stopped; pending is kept).
    #[command(after_help = "Examples:\n  rotary rotation cancel app/db")]
    Cancel { secret: String },
    /// active ← previous (external functions only).
    #[command(after_help = "Examples:\n  rotary rotation rollback app/db")]
    Rollback { secret: String },
    /// The secret's rotation jobs.
    #[command(after_help = "Examples:\n  rotary rotation jobs app/db --json")]
    Jobs { secret: String },
    /// The job log; --follow keeps printing new steps.
    #[command(after_help = "Examples:\n  rotary rotation logs app/db --follow")]
    Logs {
        secret: String,
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        keyword: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TriggerCmd {
    /// Register a trigger.
    #[command(
        after_help = "Examples:\n  rotary trigger create pg --type postgres --config '{\"mode\":\"self\"}'\n  rotary trigger create fn --type exec --config '{\"command\":[\"python3\",\"rotate.py\"]}' --params '{\"accessKey\":\"…\",\"secretKey\":\"…\"}'"
    )]
    Create {
        name: String,
        #[arg(long = "type")]
        kind: String,
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, default_value = "{}")]
        params: String,
    },
    /// List triggers and how many secrets use each.
    #[command(alias = "ls", after_help = "Examples:\n  rotary trigger list")]
    List,
    /// Delete a trigger no secret uses.
    #[command(after_help = "Examples:\n  rotary trigger delete old-rotator")]
    Delete { trigger: String },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an access key; the secret key is printed once.
    #[command(after_help = "Examples:\n  rotary key create --role reader --secrets 'app/*'")]
    Create {
        #[arg(long)]
        role: String,
        /// Name pattern the key is limited to.
        #[arg(long)]
        secrets: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List access keys (never their secret keys).
    #[command(alias = "ls", after_help = "Examples:\n  rotary key list")]
    List,
    /// Revoke an access key.
    #[command(after_help = "Examples:\n  rotary key revoke AK2Y…")]
    Revoke { access_key: String },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Newest audit records.
    #[command(after_help = "Examples:\n  rotary audit list --limit 20")]
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Check the hash chain; exits non-zero when it is broken.
    #[command(after_help = "Examples:\n  rotary audit verify")]
    Verify,
}

async fn trigger_id(c: &rotary_client::Client, name_or_id: &str) -> anyhow::Result<String> {
    let d = c.get("/api/v1/triggers").await?.into_data()?;
    d["triggerList"]
        .as_array()
        .and_then(|l| l.iter().find(|t| t["triggerName"] == name_or_id || t["triggerId"] == name_or_id))
        .and_then(|t| t["triggerId"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no trigger named {name_or_id:?}"))
}

fn show_detail(g: &Global, d: &Value, what: &str) {
    if g.json {
        print_json(d);
    } else {
        println!(
            "{what}: {} status {} rotation {} next {}",
            d["secretName"].as_str().unwrap_or_default(),
            d["secretStatus"].as_str().unwrap_or_default(),
            d["autoRotationYN"].as_str().unwrap_or_default(),
            d["nextRotationDate"].as_i64().map(|n| n.to_string()).unwrap_or("-".into())
        );
    }
}

fn print_steps(job: &Value, skip: usize) -> usize {
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    for s in steps.iter().skip(skip) {
        println!(
            "{} {:<24} {:<7} {}",
            job["jobId"].as_str().unwrap_or_default(),
            s["step"].as_str().unwrap_or_default(),
            s["result"].as_str().unwrap_or_default(),
            s["message"].as_str().unwrap_or_default().lines().next().unwrap_or_default()
        );
    }
    steps.len()
}

pub async fn rotation(g: &Global, cmd: RotationCmd) -> anyhow::Result<()> {
    let c = profile::client(&g.profile)?;
    match cmd {
        RotationCmd::Enable { secret, period, trigger } => {
            let id = resolve(&c, &secret).await?;
            let t = trigger_id(&c, &trigger).await?;
            let d = c
                .post(
                    &format!("/api/v1/secrets/{id}/enable-auto-rotation"),
                    &json!({"rotationPeriod": period, "triggerId": t}),
                )
                .await?
                .into_data()?;
            show_detail(g, &d, "rotation enabled");
        }
        RotationCmd::Disable { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/disable-auto-rotation"), &json!({})).await?.into_data()?;
            show_detail(g, &d, "rotation disabled");
        }
        RotationCmd::Period { secret, days } => {
            let id = resolve(&c, &secret).await?;
            let d = c
                .put(&format!("/api/v1/secrets/{id}/rotation-period"), &json!({"rotationPeriod": days}))
                .await?
                .into_data()?;
            show_detail(g, &d, "period changed");
        }
        RotationCmd::Retry { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/retry-rotation"), &json!({})).await?.into_data()?;
            if g.json { print_json(&d) } else { println!("retry queued: {}", d["jobId"].as_str().unwrap_or_default()) }
        }
        RotationCmd::Cancel { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/cancel-rotation"), &json!({})).await?.into_data()?;
            if g.json { print_json(&d) } else { println!("cancelled: {}", d["jobId"].as_str().unwrap_or_default()) }
        }
        RotationCmd::Rollback { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/rollback-rotation"), &json!({})).await?.into_data()?;
            show_detail(g, &d, "rolled back");
        }
        RotationCmd::Jobs { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.get(&format!("/api/v1/secrets/{id}/logs?pageSize=100")).await?.into_data()?;
            if g.json {
                print_json(&d["jobList"]);
            } else {
                println!("{:<26} {:<10} {:<9} {:<7} ERROR", "JOB", "STATUS", "KIND", "ATTEMPT");
                for j in d["jobList"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{:<26} {:<10} {:<9} {:<7} {}",
                        j["jobId"].as_str().unwrap_or_default(),
                        j["status"].as_str().unwrap_or_default(),
                        j["kind"].as_str().unwrap_or_default(),
                        j["attempt"],
                        j["error"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        RotationCmd::Logs { secret, follow, keyword } => {
            let id = resolve(&c, &secret).await?;
            let q = keyword
                .map(|k| format!("&keyword={}", url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()))
                .unwrap_or_default();
            let mut seen: std::collections::HashMap<String, usize> = Default::default();
            loop {
                let d = c.get(&format!("/api/v1/secrets/{id}/logs?pageSize=20{q}")).await?.into_data()?;
                let mut jobs = d["jobList"].as_array().cloned().unwrap_or_default();
                jobs.reverse();
                for j in &jobs {
                    let key = j["jobId"].as_str().unwrap_or_default().to_owned();
                    if g.json {
                        if !seen.contains_key(&key) {
                            print_json(j);
                        }
                        seen.insert(key, 0);
                    } else {
                        let n = print_steps(j, *seen.get(&key).unwrap_or(&0));
                        seen.insert(key, n);
                    }
                }
                if !follow {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}

pub async fn trigger(g: &Global, cmd: TriggerCmd) -> anyhow::Result<()> {
    let c = profile::client(&g.profile)?;
    match cmd {
        TriggerCmd::Create { name, kind, config, params } => {
            let config: Value = serde_json::from_str(&config).context("--config is not JSON")?;
            let params: Value = serde_json::from_str(&params).context("--params is not JSON")?;
            let body = json!({"name": name, "type": kind, "config": config, "defaultParams": params});
            let d = c.post("/api/v1/triggers", &body).await?.into_data()?;
            if g.json {
                print_json(&d)
            } else {
                println!(
                    "created trigger {} ({})",
                    d["triggerName"].as_str().unwrap_or_default(),
                    d["triggerId"].as_str().unwrap_or_default()
                )
            }
        }
        TriggerCmd::List => {
            let d = c.get("/api/v1/triggers").await?.into_data()?;
            if g.json {
                print_json(&d["triggerList"]);
            } else {
                println!("{:<20} {:<30} {:<9} SECRETS", "NAME", "ID", "TYPE");
                for t in d["triggerList"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{:<20} {:<30} {:<9} {}",
                        t["triggerName"].as_str().unwrap_or_default(),
                        t["triggerId"].as_str().unwrap_or_default(),
                        t["type"].as_str().unwrap_or_default(),
                        t["secretIdList"].as_array().map(|l| l.len()).unwrap_or(0)
                    );
                }
            }
        }
        TriggerCmd::Delete { trigger } => {
            let id = trigger_id(&c, &trigger).await?;
            c.delete(&format!("/api/v1/triggers/{id}")).await?.into_data()?;
            if !g.json {
                println!("deleted trigger {trigger}");
            }
        }
    }
    Ok(())
}

pub async fn key(g: &Global, cmd: KeyCmd) -> anyhow::Result<()> {
    let c = profile::client(&g.profile)?;
    match cmd {
        KeyCmd::Create { role, secrets, description } => {
            let body = json!({"role": role, "secretPattern": secrets, "description": description});
            let d = c.post("/api/v1/access-keys", &body).await?.into_data()?;
            if g.json {
                print_json(&d);
            } else {
                println!("access key: {}", d["accessKey"].as_str().unwrap_or_default());
                println!("secret key: {}   (shown only now)", d["secretKey"].as_str().unwrap_or_default());
            }
        }
        KeyCmd::List => {
            let d = c.get("/api/v1/access-keys").await?.into_data()?;
            if g.json {
                print_json(&d["accessKeyList"]);
            } else {
                println!("{:<22} {:<9} {:<8} PATTERN", "ACCESS KEY", "ROLE", "STATUS");
                for k in d["accessKeyList"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{:<22} {:<9} {:<8} {}",
                        k["accessKey"].as_str().unwrap_or_default(),
                        k["role"].as_str().unwrap_or_default(),
                        k["status"].as_str().unwrap_or_default(),
                        k["secretPattern"].as_str().unwrap_or("*")
                    );
                }
            }
        }
        KeyCmd::Revoke { access_key } => {
            c.delete(&format!("/api/v1/access-keys/{access_key}")).await?.into_data()?;
            if !g.json {
                println!("revoked {access_key}");
            }
        }
    }
    Ok(())
}

pub async fn audit(g: &Global, cmd: AuditCmd) -> anyhow::Result<()> {
    let c = profile::client(&g.profile)?;
    match cmd {
        AuditCmd::List { limit } => {
            let d = c.get(&format!("/api/v1/audit?pageSize={}", limit.clamp(1, 1000))).await?.into_data()?;
            if g.json {
                print_json(&d["auditList"]);
            } else {
                for a in d["auditList"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{:>6} {} {:<22} {:<24} {:<22} {}",
                        a["seq"],
                        a["timestamp"],
                        a["accessKey"].as_str().unwrap_or("-"),
                        a["action"].as_str().unwrap_or_default(),
                        a["secretId"].as_str().unwrap_or("-"),
                        a["result"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        AuditCmd::Verify => {
            let d = c.get("/api/v1/audit/verify").await?.into_data()?;
            if g.json {
                print_json(&d);
            }
            if d["valid"] != true {
                bail!(
                    "the audit chain is broken at record {}: {}",
                    d["firstInvalidSeq"],
                    d["reason"].as_str().unwrap_or_default()
                );
            }
            if !g.json {
                println!("audit chain valid ({} records)", d["checkedRecords"]);
            }
        }
    }
    Ok(())
}

/// Environment variables (name, value) for the command.
type Env = Vec<(String, String)>;

/// `rotary run`: the secrets' active values as environment variables of a
/// command; signals pass through, its exit code is ours; with `watch`, a
/// rotation restarts it with the new values.
pub async fn run(
    g: &Global,
    secrets: &[String],
    prefix: &str,
    names: &[String],
    watch: Option<u64>,
    cmd: &[String],
) -> anyhow::Result<i32> {
    let c = profile::client(&g.profile)?;
    let mut renames = std::collections::HashMap::new();
    for n in names {
        let (k, v) = n.split_once('=').with_context(|| format!("--name {n:?} is not KEY=NAME"))?;
        renames.insert(k.to_owned(), v.to_owned());
    }
    let (program, args) = cmd.split_first().context("give the command after --")?;
    let mut ids = vec![];
    for s in secrets {
        ids.push(resolve(&c, s).await?);
    }
    let load = async |c: &rotary_client::Client| -> anyhow::Result<(Env, Vec<i64>)> {
        let mut env = vec![];
        let mut versions = vec![];
        for id in &ids {
            let d = c.get(&format!("/api/v1/secrets/{id}/active")).await?.into_data()?;
            versions.push(d["version"].as_i64().unwrap_or_default());
            let map: serde_json::Map<String, Value> = serde_json::from_str(d["value"].as_str().unwrap_or("{}"))?;
            for (k, v) in map {
                let name = renames.get(&k).cloned().unwrap_or_else(|| super::format::env_name(prefix, &k));
                env.push((name, v.as_str().unwrap_or_default().to_owned()));
            }
        }
        Ok((env, versions))
    };
    // Signals to the command: one task per kind feeds a channel.
    let (sig_tx, mut sig_rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
    for (kind, num) in [
        (SignalKind::interrupt(), 2),
        (SignalKind::terminate(), 15),
        (SignalKind::hangup(), 1),
        (SignalKind::quit(), 3),
    ] {
        let mut s = signal(kind)?;
        let tx = sig_tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(num).is_err() {
                    break;
                }
            }
        });
    }
    loop {
        let (env, versions) = load(&c).await?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .envs(env)
            .spawn()
            .with_context(|| format!("failed to start {program}"))?;
        let pid = child.id().unwrap_or_default();
        let forward = |sig: i32| {
            let _ = std::process::Command::new("kill").args([format!("-{sig}"), pid.to_string()]).status();
        };
        let mut tick = tokio::time::interval(Duration::from_secs(watch.unwrap_or(3600).max(1)));
        tick.tick().await;
        let restart = loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status?;
                    return Ok(status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(1)));
                }
                Some(sig) = sig_rx.recv() => forward(sig),
                _ = tick.tick(), if watch.is_some() => {
                    if let Ok((_, now)) = load(&c).await && now != versions {
                        eprintln!("rotary run: the secret changed; restarting {program}");
                        forward(15);
                        let _ = child.wait().await;
                        break true;
                    }
                }
            }
        };
        if !restart {
            return Ok(0);
        }
    }
}
