//! Marathon's REST paths: the one place they are spelled. The client builds
//! its URLs from these; callers use them only to name a call in a message
//! (`PUT /v2/apps`).

pub const PING: &str = "/ping";
pub const INFO: &str = "/v2/info";
pub const LEADER: &str = "/v2/leader";
pub const APPS: &str = "/v2/apps";
pub const TASKS: &str = "/v2/tasks";
pub const TASKS_DELETE: &str = "/v2/tasks/delete";
pub const DEPLOYMENTS: &str = "/v2/deployments";
pub const QUEUE: &str = "/v2/queue";
pub const EVENTS: &str = "/v2/events";
pub const EVENT_SUBSCRIPTIONS: &str = "/v2/eventSubscriptions";
pub const GROUPS: &str = "/v2/groups";

/// `/v2/apps/<id>` for a message (`/dev/web` -> `/v2/apps/dev/web`).
pub fn app(id: &str) -> String {
    format!("{APPS}/{}", id.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn app_paths() {
        assert_eq!(super::app("/dev/web"), "/v2/apps/dev/web");
        assert_eq!(super::app("web"), "/v2/apps/web");
    }
}
