//! rotary-crypto
