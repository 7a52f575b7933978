//! mmo-loadgen: measures the mmo server as players would load it. Simulated players are real renet
//! clients over loopback UDP ([`scenario`]); the server runs as its own process so its CPU and memory
//! can be read ([`target`]); the floor is a bare renet relay with the same config ([`relay`]); an
//! [`abuse`] thread can attack the server meanwhile, to show whether the players notice.

pub mod abuse;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod target;
