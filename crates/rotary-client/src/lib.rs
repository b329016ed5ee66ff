//! rotary-client
