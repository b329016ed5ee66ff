//! Rotators: what runs when a rotation job is dispatched. External functions
//! now (`exec` runs a command, `http` POSTs to a URL); the built-in database
//! rotators will sit beside them.
//!
//! Function output goes to the job log only after every value of the secret's
//! chain and every value generated for the job has been redacted from it.

pub mod builtin;
mod external;
pub mod mysql;
pub mod postgres;
mod redact;

pub use external::{Runner, run_exec};
pub use redact::redact;
