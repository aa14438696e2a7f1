//! The invariant checker (`queuegate check`): verifies in the database that nothing the contract
//! forbids has happened. Fault and concurrency tests end by running it.

use sqlx::MySqlPool;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// (name, query returning one row per violation, rendered as a single string column).
const CHECKS: &[(&str, &str)] = &[
    (
        "one live reservation per seat",
        "SELECT CONCAT('schedule ', schedule_id, ' seat ', seat_no, ': ', COUNT(*), ' live')
           FROM reservations WHERE status IN ('held', 'confirmed')
          GROUP BY schedule_id, seat_no HAVING COUNT(*) > 1",
    ),
    (
        "no negative balance",
        "SELECT CONCAT('user ', user_id, ' balance ', balance) FROM wallets WHERE balance < 0",
    ),
    (
        "balance equals ledger sum",
        "SELECT CONCAT('user ', w.user_id, ' balance ', w.balance, ' ledger ', COALESCE(l.total, 0))
           FROM wallets w
           LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM ledger GROUP BY user_id) l
             ON l.user_id = w.user_id
          WHERE w.balance <> COALESCE(l.total, 0)",
    ),
    (
        "every payment has a confirmed reservation",
        "SELECT CONCAT('payment ', p.id, ' reservation ', p.reservation_id, ' is ', r.status)
           FROM payments p JOIN reservations r ON r.id = p.reservation_id
          WHERE r.status <> 'confirmed'",
    ),
    (
        "every confirmed reservation has a payment",
        "SELECT CONCAT('reservation ', r.id) FROM reservations r
           LEFT JOIN payments p ON p.reservation_id = r.id
          WHERE r.status = 'confirmed' AND p.id IS NULL",
    ),
    (
        "every payment is debited once, at the seat price",
        "SELECT CONCAT('payment ', p.id) FROM payments p
           JOIN reservations r ON r.id = p.reservation_id
           LEFT JOIN ledger l ON l.payment_id = p.id
          WHERE l.id IS NULL OR l.amount <> -p.amount OR p.amount <> r.price OR l.user_id <> p.user_id",
    ),
];

pub async fn run(pool: &MySqlPool) -> Result<Vec<Violation>, sqlx::Error> {
    let mut found = Vec::new();
    for (invariant, sql) in CHECKS {
        let rows: Vec<String> = sqlx::query_scalar(*sql).fetch_all(pool).await?;
        found.extend(
            rows.into_iter()
                .map(|detail| Violation { invariant, detail }),
        );
    }
    Ok(found)
}

pub fn invariants() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|(name, _)| *name)
}
