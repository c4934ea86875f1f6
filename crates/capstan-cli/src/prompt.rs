//! Questions on the terminal: a line, a password without echo, yes or no.
//!
//! The password prompt talks to `/dev/tty` (so it works when stdin is piped) and turns echo
//! off *before* showing the prompt: whatever the user types after seeing it is never echoed,
//! however fast they type. The terminal's settings are restored afterwards, also on error,
//! and on Ctrl-C ([`restore_terminal`], called by the process's interrupt handler).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::sync::Mutex;

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};

use crate::error::{CliError, CliResult};

/// The terminal and its settings while a password prompt has echo off.
static HIDDEN: Mutex<Option<(File, Termios)>> = Mutex::new(None);

/// Puts back the terminal settings a password prompt changed, if one is open (Ctrl-C).
pub fn restore_terminal() {
    if let Ok(mut hidden) = HIDDEN.lock()
        && let Some((tty, saved)) = hidden.take()
    {
        let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
    }
}

/// Asks for a password on the terminal, without echo.
pub fn password(prompt: &str) -> CliResult<String> {
    let no_terminal = |e: std::io::Error| {
        CliError::usage(format!("cannot ask for the password: no terminal ({e})"))
            .hint("pass it on stdin with --password-stdin")
    };
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_terminal)?;
    let saved = tcgetattr(&tty).map_err(|e| no_terminal(e.into()))?;
    let mut hidden = saved.clone();
    hidden.local_modes.remove(LocalModes::ECHO);
    // Newlines still echo, so the cursor moves on when Enter is pressed.
    hidden.local_modes.insert(LocalModes::ECHONL);
    if let (Ok(mut slot), Ok(copy)) = (HIDDEN.lock(), tty.try_clone()) {
        *slot = Some((copy, saved.clone()));
    }
    tcsetattr(&tty, OptionalActions::Now, &hidden).map_err(|e| no_terminal(e.into()))?;
    let answer = read_after_prompt(&tty, prompt);
    if let Ok(mut slot) = HIDDEN.lock() {
        slot.take();
    }
    let restored = tcsetattr(&tty, OptionalActions::Now, &saved);
    let answer = answer?;
    restored.map_err(|e| CliError::other(format!("cannot restore the terminal: {e}")))?;
    Ok(answer)
}

fn read_after_prompt(tty: &File, prompt: &str) -> CliResult<String> {
    let mut writer = tty;
    writer.write_all(prompt.as_bytes())?;
    writer.flush()?;
    let mut line = String::new();
    BufReader::new(tty).read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Asks for a line on the terminal, with echo (a user name).
pub fn line(prompt: &str, missing: &str) -> CliResult<String> {
    if !std::io::stdin().is_terminal() {
        return Err(
            CliError::usage(format!("no terminal to ask for {missing} on"))
                .hint(format!("pass {missing}")),
        );
    }
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Asks a yes/no question on the terminal; without one, refuses (use --yes).
pub fn confirm(question: &str) -> CliResult<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(
            CliError::usage("no terminal to confirm on").hint("add --yes to confirm in a script")
        );
    }
    loop {
        eprint!("{question}");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer)? == 0 {
            return Ok(false);
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => {}
        }
    }
}

/// The first line of stdin (`--password-stdin`).
pub fn stdin_line(what: &str) -> CliResult<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        return Err(CliError::usage(format!("stdin gave no {what}")));
    }
    Ok(line)
}
