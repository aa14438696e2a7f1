//! Reading settings from a key lookup (the environment, or a map in tests): a blank variable
//! means "the default", and a bad value is an error naming the variable.

use super::values::{ConfigError, Rate};

pub(super) struct Env<'a> {
    pub(super) get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The value if set and not blank (a blank variable means "use the default").
    pub(super) fn raw(&self, key: &str) -> Option<String> {
        (self.get)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn int(
        &self,
        key: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.error(key, raw, &format!("expected an integer in {min}..={max}"))),
        }
    }

    /// A per-minute rate; the burst is a sixth of it (ten seconds' worth), at least 5.
    pub(super) fn rate(&self, key: &'static str, default: u64) -> Result<Rate, ConfigError> {
        let per_minute = self.int(key, default, 0, 1_000_000)? as u32;
        Ok(Rate {
            per_minute,
            burst: (per_minute / 6).max(5),
        })
    }

    pub(super) fn addresses(
        &self,
        key: &'static str,
    ) -> Result<Vec<std::net::IpAddr>, ConfigError> {
        let Some(raw) = self.raw(key) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|_| {
                    self.error(key, raw.clone(), "expected comma-separated IP addresses")
                })
            })
            .collect()
    }

    pub(super) fn bool(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(self.error(key, other.into(), "expected true or false")),
        }
    }

    pub(super) fn error(&self, var: &'static str, value: String, reason: &str) -> ConfigError {
        ConfigError {
            var,
            value,
            reason: reason.to_owned(),
        }
    }
}
