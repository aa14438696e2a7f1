//! HTTP plumbing: the server loop, the request pipeline, routing, and request/response helpers.
//! Nothing in here knows about concerts or seats; `crate::api` does.

pub mod pipeline;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod streams;

pub use request::Req;
pub use response::{Body, Resp};
