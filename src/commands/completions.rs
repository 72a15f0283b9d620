//! `actionwarden completions SHELL` and `actionwarden man`: shell completions and a man
//! page, both generated from the command-line definition so they never drift from it.

use clap::CommandFactory;
use clap_complete::Shell;

use super::output;
use crate::cli::{Cli, EXIT_CODES};
use crate::error::{exit, Error};

/// The binary's name as completions and the man page spell it.
const BIN_NAME: &str = "actionwarden";

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> Result<u8, Error> {
    output::print(&completion_script(shell))?;
    Ok(exit::OK)
}

/// Prints the man page (roff).
pub fn man() -> Result<u8, Error> {
    output::print(&man_page()?)?;
    Ok(exit::OK)
}

/// The completion script for `shell`.
pub fn completion_script(shell: Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// The man page, in roff: one page for the whole tool. After the top-level sections comes
/// COMMANDS, each command's full help under its own heading, so `man actionwarden` needs
/// no per-command pages.
pub fn man_page() -> Result<String, Error> {
    let mut cmd = Cli::command().name(BIN_NAME).bin_name(BIN_NAME);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    let rendered = man
        .render_title(&mut page)
        .and_then(|()| man.render_name_section(&mut page))
        .and_then(|()| man.render_synopsis_section(&mut page))
        .and_then(|()| man.render_description_section(&mut page))
        .and_then(|()| man.render_options_section(&mut page))
        .and_then(|()| commands_section(&mut cmd).to_writer_plain(&mut page))
        .and_then(|()| exit_status_section().to_writer_plain(&mut page))
        .and_then(|()| man.render_version_section(&mut page));
    rendered.map_err(Error::Output)?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// COMMANDS: the long help of every command that runs something (`dlq list`, not `dlq`),
/// kept as preformatted text.
fn commands_section(cmd: &mut clap::Command) -> Section {
    let mut roff = roff::Roff::new();
    roff.control("SH", ["COMMANDS"]);
    let mut stack: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
    stack.reverse();
    while let Some(mut sub) = stack.pop() {
        if sub.get_name() == "help" {
            continue;
        }
        if sub.has_subcommands() {
            let mut children: Vec<clap::Command> = sub.get_subcommands().cloned().collect();
            children.reverse();
            stack.extend(children);
            continue;
        }
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_owned();
        roff.control("SS", [name.as_str()]);
        roff.control("nf", []);
        for line in sub.render_long_help().to_string().lines() {
            roff.text([roff::roman(line)]);
        }
        roff.control("fi", []);
    }
    Section(roff)
}

/// EXIT STATUS: one entry per code.
fn exit_status_section() -> Section {
    let mut roff = roff::Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        roff.control("TP", []);
        roff.text([roff::bold(code.to_string())]);
        roff.text([roff::roman(meaning)]);
    }
    Section(roff)
}

/// A part of the page written after clap_mangen's title, which already carries roff's
/// apostrophe preamble.
struct Section(roff::Roff);

impl Section {
    fn to_writer_plain(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        w.write_all(self.0.to_roff().as_bytes())
    }
}
