//! Latency and outcome bookkeeping, and the one-screen summary every scenario prints.

use hyper::StatusCode;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default)]
pub struct Recorder {
    pub latencies_us: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    pub codes: BTreeMap<String, u64>,
    pub transport_errors: u64,
}

impl Recorder {
    pub fn record(&mut self, elapsed: Duration, status: StatusCode, body: &[u8]) {
        self.latencies_us
            .push(elapsed.as_micros().min(u128::from(u32::MAX)) as u32);
        *self.statuses.entry(status.as_u16()).or_default() += 1;
        if !status.is_success()
            && let Some(code) = super::client::error_code(body)
        {
            *self.codes.entry(code).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.codes {
            *self.codes.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
    }

    pub fn count(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn status(&self, s: u16) -> u64 {
        self.statuses.get(&s).copied().unwrap_or(0)
    }

    pub fn server_errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn summary(&mut self, name: &str, elapsed: Duration) -> Summary {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.latencies_us.is_empty() {
                return 0.0;
            }
            let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
            f64::from(self.latencies_us[i]) / 1000.0
        };
        Summary {
            scenario: name.to_owned(),
            requests: self.count(),
            elapsed_s: elapsed.as_secs_f64(),
            throughput: self.count() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
            statuses: self.statuses.clone(),
            codes: self.codes.clone(),
            transport_errors: self.transport_errors,
        }
    }
}

pub struct Summary {
    pub scenario: String,
    pub requests: u64,
    pub elapsed_s: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub statuses: BTreeMap<u16, u64>,
    pub codes: BTreeMap<String, u64>,
    pub transport_errors: u64,
}

impl Summary {
    pub fn print(&self) {
        println!("== {} ==", self.scenario);
        println!(
            "requests {}  in {:.2} s  = {:.0} req/s",
            self.requests, self.elapsed_s, self.throughput
        );
        println!(
            "latency ms  p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        println!("status      {}", statuses.join("  "));
        if !self.codes.is_empty() {
            let codes: Vec<String> = self.codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
            println!("error codes {}", codes.join("  "));
        }
        if self.transport_errors > 0 {
            println!("transport errors {}", self.transport_errors);
        }
    }
}
