//! Who may call what: the checks in front of every protected route.
//!
//! The booking gate is two questions. *Is the token genuine?* — a signature check, no I/O.
//! *Is the admission it names still live?* — one read-only script on the queue store, because
//! paying, leaving and expiry all end an admission there, and a token must stop working at once.

use crate::app::App;
use crate::domain::{ConcertId, UserId};
use crate::error::ApiError;
use crate::http::Req;
use crate::tokens::{AccessToken, UserToken};

/// A user token, for wallet and queue-joining routes.
pub fn user(app: &App, req: &Req) -> Result<UserToken, ApiError> {
    app.tokens.verify_user(req.require_bearer()?)
}

/// A user token that must belong to `owner` (another user's wallet: 403).
pub fn user_is(app: &App, req: &Req, owner: UserId) -> Result<UserToken, ApiError> {
    let t = user(app, req)?;
    if t.user_id != owner {
        return Err(ApiError::Forbidden("this is another user's wallet"));
    }
    Ok(t)
}

/// The booking gate: a genuine access token whose admission is live right now.
pub async fn access(app: &App, req: &Req) -> Result<AccessToken, ApiError> {
    let t = app.tokens.verify_access(req.require_bearer()?)?;
    if app.queue.check_access(&t).await? {
        Ok(t)
    } else {
        Err(ApiError::TokenRevoked)
    }
}

/// An access token is good for one concert only.
pub fn same_concert(t: &AccessToken, concert: ConcertId) -> Result<(), ApiError> {
    if t.concert_id == concert {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this access token is for another concert",
        ))
    }
}

/// The admin bearer token. With `ADMIN_TOKEN` unset the admin API is off.
pub fn admin(app: &App, req: &Req) -> Result<(), ApiError> {
    let Some(expected) = app.settings.admin_token.as_deref() else {
        return Err(ApiError::Forbidden(
            "the admin API is disabled (ADMIN_TOKEN is not set)",
        ));
    };
    let given = req.require_bearer()?;
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid admin token"))
    }
}

/// Compares without an early exit, so response timing does not leak how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-123", b"secret-token-124"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
