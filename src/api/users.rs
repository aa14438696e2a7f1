//! `POST /v1/users`, `GET /v1/users/{id}/balance`, `POST /v1/users/{id}/balance/charge`.

use super::{idempotency_key, stored_response};
use crate::app::App;
use crate::domain::{ChargeAmount, UserId, UserName};
use crate::error::ApiError;
use crate::gate;
use crate::http::response::json;
use crate::http::{Req, Resp};
use hyper::StatusCode;
use serde::Serialize;

pub async fn create(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let body = req.json().await?;
    let name: UserName = body.required("name")?;
    let user_id = crate::wallet::create_user(&app.db, &name).await?;
    #[derive(Serialize)]
    struct Created<'a> {
        user_id: UserId,
        name: &'a str,
        user_token: String,
    }
    Ok(json(
        StatusCode::CREATED,
        &Created {
            user_id,
            name: name.as_str(),
            user_token: app.tokens.mint_user(user_id)?,
        },
    ))
}

pub async fn balance(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let owner = req.param(0, UserId::from_path, "no such user")?;
    gate::user_is(app, req, owner)?;
    Ok(json(
        StatusCode::OK,
        &crate::wallet::balance(&app.db, owner).await?,
    ))
}

pub async fn charge(app: &App, req: &mut Req) -> Result<Resp, ApiError> {
    let owner = req.param(0, UserId::from_path, "no such user")?;
    gate::user_is(app, req, owner)?;
    let key = idempotency_key(req)?;
    let body = req.json().await?;
    let amount: ChargeAmount = body.required("amount")?;
    let (stored, replayed) = crate::wallet::charge(&app.db, owner, amount, key.as_ref()).await?;
    Ok(stored_response(stored, replayed))
}
