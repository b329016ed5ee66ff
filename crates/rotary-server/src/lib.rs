//! The Rotary server: HTTP API (axum) over the core services and the store.
//!
//! [`start`] boots (data directory, master key, store, first admin key), binds
//! and serves in the background; the binary's `rotary server` and the
//! integration tests both use it.

pub mod app;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rotary_core::Clock;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use bootstrap::FirstAdmin;
pub use config::Config;

/// A server running in the background.
pub struct Running {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// True when this start created the data directory.
    pub created: bool,
    /// Set only when this start generated the first admin key.
    pub first_admin: Option<FirstAdmin>,
    pub state: state::AppState,
    _lock: std::fs::File,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests and waits for the end.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task panicked")?
    }

    /// Waits until the server ends by itself (it does not, short of an error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

pub async fn start(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let booted = bootstrap::boot(cfg, clock).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen_addr()?)
        .await
        .with_context(|| format!("failed to listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let state = booted.state.clone();
    let app = app::router(state.clone());

    match state.rotation.recover_after_restart().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            count = n,
            "failed rotation jobs left running by the previous server process; retries queued"
        ),
        Err(e) => tracing::warn!(error = %e, "recovering rotation jobs failed"),
    }
    let endpoint = cfg.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let runner = Arc::new(rotary_rotators::Runner::new(state.rotation.clone(), endpoint));
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.rotation_max_concurrent));
    tokio::spawn(scheduler(state.clone(), runner, Duration::from_millis(cfg.scheduler_interval_ms), slots, rx.clone()));

    let task = tokio::spawn(async move { serve(listener, app, rx).await });
    Ok(Running {
        addr,
        data_dir: booted.data_dir,
        created: booted.created,
        first_admin: booted.first_admin,
        state,
        _lock: booted.lock,
        shutdown: tx,
        task,
    })
}

/// Accepts connections and serves HTTP/1 until `stop`, then lets in-flight
/// requests finish. Every request is handed to `RunToEnd` the moment hyper
/// has read it, and so runs in its own task to its end. With `axum::serve`,
/// a request whose client closed the connection right after sending it was
/// sometimes read and then dropped without running (and so without an audit
/// record); the test `a_request_whose_client_closes_right_after_sending_…`
/// pins this. `half_close` lets the answer still be written to a client that
/// only closed its sending side.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use tower::Service;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            middleware::RunToEnd(app.clone()).call(req.map(axum::body::Body::new))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            // A client that never finishes its request headers is dropped.
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    // In-flight requests finish; a connection that will not close does not
    // hold the shutdown up for more than a few seconds.
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open 10 s after shutdown began; closing anyway");
    }
    Ok(())
}

/// The scheduler: on every interval (or when woken), one rotation tick —
/// time out overdue jobs, queue due rotations, dispatch queued jobs to the
/// runner, no more than `slots` at once — and once a minute, destroy secrets
/// whose recovery window ended. A finished run wakes the loop, so a queued job
/// takes a freed slot at once.
async fn scheduler(
    state: state::AppState,
    runner: Arc<rotary_rotators::Runner>,
    interval: Duration,
    slots: Arc<tokio::sync::Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        match state.rotation.tick(slots.available_permits()).await {
            Ok(dispatches) => {
                for d in dispatches {
                    // Only this loop takes permits, and it asked for no more
                    // than were free, so this does not wait.
                    let Ok(permit) = slots.clone().acquire_owned().await else { break };
                    let runner = runner.clone();
                    let wake = state.wake.clone();
                    tokio::spawn(async move {
                        runner.run(d).await;
                        drop(permit);
                        wake.notify_one();
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "scheduler tick failed"),
        }
        if last_purge.elapsed() >= Duration::from_secs(60) {
            last_purge = std::time::Instant::now();
            match state.secrets.purge_expired("scheduler").await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "destroyed secrets whose recovery window ended"),
                Err(e) => tracing::warn!(error = %e, "purging expired secrets failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = state.wake.notified() => {}
            _ = stop.changed() => break,
        }
    }
}
