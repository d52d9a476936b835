//! Subcommands, one file each. Every command prints a table for people or, with `--json`, one
//! JSON document on stdout; errors are returned to `main`, which prints one line and exits 2.

mod bench;
mod bench_deepmad;
mod bench_study;
mod bench_train;
mod common;
mod deepmad;
mod demo;
mod doctor;
mod evonorm;
mod export;
mod inspect;
mod progress;
mod proxies;
mod report;
mod robustness;
mod search;
mod search_deepmad;
mod search_evonorm;
mod study;
mod train;
mod verify;
mod zoo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// archproof: neural-architecture search and formal verification, from one architecture IR.
#[derive(Debug, Parser)]
#[command(name = "archproof", version, about, long_about = None,
    after_help = "Examples:
  archproof demo   # every engine, small; writes runs/demo/index.html
  archproof report runs/ --out reports/   # an HTML report of finished runs
  archproof inspect resnet50
  archproof search cell --space nb201 --benchmark nb201-cifar10.csv \\
      --out runs/rea
  archproof robustness --net mlp.json --dataset shapes --out runs/robust
  archproof completions bash > archproof.bash")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Inspect(inspect::Args),
    Export(export::Args),
    Zoo(zoo::Args),
    Search(search::Args),
    Verify(Box<verify::Args>),
    Bench(bench::Args),
    Doctor(doctor::Args),
    Demo(demo::Args),
    Deepmad(deepmad::Args),
    Train(train::Args),
    Proxies(proxies::Args),
    Evonorm(evonorm::Args),
    Report(report::Args),
    Study(study::Args),
    Robustness(robustness::Args),
    Completions(CompletionsArgs),
}

/// Print a shell completion script for archproof.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof completions bash > \\
      ~/.local/share/bash-completion/completions/archproof
  archproof completions zsh > ~/.zfunc/_archproof
  archproof completions fish > ~/.config/fish/completions/archproof.fish")]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// The command line as clap reads it: the derived commands, with negative numbers taken as
/// values everywhere (`--eps -0.01` is a value, not an unknown flag `-0`).
pub fn command() -> clap::Command {
    fn negatives(c: clap::Command) -> clap::Command {
        c.allow_negative_numbers(true).mut_subcommands(negatives)
    }
    use clap::CommandFactory;
    negatives(Cli::command())
}

/// Parses the process's arguments, exiting with clap's message (exit 2) on bad ones.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let m = command().get_matches();
    Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

/// Parses `words` (the program name first) as [`parse`] does.
#[cfg(test)]
pub fn try_parse_from<I, T>(words: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().try_get_matches_from(words)?)
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Export(a) => export::run(a),
        Command::Zoo(a) => zoo::run(a),
        Command::Search(a) => search::run(a),
        Command::Verify(a) => verify::run(*a),
        Command::Bench(a) => bench::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Deepmad(a) => deepmad::run(a),
        Command::Train(a) => train::run(a),
        Command::Proxies(a) => proxies::run(a),
        Command::Evonorm(a) => evonorm::run(a),
        Command::Report(a) => report::run(a),
        Command::Study(a) => study::run(a),
        Command::Robustness(a) => robustness::run(a),
        Command::Completions(a) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(a.shell, &mut cmd, "archproof", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every command a user can run, as its path of subcommand names.
    fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        let subs: Vec<&clap::Command> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push((path.clone(), cmd.clone()));
        }
        for c in subs {
            let mut p = path.clone();
            p.push(c.get_name().to_string());
            leaves(c, p, out);
        }
    }

    /// The widest example line: narrower than an 80-column terminal, so clap never wraps it
    /// and a pasted example is the command it shows.
    const EXAMPLE_WIDTH: usize = 80;

    /// Every example of `help` is pasteable: no line wider than [`EXAMPLE_WIDTH`], each
    /// command (with `\` continuations joined, up to a `# comment`, a `> file` redirection,
    /// a pipe or `&&`) parses with archproof's own argument parser.
    fn check_examples(name: &str, help: &str) {
        for line in help.lines() {
            assert!(
                line.chars().count() <= EXAMPLE_WIDTH,
                "`archproof {name} --help`: an example line wider than {EXAMPLE_WIDTH} columns \
                 (clap wraps it, and pasting it fails): {line}"
            );
        }
        for line in help.lines().filter(|l| l.ends_with('\\')) {
            let quotes = line.matches('\'').count() + line.matches('"').count();
            assert!(
                quotes % 2 == 0,
                "`archproof {name} --help`: a line continues inside a quoted argument: {line}"
            );
        }
        let joined = help.replace("\\\n", " ");
        let mut seen = 0;
        for line in joined.lines() {
            let line = line.trim();
            if !line.starts_with("archproof ") {
                continue;
            }
            // The archproof command alone: before a comment, a redirection, a pipe or `&&`.
            let command = [" #", " > ", " | ", " && "]
                .iter()
                .fold(line, |c, cut| c.split(cut).next().unwrap_or(c));
            let words = shell_words::split(command)
                .unwrap_or_else(|e| panic!("`archproof {name} --help`: {command}: {e}"));
            if let Err(e) = super::try_parse_from(&words) {
                panic!("`archproof {name} --help` shows an example that does not parse: {command}\n{e}");
            }
            seen += 1;
        }
        assert!(seen > 0, "`archproof {name} --help` has no example command");
    }

    /// `inspect --help` names every model of the zoo.
    #[test]
    fn inspect_help_names_the_whole_zoo() {
        let mut cmd = super::command();
        let inspect = cmd.find_subcommand_mut("inspect").expect("inspect");
        let help = inspect.render_long_help().to_string();
        for (name, _) in archproof::models::names() {
            let stem = name.split(['<', '[']).next().unwrap_or(name);
            assert!(help.contains(stem), "`inspect --help` does not name {name}");
        }
    }

    /// A negative number is a value, as a user types it, not an unknown flag.
    #[test]
    fn negative_numbers_are_values() {
        let words = "archproof verify --net n.onnx --input x.csv --eps -0.01 --label 3";
        let parsed = super::try_parse_from(words.split(' '));
        assert!(parsed.is_ok(), "{}", parsed.unwrap_err());
    }

    #[test]
    fn the_top_level_examples_are_pasteable() {
        let cli = super::command();
        let help = cli
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        check_examples("", &help);
    }

    #[test]
    fn every_command_has_an_example_and_json() {
        let cli = super::command();
        cli.clone().debug_assert();
        let mut all = Vec::new();
        leaves(&cli, Vec::new(), &mut all);
        assert!(all.len() >= 20, "only {} commands found", all.len());
        for (path, cmd) in &all {
            let name = path.join(" ");
            let help = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains(&format!("archproof {}", path[0])),
                "`archproof {name} --help` shows no example of itself"
            );
            check_examples(&name, &help);
            // A completion script is not a result; every other command can speak JSON.
            if name != "completions" {
                assert!(
                    cmd.get_arguments().any(|a| a.get_long() == Some("json")),
                    "`archproof {name}` has no --json"
                );
            }
        }
    }
}
