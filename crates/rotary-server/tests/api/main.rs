//! Integration tests: the server on port 0 with a temp data directory, driven
//! over HTTP by the signing client.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod audit;
mod auth;
mod bad_input;
mod builtin;
mod crash;
mod helpers;
mod hygiene;
mod rotation;
mod schedule;
mod secrets;
