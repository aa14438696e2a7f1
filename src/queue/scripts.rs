//! The waiting room's Lua scripts (files in `lua/`, compiled in). Each one is the only way one
//! kind of change happens to queue state; their headers state the invariants they keep.

use crate::redis::Script;

pub struct Scripts {
    pub check_access: Script,
    pub revoke: Script,
    pub grant: Script,
    pub join: Script,
    pub status: Script,
    pub leave: Script,
    pub tick: Script,
    pub scan: Script,
    pub figures: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            check_access: Script::new("check_access", include_str!("../../lua/check_access.lua")),
            revoke: Script::new("revoke", include_str!("../../lua/revoke.lua")),
            grant: Script::new("grant", include_str!("../../lua/grant.lua")),
            join: Script::new("join", include_str!("../../lua/join.lua")),
            status: Script::new("status", include_str!("../../lua/status.lua")),
            leave: Script::new("leave", include_str!("../../lua/leave.lua")),
            tick: Script::new("tick", include_str!("../../lua/tick.lua")),
            scan: Script::new("scan", include_str!("../../lua/scan.lua")),
            figures: Script::new("figures", include_str!("../../lua/figures.lua")),
        }
    }

    pub fn all(&self) -> [&Script; 9] {
        [
            &self.check_access,
            &self.revoke,
            &self.grant,
            &self.join,
            &self.status,
            &self.leave,
            &self.tick,
            &self.scan,
            &self.figures,
        ]
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
