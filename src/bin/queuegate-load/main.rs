//! queuegate-load: drives one load scenario against a running gateway on loopback and prints a
//! summary with a correctness verdict. Bounded by request counts and durations; stops by itself.
//!
//! ```text
//! cargo run --release --bin queuegate-load -- <scenario> [options]
//! scenarios: baseline poll join rush-one rush-many flow sse scale
//! ```
//! See `--help` and BENCHMARKS.md (`scripts/bench.sh` runs them all against a fresh gateway).

mod client;
mod scenarios;
mod stats;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

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

Options (environment fallback in brackets):
  --addr HOST:PORT        gateway address [QG_ADDR, 127.0.0.1:8080]
  --connections N         concurrent connections (default 64)
  --requests N            requests for closed-loop scenarios (default 200000)
  --duration SECS         upper bound on a measurement phase (default 20)
  --users N               users for the scenario (scenario default)
  --admin-token T         [ADMIN_TOKEN]
  --jwt-secret S          [JWT_SECRET] mints user tokens for queue-only scenarios
  --database-url URL      [DATABASE_URL] for database verdicts
  --redis-url URL         [REDIS_URL] for memory figures (scale)
  --gateway-pid PID       for RSS/CPU figures (sse)";

pub struct Options {
    pub addr: SocketAddr,
    pub connections: usize,
    pub requests: usize,
    pub duration: Duration,
    pub users: Option<usize>,
    pub admin_token: String,
    pub jwt_secret: String,
    pub database_url: Option<String>,
    pub redis_url: String,
    pub gateway_pid: Option<u32>,
}

fn parse(args: &[String]) -> Result<(String, Options), String> {
    let mut scenario = None;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut o = Options {
        addr: env("QG_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .map_err(|_| "QG_ADDR must be host:port")?,
        connections: 64,
        requests: 200_000,
        duration: Duration::from_secs(20),
        users: None,
        admin_token: env("ADMIN_TOKEN").unwrap_or_default(),
        jwt_secret: env("JWT_SECRET").unwrap_or_else(|| queuegate::config::DEV_JWT_SECRET.into()),
        database_url: env("DATABASE_URL"),
        redis_url: env("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
        gateway_pid: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--addr" => {
                o.addr = value("--addr")?
                    .parse()
                    .map_err(|_| "--addr must be host:port")?
            }
            "--connections" => {
                o.connections = value("--connections")?
                    .parse()
                    .map_err(|_| "bad --connections")?
            }
            "--requests" => {
                o.requests = value("--requests")?.parse().map_err(|_| "bad --requests")?
            }
            "--duration" => {
                o.duration = Duration::from_secs_f64(
                    value("--duration")?.parse().map_err(|_| "bad --duration")?,
                )
            }
            "--users" => o.users = Some(value("--users")?.parse().map_err(|_| "bad --users")?),
            "--admin-token" => o.admin_token = value("--admin-token")?,
            "--jwt-secret" => o.jwt_secret = value("--jwt-secret")?,
            "--database-url" => o.database_url = Some(value("--database-url")?),
            "--redis-url" => o.redis_url = value("--redis-url")?,
            "--gateway-pid" => {
                o.gateway_pid = Some(
                    value("--gateway-pid")?
                        .parse()
                        .map_err(|_| "bad --gateway-pid")?,
                )
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if scenario.is_none() => scenario = Some(s.to_owned()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if o.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok((scenario.ok_or("which scenario? (see --help)")?, o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let (scenario, options) = match parse(&args) {
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
    match runtime.block_on(scenarios::run(&scenario, &options)) {
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
