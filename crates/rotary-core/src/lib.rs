//! rotary-core
