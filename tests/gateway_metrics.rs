//! A gateway-mode instance that is the first thing its process builds still records its
//! forwards. Its own test binary on purpose: in a binary with other tests, whichever app is built
//! first installs the metrics recorder for all of them, which once hid a gateway whose metric
//! handles were made before any recorder existed (and so recorded nothing, in production too).

mod common;
// (Only the echo origin is used here; the module's other origins serve tests/gateway.rs.)
#[path = "support/origins.rs"]
#[allow(dead_code)]
mod origins;

use common::{metric_sum, spawn_shop_gateway};
use origins::EchoOrigin;
use reqwest::StatusCode;

#[tokio::test]
async fn the_first_app_of_a_process_in_gateway_mode_records_its_forwards() {
    let origin = EchoOrigin::start().await;
    let app = spawn_shop_gateway(origin.base().as_str()).await;
    let concert = app.create_concert(1, 100).await;
    let visitor = app.create_user("visitor").await;
    let access = app.admit(&visitor, concert.id).await;
    for _ in 0..3 {
        let r = app.get_bearer("/shop/echo", &access).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let text = app.metrics_text().await;
    assert_eq!(
        metric_sum(&text, "queuegate_upstream_duration_seconds_count", None),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric_sum(
            &text,
            "queuegate_gateway_requests_total",
            Some(("decision", "forwarded"))
        ),
        3.0,
        "{text}"
    );
    app.stop().await;
}
