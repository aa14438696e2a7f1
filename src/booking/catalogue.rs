//! The catalogue: concerts, their dates (schedules), seat maps, and the public list on sale.
//!
//! Two facts never change once written — a concert exists, a schedule belongs to a concert —
//! so they are cached forever per instance: the booking gate needs "which concert is this
//! schedule?" on every seat request, and joining a queue needs "does this concert exist?".

use crate::db::Db;
use crate::domain::{ConcertId, ConcertName, LineId, Price, ScheduleId, SeatNo, StartsAt, rfc3339};
use crate::queue::model::SettingsPatch;
use crate::store_error::StoreError;
use chrono::NaiveDateTime;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("no such concert")]
    NoSuchConcert,
    #[error("no such schedule")]
    NoSuchSchedule,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_backed_error!(CatalogueError);

pub struct Catalogue {
    db: Db,
    /// Schedule → concert; never changes once created.
    schedules: RwLock<HashMap<ScheduleId, ConcertId>>,
    /// Concerts known to exist, with their line; concerts are never deleted and a concert's
    /// line id never changes.
    lines: RwLock<HashMap<ConcertId, LineId>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewSchedule {
    pub schedule_id: ScheduleId,
    pub starts_at: String,
    pub price: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewConcert {
    pub concert_id: ConcertId,
    pub name: String,
    /// When the sale opens (RFC 3339), or null when it is open from creation.
    pub sale_starts_at: Option<String>,
    pub schedules: Vec<NewSchedule>,
}

impl Catalogue {
    pub fn new(db: Db) -> Self {
        Catalogue {
            db,
            schedules: Default::default(),
            lines: Default::default(),
        }
    }

    /// Creates a concert. `before_commit` runs inside the transaction, once the line's id is
    /// known (the API writes the line's settings there): if it fails nothing is created, and
    /// if the commit fails afterwards what it wrote belongs to a line id nobody will use.
    pub async fn create<F, Fut>(
        &self,
        name: &ConcertName,
        schedules: &[(StartsAt, Price)],
        sale_starts_at: Option<StartsAt>,
        before_commit: F,
    ) -> Result<NewConcert, CatalogueError>
    where
        F: FnOnce(LineId) -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let (created, line) =
            create_with_line(&self.db, name, schedules, sale_starts_at, before_commit).await?;
        if let Ok(mut known) = self.lines.write() {
            known.insert(line.concert, line);
        }
        Ok(created)
    }

    /// Records a concert's sale start for listings (the queue store holds the live copy).
    pub async fn set_sale_start(
        &self,
        concert: ConcertId,
        starts_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), CatalogueError> {
        sqlx::query("UPDATE concerts SET sale_starts_at = ? WHERE id = ?")
            .bind(starts_at.map(|t| t.naive_utc()))
            .bind(concert.get())
            .execute(self.db.primary())
            .await?;
        Ok(())
    }

    /// Records the admission settings an operator set (`None` leaves a setting as recorded;
    /// the sale start is `set_sale_start`'s): what the queue store gets back if it loses its
    /// copy.
    pub async fn record_queue_settings(
        &self,
        concert: ConcertId,
        s: &SettingsPatch,
    ) -> Result<(), CatalogueError> {
        sqlx::query(
            "UPDATE concerts SET admit_per_tick = COALESCE(?, admit_per_tick), \
             tick_ms = COALESCE(?, tick_ms), max_active = COALESCE(?, max_active), \
             access_ttl_secs = COALESCE(?, access_ttl_secs) WHERE id = ?",
        )
        .bind(s.admit_per_tick)
        .bind(s.tick_ms)
        .bind(s.max_active)
        .bind(s.access_ttl_secs)
        .bind(concert.get())
        .execute(self.db.primary())
        .await?;
        Ok(())
    }

    /// The concert's line settings as recorded here — its sale start (always there:
    /// `Some(None)` when it has none) and the operator's overrides (`None` = the instance
    /// default): what the queue store gets back when it lost its copy. Read from the primary,
    /// never cached, so what an operator just changed is what is restored.
    pub async fn recorded_settings(
        &self,
        concert: ConcertId,
    ) -> Result<SettingsPatch, CatalogueError> {
        type Row = (
            Option<NaiveDateTime>,
            Option<u32>,
            Option<u32>,
            Option<u32>,
            Option<u32>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT sale_starts_at, admit_per_tick, tick_ms, max_active, access_ttl_secs \
             FROM concerts WHERE id = ?",
        )
        .bind(concert.get())
        .fetch_optional(self.db.primary())
        .await?;
        let Some((start, admit_per_tick, tick_ms, max_active, access_ttl_secs)) = row else {
            return Err(CatalogueError::NoSuchConcert);
        };
        Ok(SettingsPatch {
            admit_per_tick: admit_per_tick.map(u64::from),
            tick_ms: tick_ms.map(u64::from),
            max_active: max_active.map(u64::from),
            access_ttl_secs: access_ttl_secs.map(u64::from),
            sale_start_ms: Some(
                start.and_then(|t| u64::try_from(t.and_utc().timestamp_millis()).ok()),
            ),
        })
    }

    /// The concert's waiting line, or `None` when there is no such concert. Cached once seen
    /// (the primary answers the first time).
    pub async fn line(&self, concert: ConcertId) -> Result<Option<LineId>, CatalogueError> {
        if let Some(line) = self
            .lines
            .read()
            .ok()
            .and_then(|k| k.get(&concert).copied())
        {
            return Ok(Some(line));
        }
        // Boxed: the query's future is kilobytes, and every join would carry it for a miss
        // that happens once per concert and instance.
        Box::pin(self.load_line(concert)).await
    }

    async fn load_line(&self, concert: ConcertId) -> Result<Option<LineId>, CatalogueError> {
        let queue_id: Option<u64> =
            sqlx::query_scalar("SELECT queue_id FROM concerts WHERE id = ?")
                .bind(concert.get())
                .fetch_optional(self.db.primary())
                .await?;
        let Some(queue_id) = queue_id else {
            return Ok(None);
        };
        let line = LineId { concert, queue_id };
        if let Ok(mut k) = self.lines.write() {
            k.insert(concert, line);
        }
        Ok(Some(line))
    }

    /// The concert a schedule belongs to.
    pub async fn concert_of(&self, schedule: ScheduleId) -> Result<ConcertId, CatalogueError> {
        if let Some(c) = self
            .schedules
            .read()
            .ok()
            .and_then(|m| m.get(&schedule).copied())
        {
            return Ok(c);
        }
        // The primary: a schedule created a moment ago may not be on the replica yet.
        let concert: Option<u64> =
            sqlx::query_scalar("SELECT concert_id FROM schedules WHERE id = ?")
                .bind(schedule.get())
                .fetch_optional(self.db.primary())
                .await?;
        let concert = concert
            .and_then(ConcertId::new)
            .ok_or(CatalogueError::NoSuchSchedule)?;
        if let Ok(mut m) = self.schedules.write() {
            m.insert(schedule, concert);
        }
        Ok(concert)
    }

    pub async fn schedules(&self, concert: ConcertId) -> Result<Schedules, CatalogueError> {
        schedules(&self.db, concert).await
    }

    pub async fn seats(&self, schedule: ScheduleId) -> Result<Seats, CatalogueError> {
        seats(&self.db, schedule).await
    }

    pub async fn on_sale(&self) -> Result<OnSale, CatalogueError> {
        on_sale(&self.db).await
    }
}

/// Creates a concert with its dates; every date gets seats 1..=50 at its price. One
/// transaction: a concert is never visible half-made.
pub async fn create(
    db: &Db,
    name: &ConcertName,
    schedules: &[(StartsAt, Price)],
) -> Result<NewConcert, CatalogueError> {
    Ok(
        create_with_line(db, name, schedules, None, |_| async { Ok(()) })
            .await?
            .0,
    )
}

async fn create_with_line<F, Fut>(
    db: &Db,
    name: &ConcertName,
    schedules: &[(StartsAt, Price)],
    sale_starts_at: Option<StartsAt>,
    before_commit: F,
) -> Result<(NewConcert, LineId), CatalogueError>
where
    F: FnOnce(LineId) -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut tx = db.primary().begin().await?;
    let concert_id = sqlx::query("INSERT INTO concerts (name, sale_starts_at) VALUES (?, ?)")
        .bind(name.as_str())
        .bind(sale_starts_at.map(|t| t.0.naive_utc()))
        .execute(&mut *tx)
        .await?
        .last_insert_id();
    let concert_id =
        ConcertId::new(concert_id).ok_or_else(|| StoreError::bug("id out of range"))?;
    // The line's id spreads lines over a cluster's shards (see `striped_queue_id`).
    let queue_id = crate::queue::keys::striped_queue_id(concert_id);
    sqlx::query("UPDATE concerts SET queue_id = ? WHERE id = ?")
        .bind(queue_id)
        .bind(concert_id.get())
        .execute(&mut *tx)
        .await?;
    let mut created = Vec::with_capacity(schedules.len());
    for (starts_at, price) in schedules {
        let schedule_id =
            sqlx::query("INSERT INTO schedules (concert_id, starts_at, price) VALUES (?, ?, ?)")
                .bind(concert_id.get())
                .bind(starts_at.0.naive_utc())
                .bind(price.get())
                .execute(&mut *tx)
                .await?
                .last_insert_id();
        // A recursive CTE rather than MariaDB's seq_1_to_50 so MySQL 8 works too.
        sqlx::query(
            "INSERT INTO seats (schedule_id, seat_no, price)
             WITH RECURSIVE n (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50)
             SELECT ?, x, ? FROM n",
        )
        .bind(schedule_id)
        .bind(price.get())
        .execute(&mut *tx)
        .await?;
        created.push(NewSchedule {
            schedule_id: ScheduleId::new(schedule_id)
                .ok_or_else(|| StoreError::bug("id out of range"))?,
            starts_at: rfc3339(starts_at.0),
            price: price.get(),
        });
    }
    let line = LineId {
        concert: concert_id,
        queue_id,
    };
    before_commit(line).await?;
    tx.commit().await?;
    Ok((
        NewConcert {
            concert_id,
            name: name.as_str().to_owned(),
            sale_starts_at: sale_starts_at.map(|t| rfc3339(t.0)),
            schedules: created,
        },
        line,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub schedule_id: ScheduleId,
    pub starts_at: String,
    pub total_seats: i64,
    pub available_seats: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Schedules {
    pub concert_id: ConcertId,
    pub name: String,
    pub schedules: Vec<ScheduleView>,
}

/// The concert's dates still open for booking (not yet started), with live availability.
/// Reads the replica when one is configured.
async fn schedules(db: &Db, concert: ConcertId) -> Result<Schedules, CatalogueError> {
    let pool = db.reader();
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM concerts WHERE id = ?")
        .bind(concert.get())
        .fetch_optional(&pool.pool)
        .await?;
    let name = name.ok_or(CatalogueError::NoSuchConcert)?;
    let rows: Vec<(u64, NaiveDateTime, i64, i64)> = sqlx::query_as(
        "SELECT s.id, s.starts_at,
                (SELECT COUNT(*) FROM seats st WHERE st.schedule_id = s.id),
                (SELECT COUNT(*) FROM reservations r
                  WHERE r.schedule_id = s.id AND r.live_seat_no IS NOT NULL
                    AND (r.status = 'confirmed' OR r.expires_at > NOW(6)))
           FROM schedules s
          WHERE s.concert_id = ? AND s.starts_at > NOW(6)
          ORDER BY s.starts_at, s.id",
    )
    .bind(concert.get())
    .fetch_all(&pool.pool)
    .await?;
    tracing::debug!(pool = pool.name, rows = rows.len(), "listed schedules");
    let schedules = rows
        .into_iter()
        .filter_map(|(id, starts_at, total, taken)| {
            Some(ScheduleView {
                schedule_id: ScheduleId::new(id)?,
                starts_at: rfc3339(starts_at.and_utc()),
                total_seats: total,
                available_seats: (total - taken).max(0),
            })
        })
        .collect();
    Ok(Schedules {
        concert_id: concert,
        name,
        schedules,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeatView {
    pub seat_no: SeatNo,
    pub price: i64,
    pub status: SeatStatus,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Seats {
    pub schedule_id: ScheduleId,
    pub seats: Vec<SeatView>,
}

/// The seat map of one date. A hold past its `expires_at` shows as available whether or not
/// the sweep has marked it yet.
async fn seats(db: &Db, schedule: ScheduleId) -> Result<Seats, CatalogueError> {
    let pool = db.reader();
    let rows: Vec<(u8, i64, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT st.seat_no, st.price, CAST(r.status AS CHAR), r.expires_at > NOW(6)
           FROM seats st
           LEFT JOIN reservations r
             ON r.schedule_id = st.schedule_id AND r.live_seat_no = st.seat_no
          WHERE st.schedule_id = ?
          ORDER BY st.seat_no",
    )
    .bind(schedule.get())
    .fetch_all(&pool.pool)
    .await?;
    tracing::debug!(pool = pool.name, rows = rows.len(), "listed seats");
    if rows.is_empty() {
        return Err(CatalogueError::NoSuchSchedule);
    }
    let seats = rows
        .into_iter()
        .filter_map(|(seat_no, price, status, live)| {
            let status = match (status.as_deref(), live) {
                (Some("confirmed"), _) => SeatStatus::Sold,
                (Some("held"), Some(1)) => SeatStatus::Held,
                _ => SeatStatus::Available,
            };
            Some(SeatView {
                seat_no: SeatNo::new(u64::from(seat_no))?,
                price,
                status,
            })
        })
        .collect();
    Ok(Seats {
        schedule_id: schedule,
        seats,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConcertOnSale {
    pub concert_id: ConcertId,
    pub name: String,
    pub next_starts_at: String,
    pub dates: i64,
    /// When the sale opens (RFC 3339); null when it is open.
    pub sale_starts_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnSale {
    pub concerts: Vec<ConcertOnSale>,
}

/// Concerts with at least one date still to come, soonest first (at most 100).
async fn on_sale(db: &Db) -> Result<OnSale, CatalogueError> {
    let pool = db.reader();
    type Row = (u64, String, NaiveDateTime, i64, Option<NaiveDateTime>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.id, c.name, MIN(s.starts_at), COUNT(*),
                CASE WHEN c.sale_starts_at > NOW(6) THEN c.sale_starts_at END
           FROM concerts c JOIN schedules s ON s.concert_id = c.id
          WHERE s.starts_at > NOW(6)
          GROUP BY c.id, c.name, c.sale_starts_at
          ORDER BY MIN(s.starts_at), c.id
          LIMIT 100",
    )
    .fetch_all(&pool.pool)
    .await?;
    Ok(OnSale {
        concerts: rows
            .into_iter()
            .filter_map(|(id, name, next, dates, sale)| {
                Some(ConcertOnSale {
                    concert_id: ConcertId::new(id)?,
                    name,
                    next_starts_at: rfc3339(next.and_utc()),
                    dates,
                    sale_starts_at: sale.map(|t| rfc3339(t.and_utc())),
                })
            })
            .collect(),
    })
}
