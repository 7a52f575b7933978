//! A terminal chat client for the mmo server, built on `mmo::client` and `mmo::protocol` only.
//!
//! ```text
//! cargo run --example terminal_chat -- 127.0.0.1:5000
//! /register NAME PASSWORD    create an account
//! /login NAME PASSWORD       log in
//! /move X Y                  walk to (X, Y) in the world (0 to 2048 each way)
//! /quit                      leave (so does end of input)
//! /help, /who, /w NAME TEXT  the server's commands (/help lists those your role may use)
//! anything else              say it in chat
//! ```
//!
//! Input may be piped: each /register or /login waits for its answer before the next line is read.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mmo::client::NetClient;
use mmo::protocol::{ClientMessage, ServerMessage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:5000")
        .parse()?;
    let mut net = NetClient::connect(server, 60)?;
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let started = Instant::now();
    let mut inbox = Vec::new();
    let mut waiting_for_answer = false;
    let mut input_done_at: Option<Instant> = None;
    loop {
        net.pump(&mut inbox)?;
        for message in inbox.drain(..) {
            waiting_for_answer &= !matches!(
                message,
                ServerMessage::Registered { .. }
                    | ServerMessage::LoggedIn { .. }
                    | ServerMessage::Denied { .. }
            );
            print_message(message);
        }
        if net.is_disconnected() {
            println!(
                "* disconnected: {}",
                net.disconnect_reason().unwrap_or_default()
            );
            return Ok(());
        }
        if !net.is_connected() {
            if started.elapsed() > Duration::from_secs(5) {
                println!("* cannot reach {server}");
                return Ok(());
            }
        } else if !waiting_for_answer && input_done_at.is_none() {
            match lines.try_recv() {
                Ok(line) => match parse(&line) {
                    Some(Some(message)) => {
                        waiting_for_answer = matches!(
                            message,
                            ClientMessage::Register { .. } | ClientMessage::Login { .. }
                        );
                        net.send(&message);
                    }
                    Some(None) => input_done_at = Some(Instant::now()),
                    None => println!(
                        "* usage: /register NAME PASSWORD | /login NAME PASSWORD | /move X Y | /quit | text"
                    ),
                },
                Err(mpsc::TryRecvError::Disconnected) => input_done_at = Some(Instant::now()),
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
        // After the last line, stay a moment to hear the answers, then leave cleanly.
        if input_done_at.is_some_and(|at| at.elapsed() > Duration::from_millis(500)) {
            net.disconnect();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `Some(Some(message))` to send, `Some(None)` to quit, `None` for a command it does not know.
fn parse(line: &str) -> Option<Option<ClientMessage>> {
    let mut words = line.split_whitespace();
    let credentials = |mut words: std::str::SplitWhitespace| {
        let (username, password) = (words.next()?.to_owned(), words.next()?.to_owned());
        Some((username, password))
    };
    match words.next() {
        Some("/quit") => Some(None),
        Some("/register") => credentials(words)
            .map(|(username, password)| Some(ClientMessage::Register { username, password })),
        Some("/login") => credentials(words)
            .map(|(username, password)| Some(ClientMessage::Login { username, password })),
        Some("/move") => {
            let (x, y) = (words.next()?.parse().ok()?, words.next()?.parse().ok()?);
            Some(Some(ClientMessage::MoveTo { x, y }))
        }
        // Any other `/command` is the server's (`/help`, `/who`, `/w NAME TEXT`, …).
        _ => Some(Some(ClientMessage::Chat {
            text: line.to_owned(),
        })),
    }
}

fn print_message(message: ServerMessage) {
    match message {
        ServerMessage::Registered { username } => println!("* Registration successful: {username}"),
        ServerMessage::LoggedIn { name } => println!("* Logged in as {name}"),
        ServerMessage::Denied { request, reason } => println!("* {request:?} denied: {reason}"),
        ServerMessage::Chat(line) => println!("{} says: \"{}\"", line.sender, line.text),
        // `NetClient::pump` hands a batch over as one `Chat` a line; this arm is for completeness.
        ServerMessage::ChatLines { lines } => {
            for line in lines {
                println!("{} says: \"{}\"", line.sender, line.text);
            }
        }
        ServerMessage::ChatHistory { lines } => {
            for line in lines {
                println!("{} said: \"{}\"", line.sender, line.text);
            }
        }
        ServerMessage::OnlinePlayers { names } => println!("* Online: {}", names.join(", ")),
        ServerMessage::PlayerJoined { name } => println!("* {name} joined"),
        ServerMessage::PlayerLeft { name } => println!("* {name} left"),
        ServerMessage::Kicked { reason } => println!("* Kicked: {reason}"),
        ServerMessage::Spawned { at, .. } => println!("* You stand at ({}, {})", at.x(), at.y()),
        ServerMessage::EnteredView { name, at, .. } => {
            println!("* {name} is near, at ({}, {})", at.x(), at.y())
        }
        // A chat terminal shows no map: who walks out of view stays in the online list.
        ServerMessage::LeftView { .. } => {}
        ServerMessage::System { text } => println!("** {text}"),
        ServerMessage::Whisper(line) => {
            println!("{} whispers to {}: \"{}\"", line.from, line.to, line.text)
        }
    }
}
