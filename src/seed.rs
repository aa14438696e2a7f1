//! Demo data (`queuegate seed`): one concert with three dates, so a fresh install has
//! something to queue for. Running it again reuses the existing demo concert.

use crate::booking::catalogue::{self, CatalogueError};
use crate::db::Db;
use crate::domain::{ConcertId, ConcertName, FromJson, Price, StartsAt};
use crate::store_error::StoreError;

pub const DEMO_CONCERT: &str = "queuegate demo night";

pub async fn run(db: &Db) -> Result<ConcertId, CatalogueError> {
    let existing: Option<u64> =
        sqlx::query_scalar("SELECT id FROM concerts WHERE name = ? ORDER BY id LIMIT 1")
            .bind(DEMO_CONCERT)
            .fetch_optional(db.primary())
            .await?;
    if let Some(id) = existing.and_then(ConcertId::new) {
        return Ok(id);
    }
    let name = ConcertName::from_json(&DEMO_CONCERT.into()).map_err(StoreError::bug)?;
    let price = Price::from_json(&50_000.into()).map_err(StoreError::bug)?;
    let today = chrono::Utc::now().date_naive();
    let dates = [7, 14, 21].map(|days| {
        let at = (today + chrono::Days::new(days))
            .and_hms_opt(19, 0, 0)
            .unwrap_or_default()
            .and_utc();
        (StartsAt(at), price)
    });
    Ok(catalogue::create(db, &name, &dates).await?.concert_id)
}
