//! The client commands of `rotary`: everything goes through the signed HTTP
//! API (rotary-client). Errors go to stderr as one line with the server's
//! message, and a non-zero exit code.

pub mod format;
pub mod more;
pub mod profile;

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use rotary_client::Client;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Profile from `rotary login` (env: ROTARY_PROFILE).
    #[arg(long, global = true, env = "ROTARY_PROFILE", default_value = "default")]
    pub profile: String,
    /// Machine-readable JSON output (stable field names: the API's).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Create a secret from KEY=VALUE pairs, --from-file F.json, or stdin.
    #[command(
        after_help = "Examples:\n  rotary secret create app/db host=db port=5432 user=app password=s3cret --rotate password\n  rotary secret create app/api --from-file api.json\n  echo '{\"token\":\"x\"}' | rotary secret create app/token"
    )]
    Create {
        name: String,
        /// KEY=VALUE pairs.
        pairs: Vec<String>,
        #[arg(long)]
        from_file: Option<std::path::PathBuf>,
        /// A key that rotation replaces (repeatable).
        #[arg(long = "rotate")]
        rotate: Vec<String>,
        #[arg(long)]
        memo: Option<String>,
    },
    /// List secrets.
    #[command(
        alias = "ls",
        after_help = "Examples:\n  rotary secret list\n  rotary secret list --json | jq -r '.[].secretName'"
    )]
    List,
    /// Details of a secret (values masked).
    #[command(after_help = "Examples:\n  rotary secret show app/db")]
    Show { secret: String },
    /// Print a secret's value.
    #[command(
        after_help = "Examples:\n  rotary secret get app/db --field password\n  eval \"$(rotary secret get app/db --format env --prefix DB_)\"\n  psql \"$(rotary secret get app/db --format url)\""
    )]
    Get {
        secret: String,
        #[arg(long, default_value = "active")]
        stage: String,
        /// Only this key's value.
        #[arg(long)]
        field: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Prefix for env/dotenv names.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Set a new active value (the old one becomes previous).
    #[command(
        after_help = "Examples:\n  rotary secret put app/db host=db port=5432 user=app password=n3w\n  rotary secret put app/db --from-file db.json"
    )]
    Put {
        secret: String,
        pairs: Vec<String>,
        #[arg(long)]
        from_file: Option<std::path::PathBuf>,
    },
    /// Schedule deletion (recoverable with `restore` during the window).
    #[command(alias = "rm", after_help = "Examples:\n  rotary secret delete app/old")]
    Delete { secret: String },
    /// Cancel a scheduled deletion.
    #[command(after_help = "Examples:\n  rotary secret restore app/old")]
    Restore { secret: String },
    /// Change the memo.
    #[command(after_help = "Examples:\n  rotary secret memo app/db 'primary database, owner: team-a'")]
    Memo { secret: String, memo: String },
    /// Make the values readable again.
    #[command(after_help = "Examples:\n  rotary secret enable app/db")]
    Enable { secret: String },
    /// Make the values unreadable (metadata stays).
    #[command(after_help = "Examples:\n  rotary secret disable app/db")]
    Disable { secret: String },
    /// Stored versions and the stages pointing at them (no values).
    #[command(after_help = "Examples:\n  rotary secret history app/db")]
    History { secret: String },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Env,
    Dotenv,
    Url,
}

fn read_value(pairs: &[String], from_file: Option<&std::path::Path>) -> anyhow::Result<SecretString> {
    if let Some(f) = from_file {
        let text = if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("failed to read {}", f.display()))?
        };
        return Ok(SecretString::from(text));
    }
    if pairs.is_empty() {
        if std::io::stdin().is_terminal() {
            bail!("give KEY=VALUE pairs, --from-file F.json, or a JSON object on stdin");
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(SecretString::from(s));
    }
    let mut map = Map::new();
    for (i, p) in pairs.iter().enumerate() {
        // Never echo the argument: without its '=' it may be a bare value.
        let (k, v) = p.split_once('=').with_context(|| format!("argument {} is not KEY=VALUE", i + 1))?;
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(SecretString::from(Value::Object(map).to_string()))
}

/// A secret id from a name or id.
pub async fn resolve(c: &Client, name_or_id: &str) -> anyhow::Result<String> {
    let mut page = 1;
    loop {
        let d = c.get(&format!("/api/v1/secrets?pageNo={page}&pageSize=1000")).await?.into_data()?;
        let list = d["secretList"].as_array().cloned().unwrap_or_default();
        if let Some(s) = list.iter().find(|s| s["secretName"] == name_or_id || s["secretId"] == name_or_id) {
            return Ok(s["secretId"].as_str().unwrap_or_default().to_owned());
        }
        if page >= d["totalPageNo"].as_u64().unwrap_or(1) as u32 {
            bail!("no secret named {name_or_id:?}");
        }
        page += 1;
    }
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn secret(g: &Global, cmd: SecretCmd) -> anyhow::Result<()> {
    let c = profile::client(&g.profile)?;
    match cmd {
        SecretCmd::Create { name, pairs, from_file, rotate, memo } => {
            let value = read_value(&pairs, from_file.as_deref())?;
            let body = json!({"secretName": name, "memo": memo,
                "secretValue": {"value": secrecy::ExposeSecret::expose_secret(&value), "rotationTargets": rotate}});
            let d = c.post("/api/v1/secrets", &body).await?.into_data()?;
            if g.json {
                print_json(&d)
            } else {
                println!(
                    "created {} ({})",
                    d["secretName"].as_str().unwrap_or_default(),
                    d["secretId"].as_str().unwrap_or_default()
                )
            }
        }
        SecretCmd::List => {
            let mut all = vec![];
            let mut page = 1;
            loop {
                let d = c.get(&format!("/api/v1/secrets?pageNo={page}&pageSize=1000")).await?.into_data()?;
                all.extend(d["secretList"].as_array().cloned().unwrap_or_default());
                if page >= d["totalPageNo"].as_u64().unwrap_or(1) as u32 {
                    break;
                }
                page += 1;
            }
            if g.json {
                print_json(&Value::Array(all));
            } else {
                println!("{:<32} {:<22} {:<9} {:<8} NEXT ROTATION (ms)", "NAME", "ID", "STATUS", "ROTATION");
                for s in all {
                    println!(
                        "{:<32} {:<22} {:<9} {:<8} {}",
                        s["secretName"].as_str().unwrap_or_default(),
                        s["secretId"].as_str().unwrap_or_default(),
                        s["secretStatus"].as_str().unwrap_or_default(),
                        s["autoRotationYN"].as_str().unwrap_or_default(),
                        s["nextRotationDate"].as_i64().map(|d| d.to_string()).unwrap_or("-".into())
                    );
                }
            }
        }
        SecretCmd::Show { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.get(&format!("/api/v1/secrets/{id}")).await?.into_data()?;
            if g.json {
                print_json(&d);
            } else {
                for k in [
                    "secretName",
                    "secretId",
                    "secretStatus",
                    "memo",
                    "rotationTargets",
                    "autoRotationYN",
                    "autoRotationPeriod",
                    "nextRotationDate",
                    "lastRotationDate",
                    "rotationPhase",
                    "triggerId",
                ] {
                    if let Some(v) = d.get(k) {
                        println!("{k:<18} {}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
                    }
                }
                println!(
                    "{:<18} ******** (rotary secret get {})",
                    "value",
                    d["secretName"].as_str().unwrap_or_default()
                );
            }
        }
        SecretCmd::Get { secret, stage, field, format, prefix } => {
            let id = resolve(&c, &secret).await?;
            let d = c.get(&format!("/api/v1/secrets/{id}/{stage}")).await?.into_data()?;
            let map: Map<String, Value> =
                serde_json::from_str(d["value"].as_str().unwrap_or("{}")).context("the value is not a JSON object")?;
            if let Some(f) = field {
                let v = map.get(&f).and_then(Value::as_str).with_context(|| format!("the secret has no key {f:?}"))?;
                println!("{v}");
                return Ok(());
            }
            match format {
                Format::Json => print_json(&Value::Object(map)),
                Format::Env => print!("{}", format::env_lines(&map, &prefix)),
                Format::Dotenv => print!("{}", format::dotenv_lines(&map, &prefix)),
                Format::Url => println!("{}", format::connection_url(&map)?),
            }
        }
        SecretCmd::Put { secret, pairs, from_file } => {
            let id = resolve(&c, &secret).await?;
            let value = read_value(&pairs, from_file.as_deref())?;
            let body = json!({"value": secrecy::ExposeSecret::expose_secret(&value)});
            let d = c.put(&format!("/api/v1/secrets/{id}/values"), &body).await?.into_data()?;
            if g.json {
                print_json(&d)
            } else {
                println!("updated {secret}: the new value is active, the old one is previous")
            }
        }
        SecretCmd::Delete { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/request-deletion"), &json!({})).await?.into_data()?;
            if g.json {
                print_json(&d)
            } else {
                println!(
                    "{secret} is scheduled for deletion at {} (ms); `rotary secret restore {secret}` undoes it",
                    d["expectedDestroyDate"]
                )
            }
        }
        SecretCmd::Memo { secret, memo } => {
            let id = resolve(&c, &secret).await?;
            let d = c.put(&format!("/api/v1/secrets/{id}/memo"), &json!({"memo": memo})).await?.into_data()?;
            if g.json { print_json(&d) } else { println!("memo of {secret} changed") }
        }
        SecretCmd::Enable { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/enable"), &json!({})).await?.into_data()?;
            if g.json { print_json(&d) } else { println!("{secret} enabled") }
        }
        SecretCmd::Disable { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/disable"), &json!({})).await?.into_data()?;
            if g.json { print_json(&d) } else { println!("{secret} disabled") }
        }
        SecretCmd::History { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.get(&format!("/api/v1/secrets/{id}/versions")).await?.into_data()?;
            if g.json {
                print_json(&d["versionList"]);
            } else {
                println!("{:<8} {:<15} STAGES", "VERSION", "CREATED (ms)");
                for v in d["versionList"].as_array().cloned().unwrap_or_default() {
                    let stages: Vec<&str> = v["stages"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    println!("{:<8} {:<15} {}", v["version"], v["createDate"], stages.join(","));
                }
            }
        }
        SecretCmd::Restore { secret } => {
            let id = resolve(&c, &secret).await?;
            let d = c.post(&format!("/api/v1/secrets/{id}/cancel-deletion"), &json!({})).await?.into_data()?;
            if g.json {
                print_json(&d)
            } else {
                println!("{secret} restored ({})", d["secretStatus"].as_str().unwrap_or_default())
            }
        }
    }
    Ok(())
}

/// `rotary rotate NAME [--wait]`: exits non-zero when the job fails.
pub async fn rotate(g: &Global, secret: &str, wait: bool) -> anyhow::Result<()> {
    let c = profile::client(&g.profile)?;
    let id = resolve(&c, secret).await?;
    let job = c.post(&format!("/api/v1/secrets/{id}/rotation"), &json!({})).await?.into_data()?;
    let job_id = job["jobId"].as_str().unwrap_or_default().to_owned();
    if !wait {
        if g.json {
            print_json(&job)
        } else {
            println!("rotation queued: {job_id}")
        }
        return Ok(());
    }
    let mut shown = 0;
    let tty = std::io::stdout().is_terminal() && !g.json;
    let frames = ['|', '/', '-', '\\'];
    let mut frame = 0;
    loop {
        let logs = c.get(&format!("/api/v1/secrets/{id}/logs?pageSize=20")).await?.into_data()?;
        let Some(j) =
            logs["jobList"].as_array().and_then(|l| l.iter().find(|j| j["jobId"] == job_id.as_str())).cloned()
        else {
            bail!("the job {job_id} vanished");
        };
        let steps = j["steps"].as_array().cloned().unwrap_or_default();
        if tty && steps.len() > shown {
            print!("\r\x1b[K");
        }
        if !g.json {
            for s in steps.iter().skip(shown) {
                println!(
                    "{:<24} {:<7} {}",
                    s["step"].as_str().unwrap_or_default(),
                    s["result"].as_str().unwrap_or_default(),
                    s["message"].as_str().unwrap_or_default().lines().next().unwrap_or_default()
                );
            }
        }
        shown = steps.len();
        match j["status"].as_str().unwrap_or_default() {
            "SUCCEEDED" => {
                if tty {
                    print!("\r\x1b[K");
                }
                if g.json {
                    print_json(&j)
                } else {
                    println!("rotation succeeded")
                }
                return Ok(());
            }
            "FAILED" | "TIMED_OUT" | "CANCELLED" => {
                if g.json {
                    print_json(&j)
                }
                bail!(
                    "rotation {}: {}",
                    j["status"].as_str().unwrap_or_default().to_lowercase(),
                    j["error"].as_str().unwrap_or_default()
                );
            }
            status => {
                if tty {
                    // A progress line on a terminal; plain step lines otherwise.
                    print!("\r{} {}", frames[frame % frames.len()], status.to_lowercase());
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                    frame += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await
            }
        }
    }
}

/// `rotary login`: stores endpoint + access key; the secret key comes from a
/// file, the environment, or a prompt that does not echo.
pub fn login(
    profile: &str,
    endpoint: String,
    access_key: String,
    secret_key_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let secret = match (secret_key_file, std::env::var("ROTARY_SECRET_KEY").ok().filter(|s| !s.is_empty())) {
        (Some(f), _) => SecretString::from(
            std::fs::read_to_string(&f).with_context(|| format!("failed to read {}", f.display()))?.trim().to_owned(),
        ),
        (None, Some(s)) => SecretString::from(s),
        (None, None) => SecretString::from(rpassword::prompt_password("secret key: ").context(
            "no terminal to prompt for the secret key on: give --secret-key-file FILE or set ROTARY_SECRET_KEY",
        )?),
    };
    let path = profile::save(profile, profile::Profile { endpoint, access_key }, &secret)?;
    println!("saved profile {profile:?} in {}", path.display());
    Ok(())
}
