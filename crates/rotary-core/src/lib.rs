//! The domain of Rotary: secrets, their stages and versions, access policies,
//! the audit chain, and the [`SecretStore`] port that storage backends
//! implement.
//!
//! Architecture invariant: this crate does no I/O of its own. It knows nothing
//! of HTTP, SQL dialects or files; time comes from a [`Clock`], storage from a
//! [`SecretStore`], key material from a [`Keyring`].

pub mod audit;
pub mod clock;
pub mod domain;
pub mod error;
pub mod keyring;
pub mod password;
pub mod policy;
pub mod service;
pub mod store;

pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use error::{CoreError, ErrorKind};
pub use keyring::Keyring;
pub use store::SecretStore;
