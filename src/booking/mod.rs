//! Booking: the catalogue of concerts, dates and seat maps; seat holds; reservations; payments;
//! and the expiry sweep.
//!
//! The database is the final arbiter of every seat (see `migrations/0003_reservations.sql`);
//! the Redlock and the Redis seat board in front of it only keep rushes cheap.
//!
//! - `catalogue`: concerts, schedules, seat maps, the list on sale (and their caches);
//! - `holds`: taking a hold through board → single flight → Redlock → transaction;
//! - `reservations`: reading, cancelling, releasing holds; the one reservation reader;
//! - `payments`: paying for one hold or a checkout of several, in one transaction;
//! - `seat_board`, `flights`, `keys`: the rush-cheapening layers and the seat key layout;
//! - `sweep`: the background job that marks expired holds.

pub mod catalogue;
pub mod flights;
pub mod holds;
pub mod keys;
pub mod payments;
pub mod reservations;
pub mod seat_board;
pub mod sweep;
