//! What the API handlers work with: the services, each owning its own dependencies, plus the
//! gate, the rate limiter and the probes. Built once by `app.rs`.

use super::error::ApiError;
use super::gate::Gate;
use crate::booking::catalogue::Catalogue;
use crate::booking::holds::Holds;
use crate::booking::payments::Payments;
use crate::booking::reservations::Reservations;
use crate::domain::UserId;
use crate::gateway::Gateway;
use crate::health::Probes;
use crate::http::Req;
use crate::http::lifecycle::Lifecycle;
use crate::queue::service::Queue;
use crate::ratelimit::{RateLimiter, Scope};
use crate::tokens::TokenKeys;
use crate::wallet::Wallet;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

pub struct Api {
    pub gate: Gate,
    pub tokens: Arc<TokenKeys>,
    pub queue: Arc<Queue>,
    pub catalogue: Arc<Catalogue>,
    pub holds: Holds,
    pub reservations: Reservations,
    pub payments: Payments,
    pub wallet: Wallet,
    pub limits: RateLimiter,
    pub probes: Probes,
    pub metrics: PrometheusHandle,
    pub lifecycle: Arc<Lifecycle>,
    /// Gateway mode (`UPSTREAM_URL` set): the origin behind the line.
    pub gateway: Option<Arc<Gateway>>,
}

impl Api {
    /// Applies the rate limit of `scope` to this user and this request's client address.
    pub fn rate_limit(&self, req: &Req, scope: Scope, user: UserId) -> Result<(), ApiError> {
        let forwarded = req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let address = self.limits.client_address(req.peer.ip(), forwarded);
        Ok(self.limits.check(scope, user, address)?)
    }
}
