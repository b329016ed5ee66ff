//! rotary-store
