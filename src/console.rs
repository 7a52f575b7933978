//! The operator console: commands typed on the server's stdin (a terminal, or a pipe from a service
//! manager or a script), one a line, run as the `console` actor (see `crate::commands`; `help` lists
//! them). Each answer is printed on stdout: the text, or `error: WHY`; longer answers (`list`, `audit`,
//! `help`) continue on indented lines. Logs stay on stderr. With stdin closed the server just runs.
//!
//! The binary adds this plugin; servers embedded in other programs (and the tests' in-process servers)
//! do not read stdin.

use std::io::{BufRead, Read, Write};

use bevy::prelude::*;
use crossbeam_channel::Receiver;

use crate::commands::{Actor, ConsoleCommand, Reply};
use crate::schedule::ServerSystems;

/// Longest console line read; a longer one is refused whole.
const MAX_LINE_BYTES: usize = 4 * 1024;

pub fn plugin(app: &mut App) {
    let (tx, lines) = crossbeam_channel::unbounded::<Result<String, String>>();
    let reader = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                // Read at most one line's worth more than the limit, so a line without end cannot
                // fill memory.
                let read = (&mut stdin)
                    .take(MAX_LINE_BYTES as u64 + 1)
                    .read_until(b'\n', &mut buffer);
                let line = match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buffer.len() > MAX_LINE_BYTES && !buffer.ends_with(b"\n") => {
                        // Skip the rest of the overlong line.
                        let _ = stdin.skip_until(b'\n');
                        Err(format!("line longer than {MAX_LINE_BYTES} bytes ignored"))
                    }
                    Ok(_) => String::from_utf8(std::mem::take(&mut buffer))
                        .map(|line| line.trim().to_owned())
                        .map_err(|_| "line is not UTF-8: ignored".to_owned()),
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
            debug!("console input closed");
        });
    if let Err(error) = reader {
        warn!(%error, "cannot read the console");
        return;
    }
    app.insert_resource(ConsoleInput(lines))
        .add_systems(Update, read_console.in_set(ServerSystems::Receive))
        .add_systems(Update, print_answers.in_set(ServerSystems::Send));
}

/// Lines from the console thread.
#[derive(Resource)]
struct ConsoleInput(Receiver<Result<String, String>>);

fn read_console(input: Res<ConsoleInput>, mut commands: MessageWriter<ConsoleCommand>) {
    for line in input.0.try_iter() {
        match line {
            Ok(line) if line.is_empty() => {}
            Ok(line) => {
                commands.write(ConsoleCommand(line));
            }
            Err(error) => print(&format!("error: {error}")),
        }
    }
}

fn print_answers(mut replies: MessageReader<Reply>) {
    for Reply { actor, answer } in replies.read() {
        if !matches!(actor, Actor::Console) {
            continue;
        }
        match answer {
            Ok(text) => print(text),
            Err(error) => print(&format!("error: {error}")),
        }
    }
}

/// One answer on stdout, flushed at once (a pipe would otherwise hold it).
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
