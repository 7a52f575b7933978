//! mmo-loadgen: measures the mmo server as players would load it. Simulated players are real renet
//! clients over loopback UDP ([`scenario`]); the server runs as its own process so its CPU and memory
//! can be read ([`target`]); the floor is a bare renet relay with the same config ([`relay`]); an
//! [`abuse`] thread can attack the server meanwhile, to show whether the players notice. In token mode
//! ([`token`]) players log in over HTTPS first and play over netcode's secure mode, and the floor relay
//! runs in secure mode too. [`cost`] measures what one datagram costs alone.

pub mod abuse;
pub mod cost;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod target;
pub mod token;

/// An error and its causes, one after another (`outer: cause: root cause`), for messages that end a run.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
