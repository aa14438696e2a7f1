//! Command-line options, with environment fallbacks.

use std::net::SocketAddr;
use std::time::Duration;

pub struct Options {
    pub addr: SocketAddr,
    pub connections: usize,
    pub requests: usize,
    pub duration: Duration,
    /// Requests per second, all connections together, for `baseline`, `poll` and `join`: an
    /// open loop (requests start on a schedule, not when the previous answer arrives).
    pub rate: Option<f64>,
    pub users: Option<usize>,
    pub admin_token: String,
    pub jwt_secret: String,
    pub database_url: Option<String>,
    pub redis_url: String,
    pub gateway_pid: Option<u32>,
    /// The origin behind a gateway-mode instance, reached directly (`proxy`).
    pub origin: Option<SocketAddr>,
    /// A reference reverse proxy in front of the same origin, measured beside the gateway
    /// (`proxy`): what a plain proxy costs on this machine, with no admission to check.
    pub reference: Option<SocketAddr>,
    /// The reference proxy's process (its workers are its children), for its CPU per request.
    pub reference_pid: Option<u32>,
    /// The gateway's `UPSTREAM_CONCERT_ID` (`proxy`).
    pub concert: Option<u64>,
    /// The page fetched (`proxy`).
    pub path: Option<String>,
    /// Where `waiting` writes its queue tokens, one per line.
    pub out: Option<String>,
}

pub fn parse(args: &[String]) -> Result<(String, Options), String> {
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
        rate: None,
        users: None,
        admin_token: env("ADMIN_TOKEN").unwrap_or_default(),
        jwt_secret: env("JWT_SECRET").unwrap_or_else(|| queuegate::config::DEV_JWT_SECRET.into()),
        database_url: env("DATABASE_URL"),
        redis_url: env("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
        gateway_pid: None,
        origin: env("QG_ORIGIN")
            .map(|v| v.parse().map_err(|_| "QG_ORIGIN must be host:port"))
            .transpose()?,
        reference: None,
        reference_pid: None,
        concert: env("QG_CONCERT")
            .map(|v| v.parse().map_err(|_| "QG_CONCERT must be a concert id"))
            .transpose()?,
        path: None,
        out: None,
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
            "--rate" => {
                let r: f64 = value("--rate")?.parse().map_err(|_| "bad --rate")?;
                if !(r.is_finite() && r > 0.0) {
                    return Err("--rate must be a positive number of requests per second".into());
                }
                o.rate = Some(r)
            }
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
            "--origin" => {
                o.origin = Some(
                    value("--origin")?
                        .parse()
                        .map_err(|_| "--origin must be host:port")?,
                )
            }
            "--reference" => {
                o.reference = Some(
                    value("--reference")?
                        .parse()
                        .map_err(|_| "--reference must be host:port")?,
                )
            }
            "--reference-pid" => {
                o.reference_pid = Some(
                    value("--reference-pid")?
                        .parse()
                        .map_err(|_| "bad --reference-pid")?,
                )
            }
            "--concert" => {
                o.concert = Some(value("--concert")?.parse().map_err(|_| "bad --concert")?)
            }
            "--path" => {
                let p = value("--path")?;
                if !p.starts_with('/') {
                    return Err("--path must start with /".into());
                }
                o.path = Some(p);
            }
            "--out" => o.out = Some(value("--out")?),
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

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rate_is_an_open_loop_of_that_many_requests_per_second() {
        let (scenario, o) = parse(&args(&["join", "--rate", "2500.5"])).unwrap();
        assert_eq!(scenario, "join");
        assert_eq!(o.rate, Some(2500.5));
        let (_, o) = parse(&args(&["join"])).unwrap();
        assert_eq!(o.rate, None, "closed loop unless asked");
    }

    #[test]
    fn a_rate_that_is_not_a_positive_number_is_refused() {
        for bad in ["0", "-5", "x", "NaN", "inf", ""] {
            assert!(parse(&args(&["join", "--rate", bad])).is_err(), "{bad}");
        }
        assert!(
            parse(&args(&["join", "--rate"])).is_err(),
            "a missing value"
        );
    }
}
