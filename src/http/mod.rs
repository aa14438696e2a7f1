//! A small generic HTTP/1.1 server: the accept loop, the request pipeline, request and response
//! helpers, and a raw-socket transport for long-lived streams. It runs any `Handler`; nothing in
//! here knows a route, a concert or a token — `crate::api` does.

pub mod handler;
pub mod lifecycle;
pub mod pipeline;
pub mod raw;
pub mod request;
pub mod response;
pub mod server;

pub use request::Req;
pub use response::{Body, Resp};
