//! moe-router: routers, balancing losses, dispatch and routing statistics.
//!
//! Not implemented yet: this crate is filled by the model/router issue. It exists
//! now so the workspace's dependency direction (tensor ← router ← model) holds
//! from the first commit.
