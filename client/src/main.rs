//! The client binary: parse the flags and run the windowed client.

use bevy::prelude::*;
use clap::Parser;
use mmo_client::config::ClientConfig;

fn main() -> AppExit {
    mmo_client::windowed(ClientConfig::parse()).run()
}
