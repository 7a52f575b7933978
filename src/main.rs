//! The server binary: read the configuration (flags, environment, `--config` file), build the app with
//! the operator console on stdin, stop gracefully on Ctrl-C or SIGTERM. With `--print-config`, print the
//! effective configuration instead; with `--copy-to`, copy the database; and exit.

use std::process::ExitCode;

use bevy::prelude::*;
use mmo::config::Config;
use mmo::config::file::ConfigError;

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Flags(error)) => error.exit(),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if config.print_config {
        return match Config::effective_file(std::env::args_os()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        };
    }
    let mut app = App::new();
    app.add_plugins(mmo::logs::plugin(config.log_format));
    if let Some(target) = &config.copy_to {
        return match mmo::db::copy::copy(&config.db, target) {
            Ok(_) => {
                info!(from = %config.db, to = %target, "copied: start the server with --db on the copy");
                ExitCode::SUCCESS
            }
            Err(error) => {
                error!(%error, "cannot copy");
                ExitCode::FAILURE
            }
        };
    }
    let started = match mmo::server::build(&mut app, config) {
        Ok(started) => started,
        Err(error) => {
            error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    app.add_plugins(mmo::console::plugin);
    let shutdown = started.shutdown;
    let handler = ctrlc::set_handler(move || {
        if shutdown.is_requested() {
            // A second signal: the user wants out now. Acknowledged registrations are already committed.
            std::process::exit(130);
        }
        shutdown.request();
    });
    if let Err(error) = handler {
        warn!(%error, "cannot install the Ctrl-C/SIGTERM handler");
    }
    match app.run() {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    }
}
