//! Where the instance is in its life: serving, or leaving ("lame duck" after SIGTERM). Shared
//! by the server (which closes connections after each response while leaving) and whatever
//! reports readiness.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
