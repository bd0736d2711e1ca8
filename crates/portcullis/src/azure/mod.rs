//! Understanding Azure: which service a request is for, the operation it is, the URLs to
//! keep clients on the gateway, Azure's native error shapes, and an operation in words.

pub mod batch;
pub mod deployment;
pub mod error;
pub mod operation;
pub mod rewrite;
pub mod route;
pub mod words;

/// Headers that would change the evaluated method: refused, never honoured (azure-notes §4).
pub const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
