//! Understanding Azure: which service a request is for, the operation it is, the URLs to
//! keep clients on the gateway, and Azure's native error shapes.

pub mod batch;
pub mod deployment;
pub mod error;
pub mod operation;
pub mod rewrite;
pub mod route;
