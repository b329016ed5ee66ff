//! rotary-server
