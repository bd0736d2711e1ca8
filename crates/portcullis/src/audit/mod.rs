//! Record: every request, whatever its fate, in a hash-chained store, so what each agent
//! asked, what the gateway decided and why, and what Azure answered can be read back in
//! order, and any edit to the record afterwards can be proven.

pub mod anchor;
pub mod chain;
pub mod checkpoint;
pub mod lock;
pub mod record;
pub mod session;
pub mod store;
pub mod tap;
pub mod verifier;
pub mod writer;
