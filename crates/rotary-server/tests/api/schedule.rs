//! Schedules are absolute: stored as a time, kept across restarts, never
//! early, never twice, never forgotten; a period change re-plans without
//! rotating.

use std::sync::Arc;
use std::time::Duration;

use rotary_client::Client;
use rotary_core::OffsetClock;
use rotary_server::{Config, Running};
use secrecy::SecretString;
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

struct Node {
    cfg: Config,
    clock: Arc<OffsetClock>,
    server: Option<Running>,
    creds: (String, String),
}

impl Node {
    async fn start(&mut self) {
        let s = rotary_server::start(&self.cfg, self.clock.clone()).await.unwrap();
        if let Some(a) = &s.first_admin {
            self.creds = (a.access_key.clone(), secrecy::ExposeSecret::expose_secret(&a.secret_key).to_owned());
        }
        self.server = Some(s);
    }
    async fn stop(&mut self) {
        self.server.take().unwrap().stop().await.unwrap();
    }
    fn admin(&self) -> Client {
        let base = format!("http://{}", self.server.as_ref().unwrap().addr);
        Client::new(&base, &self.creds.0, SecretString::from(self.creds.1.clone()))
            .with_time_offset_ms(self.clock.offset_ms())
    }
    /// Runs scheduler passes and gives dispatched jobs a moment to run.
    async fn settle(&self) {
        for _ in 0..3 {
            self.server.as_ref().unwrap().state.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
    }
    async fn jobs(&self, id: &str) -> Vec<Value> {
        let d = self.admin().get(&format!("/api/v1/secrets/{id}/logs")).await.unwrap().into_data().unwrap();
        d["jobList"].as_array().unwrap().clone()
    }
    async fn detail(&self, id: &str) -> Value {
        self.admin().get(&format!("/api/v1/secrets/{id}")).await.unwrap().into_data().unwrap()
    }
}

#[tokio::test]
async fn schedules_survive_restarts_and_period_changes_never_rotate_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".into(),
        scheduler_interval_ms: 50,
        rotation_max_attempts: 1,
        ..Config::default()
    };
    let mut node = Node { cfg, clock: Arc::new(OffsetClock::default()), server: None, creds: Default::default() };
    node.start().await;
    let admin = node.admin();
    // A function that does nothing: each job it gets fails, which is all this test needs.
    let t = admin
        .post("/api/v1/triggers", &json!({"name": "noop", "type": "exec", "config": {"command": ["true"]}}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let trigger = t["triggerId"].as_str().unwrap();
    let id = admin.create_secret("sched", &json!({"user": "u", "password": "p"}), &["password"]).await.unwrap();
    let d = admin
        .post(
            &format!("/api/v1/secrets/{id}/enable-auto-rotation"),
            &json!({"rotationPeriod": 2, "triggerId": trigger}),
        )
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let t0 = d["updateDate"].as_i64().unwrap();
    assert_eq!(
        d["nextRotationDate"].as_i64().unwrap(),
        t0 + 2 * DAY,
        "enabling plans the first rotation at now + period"
    );

    node.clock.advance(DAY);
    node.settle().await;
    assert!(node.jobs(&id).await.is_empty(), "nothing before it is due");

    // Re-plan from the base (T0 + 1 day): already past, so from now — and no rotation now.
    let d = node
        .admin()
        .put(&format!("/api/v1/secrets/{id}/rotation-period"), &json!({"rotationPeriod": 1}))
        .await
        .unwrap();
    let d = d.into_data().unwrap();
    let now = d["updateDate"].as_i64().unwrap();
    assert_eq!(d["nextRotationDate"].as_i64().unwrap(), now + DAY);
    node.settle().await;
    assert!(node.jobs(&id).await.is_empty(), "changing the period never starts a rotation");
    // Re-plan from the base (T0 + 3 days): still ahead, so that.
    let d = node
        .admin()
        .put(&format!("/api/v1/secrets/{id}/rotation-period"), &json!({"rotationPeriod": 3}))
        .await
        .unwrap();
    assert_eq!(d.into_data().unwrap()["nextRotationDate"].as_i64().unwrap(), t0 + 3 * DAY);

    // Down over the due time; the schedule is in the store, not in memory.
    node.stop().await;
    node.clock.advance(2 * DAY + 60_000);
    node.start().await;
    node.settle().await;
    let jobs = node.jobs(&id).await;
    assert_eq!(jobs.len(), 1, "a rotation that came due while the server was down happens once: {jobs:#?}");
    assert_eq!(jobs[0]["kind"], "SCHEDULED");
    let d = node.detail(&id).await;
    assert_eq!(d["nextRotationDate"].as_i64().unwrap(), t0 + 6 * DAY, "the next slot is planned from this one");

    // Restarting again does not rotate twice.
    node.stop().await;
    node.start().await;
    node.settle().await;
    assert_eq!(node.jobs(&id).await.len(), 1);

    // Disabling stops the schedule.
    node.admin()
        .post(&format!("/api/v1/secrets/{id}/disable-auto-rotation"), &json!({}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    node.clock.advance(10 * DAY);
    node.settle().await;
    assert_eq!(node.jobs(&id).await.len(), 1);
    node.stop().await;
}
