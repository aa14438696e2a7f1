//! Every metric a Grafana dashboard queries is really exported: a short run through the whole
//! journey, then `deploy/check-dashboards.py` against the gateway's own `/metrics` — samples
//! only, so a metric that is merely described does not count.

mod common;

use common::{ADMIN_TOKEN, spawn_shop_gateway, spawn_with};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_exported_after_a_short_run() {
    let app = spawn_with(&[("QUEUE_TICK_MS", "100")]).await;
    let concert = app.create_concert(1, 100).await;
    let user = app.create_user("metrics").await;
    app.charge(&user, 1000).await;
    let joined: Value = app.join_queue(&user, concert.id).await;
    let qt = joined["queue_token"].as_str().unwrap().to_owned();
    // Admission arrives over the event stream (counts SSE events too).
    let events = app
        .http
        .get(app.url("/v1/queue/events"))
        .bearer_auth(&qt)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: admitted"), "{events}");
    let status: Value = app
        .http
        .get(app.url("/v1/queue/status"))
        .bearer_auth(&qt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = status["access_token"].as_str().unwrap().to_owned();
    let hold: Value = app
        .hold(&access, concert.schedules[0], 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.pay(&access, hold["reservation_id"].as_u64().unwrap(), None)
            .await
            .status(),
        StatusCode::CREATED
    );
    // A second user leaves, so leave counters exist.
    let other = app.create_user("leaver").await;
    let j: Value = app.join_queue(&other, concert.id).await;
    app.leave(j["queue_token"].as_str().unwrap()).await;
    let r = app
        .http
        .get(app.url(&format!("/v1/admin/concerts/{}/queue", concert.id)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Gateway mode: a second instance guards /shop with this concert's line and forwards to the
    // first (whose 404 for /shop/… is as good an origin answer as any), so the gateway and
    // upstream metrics have samples.
    let gateway = spawn_shop_gateway(app.base.as_str()).await;
    let line = gateway.create_concert(1, 100).await;
    let visitor = gateway.create_user("visitor").await;
    let pass = gateway.admit(&visitor, line.id).await;
    let r = gateway
        .http
        .get(gateway.url("/shop/page"))
        .bearer_auth(&pass)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "forwarded, answered by the origin"
    );
    // An operator's grant announces the end of the visitor's admission, which the gateway-mode
    // instance hears once its subscription is up (granting again until it has).
    let started = Instant::now();
    while !app
        .metrics_text()
        .await
        .contains("queuegate_admission_end_notices_total")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no admission-end notice heard"
        );
        gateway.admit(&visitor, line.id).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.stop().await;
    // Wait for the revocation after payment to be counted.
    let started = Instant::now();
    let text = loop {
        let text = app.metrics_text().await;
        if text.contains("queuegate_revocations_total") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "revocation never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let samples: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let file =
        std::env::temp_dir().join(format!("qg-metrics-{}.txt", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, samples).unwrap();
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/check-dashboards.py"
        ))
        .arg(&file)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "dashboards query metrics the gateway does not export:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}
