//! queuegate-load: drives one load scenario against a running gateway on loopback and prints a
//! summary with a correctness verdict. Bounded by request counts and durations; stops by itself.
//!
//! ```text
//! cargo run --release --bin queuegate-load -- <scenario> [options]
//! scenarios: baseline poll join rush-one rush-many flow sse scale eta sale-open shards proxy tunnel waiting
//! ```
//! See `--help` and BENCHMARKS.md (`scripts/bench.sh` runs them all against a fresh gateway).

#![forbid(unsafe_code)]

mod client;
mod harness;
mod options;
mod scenarios;
mod stats;

use std::process::ExitCode;

const HELP: &str = "queuegate-load <scenario> [options]

Scenarios:
  baseline    GET /healthz: the machine's HTTP ceiling, for ratios
  poll        waiting users polling /v1/queue/status
  join        distinct users joining one concert
  rush-one    admitted users all holding the SAME seat at once (one 201, the rest 409)
  rush-many   admitted users each holding a random seat (50 holds, one per seat)
  flow        the whole journey: join, admitted, dates, seats, hold, charge, pay
  sse         open event streams; reports the gateway's RSS and CPU
  scale       status latency with 1,000 vs --users waiting; Redis bytes per waiting user
  eta         20,000 fans under a steady admission: how right were their ETAs?
  sale-open   100,000 fans join in the minute before a sale opens (--duration = the lead)
  shards      30 concerts × 10,000 fans on a Redis Cluster: per-shard keys and Redis CPU
  waiting     --users (default 1,000) join a paused line; their queue tokens go to --out, one
              per line, for an outside client (scripts/cpu-split.sh wrk-poll drives wrk with them)
  proxy       gateway mode: a static page straight from --origin vs through the gateway
              (--addr, running with UPSTREAM_CONCERT_ID=--concert), admitted visitors
  tunnel      gateway mode's WebSockets: this tool is the echo origin on --origin (the
              gateway's UPSTREAM_URL); memory per open tunnel, round trips through the
              gateway vs straight to the origin

Options (environment fallback in brackets):
  --addr HOST:PORT        gateway address [QG_ADDR, 127.0.0.1:8080]
  --connections N         concurrent connections (default 64)
  --requests N            requests for closed-loop scenarios (default 200000)
  --duration SECS         upper bound on a measurement phase (default 20)
  --rate N                baseline, poll, join: an open loop at N requests/s over all
                          connections (each starts on schedule; its latency counts from
                          then, so a gateway that falls behind shows it); default closed loop
  --users N               users for the scenario (scenario default)
  --admin-token T         [ADMIN_TOKEN]
  --jwt-secret S          [JWT_SECRET] mints user tokens for queue-only scenarios
  --database-url URL      [DATABASE_URL] for database verdicts
  --redis-url URL         [REDIS_URL] for memory figures (scale)
  --gateway-pid PID       for RSS/CPU figures (sse)
  --origin HOST:PORT      the origin, reached directly (proxy), or run here (tunnel) [QG_ORIGIN]
  --reference HOST:PORT   a plain reverse proxy in front of the same origin, measured
                          beside the gateway for comparison (proxy; not in the verdict)
  --reference-pid PID     its process (workers as its children), for its CPU per request
  --concert ID            the gateway's UPSTREAM_CONCERT_ID (proxy, tunnel) [QG_CONCERT]
  --path PATH             the page fetched (proxy; default /shop/index.html), the socket's
                          path (tunnel; default /live)
  --out FILE              where waiting writes its queue tokens";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let (scenario, options) = match options::parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("queuegate-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("queuegate-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&scenario, &options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("VERDICT: FAIL");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("queuegate-load: {scenario}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(name: &str, o: &options::Options) -> Result<bool, client::Error> {
    use scenarios::*;
    match name {
        "baseline" => throughput::baseline(o).await,
        "poll" => throughput::poll(o).await,
        "waiting" => throughput::waiting(o).await,
        "join" => throughput::join(o).await,
        "rush-one" => rush::rush(o, true).await,
        "rush-many" => rush::rush(o, false).await,
        "flow" => flow::flow(o).await,
        "sse" => sse::sse(o).await,
        "scale" => scale::scale(o).await,
        "eta" => eta::eta(o).await,
        "sale-open" => sale_open::sale_open(o).await,
        "shards" => shards::shards(o).await,
        "proxy" => proxy::proxy(o).await,
        "tunnel" => tunnel::tunnel(o).await,
        other => Err(format!("unknown scenario {other} (see --help)").into()),
    }
}
