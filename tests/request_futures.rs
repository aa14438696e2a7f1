//! What every request allocates for its handler stays small.
//!
//! The handler's future is allocated once per request. Before each route's future was boxed
//! on its own, every request — `/healthz` included — allocated and copied the largest route's
//! future (8,480 bytes, a payment's), and a poll or a join carried a Redis call's state inline
//! even when it only waited for another request's call: ~20 % of the gateway's CPU per poll
//! and ~28 % per join (BENCHMARKS.md). These bounds fail if a route's state creeps back in.

mod common;

use hyper::Method;
use queuegate::http::Req;
use queuegate::http::handler::Handler;
use std::mem::size_of_val;

fn request(method: Method, path: &str) -> Req {
    let (parts, ()) = hyper::Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap()
        .into_parts();
    Req::new(parts, None, "127.0.0.1:9".parse().unwrap(), "test".into())
}

#[tokio::test]
async fn the_futures_a_request_allocates_stay_small() {
    let app = common::spawn_app().await;
    let api = &*app.app.api;

    let mut poll = request(Method::GET, "/v1/queue/status");
    let serve = api.serve(&mut poll);
    let whole = size_of_val(&serve);
    drop(serve);
    assert!(whole <= 512, "the handler's future is {whole} bytes");

    let status = queuegate::api::queue::status(api, &mut poll);
    let status_bytes = size_of_val(&status);
    drop(status);
    assert!(
        status_bytes <= 1024,
        "a poll's future is {status_bytes} bytes"
    );

    let mut join = request(Method::POST, "/v1/queue");
    let joining = queuegate::api::queue::join(api, &mut join);
    let join_bytes = size_of_val(&joining);
    drop(joining);
    assert!(join_bytes <= 1024, "a join's future is {join_bytes} bytes");
}
