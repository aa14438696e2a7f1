//! The command line: `serve` (default), `migrate`, `seed`, `check`, `events`, each with
//! `--help`. Bad configuration exits non-zero with one line, never a backtrace.

use crate::app::{self, App};
use crate::config::Settings;
use crate::db::Db;
use crate::outbox::stream::EventStream;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "queuegate — a waiting-room gateway for concert ticket sales

Usage: queuegate [COMMAND] [--help]

Commands:
  serve     Run the HTTP gateway (default)
  migrate   Create the database if missing and apply migrations
  seed      Insert a demo concert with three dates (idempotent)
  check     Verify the database invariants and the booking events stream (exit 1 on any
            violation)
  events    Print the booking events stream as JSON lines ([--from ID] [--follow])

Configuration is read from environment variables and a .env file; see README.md.";

/// Worker threads when `WORKER_THREADS` is not set: one less than the cores (at least one).
///
/// Why not one per core (tokio's default): a poll's answer is made by a batch call that one
/// task sends and whose ~30 waiters it then wakes, and tokio hands half of them to a second
/// worker, parked or busy elsewhere — a futex wake, a context switch and caches filled on
/// another core, for every batch. On a 2-core host that the gateway shares with Redis and the
/// kernel's network work, one worker made a poll 10–25 % cheaper in CPU at the same or higher
/// poll throughput (`scripts/cpu-split.sh`, BENCHMARKS.md), at 5 % fewer joins per second and
/// 15 % fewer `/healthz` per second. On a bigger host the core left over serves the kernel's
/// network stack. A host that runs nothing but the gateway can set the core count.
fn default_workers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

fn command_help(cmd: &str) -> &'static str {
    match cmd {
        "serve" => {
            "Usage: queuegate serve\n\nRuns the gateway on LISTEN_ADDR. With AUTO_MIGRATE=true (default) it creates and\nmigrates the database first. Stops gracefully on SIGTERM/SIGINT."
        }
        "migrate" => {
            "Usage: queuegate migrate\n\nCreates the database named in DATABASE_URL if missing and applies all migrations."
        }
        "seed" => {
            "Usage: queuegate seed\n\nCreates the demo concert (three dates, 50 seats each) unless it exists; prints its id."
        }
        "check" => {
            "Usage: queuegate check\n\nChecks in the database that no seat has two live reservations, no balance is negative,\nevery balance equals its ledger, and payments match confirmed reservations.\n\nWhen the queue Redis (REDIS_URL) is reachable it also checks the booking events stream\n<REDIS_KEY_PREFIX>:events: one reservation.held per reservation, one payment.completed\nper payment, one wallet.charged per charge, each event once, none for a row that does not\nexist, each reservation's events in the order its status implies. Events still waiting in\nthe outbox count as coming. When Redis is not reachable this part is skipped and says so."
        }
        "events" => {
            "Usage: queuegate events [--from ID] [--follow]\n\nPrints the booking events stream <REDIS_KEY_PREFIX>:events on REDIS_URL, one JSON object\nper line: {\"id\": stream id, \"event_id\", \"type\", \"data\": {...}}.\n\n  --from ID   start after this stream id (exclusive); 0 = from the start (default),\n              $ = only events added from now on\n  --follow    keep waiting for new events (XREAD BLOCK) until interrupted\n\nTo resume, pass the last printed id as --from."
        }
        _ => USAGE,
    }
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wants_help = args.iter().any(|a| a == "--help" || a == "-h");
    let given = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    let command = given.unwrap_or("serve");
    if !matches!(
        command,
        "serve" | "migrate" | "seed" | "check" | "events" | "help"
    ) {
        eprintln!("queuegate: unknown command `{command}` (try --help)");
        return ExitCode::from(2);
    }
    let events_options = if command == "events" && !wants_help {
        // Everything but the command word itself.
        let position = args.iter().position(|a| a == "events").unwrap_or(0);
        let rest: Vec<String> = args
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != position)
            .map(|(_, a)| a.clone())
            .collect();
        match EventsOptions::parse(&rest) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("queuegate: {e} (try events --help)");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    if let Some(flag) = args
        .iter()
        .find(|a| a.starts_with('-') && *a != "--help" && *a != "-h" && events_options.is_none())
    {
        eprintln!("queuegate: unknown option `{flag}` (try --help)");
        return ExitCode::from(2);
    }
    if wants_help || command == "help" {
        println!(
            "{}",
            command_help(given.filter(|_| wants_help).unwrap_or(""))
        );
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("queuegate: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = crate::telemetry::init(settings.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(settings.worker_threads.unwrap_or_else(|| {
        default_workers(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }));
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("queuegate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            "migrate" => migrate(&settings).await,
            "seed" => seed(&settings).await,
            "check" => check(&settings).await,
            "events" => match &events_options {
                Some(o) => events(&settings, o).await,
                None => Err("events: no options".into()),
            },
            _ => serve(settings).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("queuegate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<ExitCode, String> {
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(e) if e.is_configuration() => {
            eprintln!("queuegate: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.to_string()),
    };
    let listener = app.bind().await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "queuegate listening");
    app::run_until(app, listener, crate::http::server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("queuegate stopped");
    Ok(ExitCode::SUCCESS)
}

async fn connect(settings: &Settings) -> Result<Db, String> {
    Db::ensure_database(&settings.database_url)
        .await
        .map_err(|e| e.to_string())?;
    Db::connect_lazy(&settings.database_url, None, 2).map_err(|e| e.to_string())
}

async fn migrate(settings: &Settings) -> Result<ExitCode, String> {
    let db = connect(settings).await?;
    db.migrate().await.map_err(|e| e.to_string())?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

async fn seed(settings: &Settings) -> Result<ExitCode, String> {
    let db = connect(settings).await?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let concert = crate::seed::run(&db).await.map_err(|e| e.to_string())?;
    println!("demo concert {concert}");
    Ok(ExitCode::SUCCESS)
}

async fn check(settings: &Settings) -> Result<ExitCode, String> {
    let db = connect(settings).await?;
    let violations = crate::check::run(db.primary())
        .await
        .map_err(|e| e.to_string())?;
    print_invariants(crate::check::invariants(), &violations);
    let stream_clean = check_stream(settings, &db).await?;
    Ok(if violations.is_empty() && stream_clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The events stream part of `check`; true unless it found violations. An unreachable queue
/// Redis is said plainly and does not fail the database checks.
async fn check_stream(settings: &Settings, db: &Db) -> Result<bool, String> {
    let Some(pool) = connect_redis(settings).await? else {
        println!(
            "skip  events stream: the queue Redis (REDIS_URL) is not reachable; the stream was NOT checked"
        );
        return Ok(true);
    };
    let stream = EventStream::new(pool, &settings.redis_key_prefix);
    let report = crate::check::stream(db.primary(), &stream)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "info  events stream {}: {} entries, {} events still in the outbox{}",
        stream.key(),
        report.entries,
        report.pending,
        if report.trimmed {
            " (trimmed by EVENTS_MAXLEN: older rows checked for duplicates only)"
        } else {
            ""
        }
    );
    print_invariants(crate::check::stream_invariants(), &report.violations);
    Ok(report.violations.is_empty())
}

/// One line per invariant: `ok`, or `FAIL` with up to 20 of its violations.
fn print_invariants<'a>(
    names: impl Iterator<Item = &'a str>,
    violations: &[crate::check::Violation],
) {
    for name in names {
        let broken: Vec<_> = violations.iter().filter(|v| v.invariant == name).collect();
        if broken.is_empty() {
            println!("ok    {name}");
        } else {
            println!("FAIL  {name}");
            for v in broken.iter().take(20) {
                println!("      {}", v.detail);
            }
        }
    }
}

/// A one-connection pool to the queue Redis, or `None` if it does not answer within 2 s.
async fn connect_redis(settings: &Settings) -> Result<Option<fred::clients::Pool>, String> {
    let redis = crate::redis::watch::WatchedPool::connect(&settings.redis_url, 1)
        .map_err(|e| e.to_string())?;
    if redis.wait_connected(Duration::from_secs(2)).await {
        Ok(Some(redis.pool().clone()))
    } else {
        Ok(None)
    }
}

/// `queuegate events`'s options.
#[derive(Debug, PartialEq, Eq)]
struct EventsOptions {
    from: String,
    follow: bool,
}

impl EventsOptions {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = EventsOptions {
            from: "0".into(),
            follow: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--follow" | "-f" => o.follow = true,
                "--from" => {
                    o.from = it.next().ok_or("--from needs a stream id")?.clone();
                }
                s if s.starts_with("--from=") => o.from = s["--from=".len()..].to_owned(),
                s => return Err(format!("unexpected argument `{s}`")),
            }
        }
        if !crate::outbox::stream::valid_start(&o.from) {
            return Err(format!(
                "--from `{}`: expected a stream id (like 1700000000000-0), 0 or $",
                o.from
            ));
        }
        Ok(o)
    }
}

/// Prints the stream as JSON lines from `--from`; with `--follow`, then waits for more until
/// SIGINT/SIGTERM (or until stdout is closed, e.g. piped into `head`).
async fn events(settings: &Settings, o: &EventsOptions) -> Result<ExitCode, String> {
    let Some(pool) = connect_redis(settings).await? else {
        return Err("the queue Redis (REDIS_URL) is not reachable".into());
    };
    let stream = EventStream::new(pool, &settings.redis_key_prefix);
    let mut out = std::io::stdout().lock();
    let mut print = |entries: &[crate::outbox::stream::Entry]| -> bool {
        for e in entries {
            let line = serde_json::to_string(e).unwrap_or_default();
            if writeln!(out, "{line}").is_err() {
                return false;
            }
        }
        out.flush().is_ok()
    };
    let mut from = o.from.clone();
    if from != "$" {
        loop {
            let page = stream.after(&from, 1000).await.map_err(|e| e.to_string())?;
            if !print(&page) {
                return Ok(ExitCode::SUCCESS);
            }
            match page.last() {
                Some(last) if page.len() == 1000 => from = last.id.clone(),
                Some(last) => {
                    from = last.id.clone();
                    break;
                }
                None => break,
            }
        }
    }
    if !o.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut stop = std::pin::pin!(crate::http::server::shutdown_signal());
    loop {
        let next = tokio::select! {
            r = stream.wait_after(&from, Duration::from_secs(5), 1000) => r,
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
        };
        match next {
            Ok(entries) => {
                if !print(&entries) {
                    return Ok(ExitCode::SUCCESS);
                }
                if let Some(last) = entries.last() {
                    from = last.id.clone();
                }
            }
            // Keep following through a Redis restart; say so once per failure.
            Err(e) => {
                eprintln!("queuegate: events: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<EventsOptions, String> {
        EventsOptions::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn events_options() {
        assert_eq!(
            parse(&[]).unwrap(),
            EventsOptions {
                from: "0".into(),
                follow: false
            }
        );
        let o = parse(&["--from", "1700000000000-3", "--follow"]).unwrap();
        assert_eq!((o.from.as_str(), o.follow), ("1700000000000-3", true));
        assert_eq!(parse(&["--from=$", "-f"]).unwrap().from, "$");
        assert!(parse(&["--from"]).is_err());
        assert!(parse(&["--from", "yesterday"]).is_err());
        assert!(parse(&["--tail"]).is_err());
    }

    #[test]
    fn one_core_is_left_over_but_one_worker_always_runs() {
        assert_eq!(
            [0, 1, 2, 3, 8, 64].map(default_workers),
            [1, 1, 1, 2, 7, 63]
        );
    }
}
