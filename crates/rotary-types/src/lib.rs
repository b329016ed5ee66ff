//! rotary-types
