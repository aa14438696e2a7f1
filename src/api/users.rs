//! `POST /v1/users`, `GET /v1/users/{id}/balance`, `POST /v1/users/{id}/balance/charge`.

use super::error::{ApiError, ErrorBody};
use super::json::{JsonObject, idempotency_key, stored_response};
use super::state::Api;
use crate::domain::{ChargeAmount, UserId, UserName};
use crate::http::response::json;
use crate::http::{Req, Resp};
use crate::ratelimit::Scope;
use crate::wallet::Balance;
use hyper::StatusCode;
use serde::Serialize;

/// Body of `POST /v1/users`.
#[derive(utoipa::ToSchema)]
pub struct CreateUser {
    pub name: UserName,
}

impl CreateUser {
    fn parse(b: &JsonObject) -> Result<Self, ApiError> {
        Ok(CreateUser {
            name: b.required("name")?,
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserCreated {
    pub user_id: UserId,
    pub name: String,
    /// A `user` token: wallet routes and joining queues.
    pub user_token: String,
}

/// Body of `POST /v1/users/{user_id}/balance/charge`.
#[derive(utoipa::ToSchema)]
pub struct Charge {
    pub amount: ChargeAmount,
}

impl Charge {
    fn parse(b: &JsonObject) -> Result<Self, ApiError> {
        Ok(Charge {
            amount: b.required("amount")?,
        })
    }
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, description = "The user and a user token", body = UserCreated, links(
            ("balance" = (operation_id = "balance", parameters(("user_id" = "$response.body#/user_id")),
                description = "The new user's wallet (send the user_token as bearer)")),
            ("charge" = (operation_id = "charge", parameters(("user_id" = "$response.body#/user_id")),
                description = "Top up the new user's wallet (send the user_token as bearer)")),
        )),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub async fn create(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let body = CreateUser::parse(&JsonObject::read(req).await?)?;
    let user_id = api.wallet.create_user(&body.name).await?;
    Ok(json(
        StatusCode::CREATED,
        &UserCreated {
            user_id,
            name: body.name.as_str().to_owned(),
            user_token: api.tokens.mint_user(user_id),
        },
    ))
}

#[utoipa::path(get, path = "/v1/users/{user_id}/balance", tag = "users",
    params(("user_id" = u64, Path, description = "The user")),
    security(("user_token" = [])),
    responses(
        (status = 200, body = Balance),
        (status = 401, description = "Missing or invalid user token", body = ErrorBody),
        (status = 403, description = "Another user's wallet", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn balance(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let owner = super::routes::param(req, 0, UserId::from_path, "no such user")?;
    api.gate.user_is(req, owner)?;
    Ok(json(StatusCode::OK, &api.wallet.balance(owner).await?))
}

#[utoipa::path(post, path = "/v1/users/{user_id}/balance/charge", tag = "users",
    params(
        ("user_id" = u64, Path, description = "The user"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats return the first result and charge once"),
    ),
    request_body = Charge,
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The new balance (or the first result of this key)", body = Balance),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Amount outside 1..=1000000000, or a reused key", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (see Retry-After)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn charge(api: &Api, req: &mut Req) -> Result<Resp, ApiError> {
    let owner = super::routes::param(req, 0, UserId::from_path, "no such user")?;
    api.gate.user_is(req, owner)?;
    api.rate_limit(req, Scope::Charge, owner)?;
    let key = idempotency_key(req)?;
    let body = Charge::parse(&JsonObject::read(req).await?)?;
    let (stored, replayed) = api.wallet.charge(owner, body.amount, key.as_ref()).await?;
    Ok(stored_response(stored, replayed))
}
