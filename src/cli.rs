//! The command line: `serve` (default), `migrate`, `seed`, `check`, each with `--help`.
//! Bad configuration exits non-zero with one line, never a backtrace.

use crate::app::{self, App};
use crate::config::Settings;
use crate::db::Db;
use std::process::ExitCode;

const USAGE: &str = "queuegate — a waiting-room gateway for concert ticket sales

Usage: queuegate [COMMAND] [--help]

Commands:
  serve     Run the HTTP gateway (default)
  migrate   Create the database if missing and apply migrations
  seed      Insert a demo concert with three dates (idempotent)
  check     Verify the database invariants (exit 1 on any violation)

Configuration is read from environment variables and a .env file; see README.md.";

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
            "Usage: queuegate check\n\nChecks in the database that no seat has two live reservations, no balance is negative,\nevery balance equals its ledger, and payments match confirmed reservations."
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
    if !matches!(command, "serve" | "migrate" | "seed" | "check" | "help") {
        eprintln!("queuegate: unknown command `{command}` (try --help)");
        return ExitCode::from(2);
    }
    if let Some(flag) = args
        .iter()
        .find(|a| a.starts_with('-') && *a != "--help" && *a != "-h")
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
    crate::telemetry::init(settings.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = settings.worker_threads {
        builder.worker_threads(n);
    }
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
    for name in crate::check::invariants() {
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
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
