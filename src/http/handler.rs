//! What the server runs for every request: something that routes it and answers it.

use super::request::Req;
use super::response::Resp;
use std::future::Future;

/// An answered request, with the route label metrics and logs use for it (a path template,
/// so label cardinality stays bounded).
pub struct Served {
    pub route: &'static str,
    pub resp: Resp,
    /// No access-log line (health checks and scrapes would drown the log).
    pub quiet: bool,
}

pub trait Handler: Send + Sync + 'static {
    /// Routes and answers one request. Errors are answers too: the handler shapes them.
    fn serve(&self, req: &mut Req) -> impl Future<Output = Served> + Send;

    /// The answer when serving the request panicked (a bug, but one request's bug must not
    /// take the connection down silently).
    fn panicked(&self, request_id: &str) -> Resp;
}
