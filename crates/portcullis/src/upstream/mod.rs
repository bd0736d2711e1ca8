//! Forwarding to Azure: the outbound client and the gateway's own credentials.

pub mod client;
pub mod credential;
pub mod settings;
