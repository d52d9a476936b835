//! Subcommands, one file each. Every command prints a table for people or, with `--json`, one
//! JSON document on stdout; errors are returned to `main`, which prints one line and exits 2.

mod bench;
mod bench_deepmad;
mod bench_train;
mod common;
mod deepmad;
mod demo;
mod doctor;
mod evonorm;
mod export;
mod inspect;
mod proxies;
mod report;
mod robustness;
mod search;
mod search_deepmad;
mod search_evonorm;
mod train;
mod verify;
mod zoo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// archproof: neural-architecture search and formal verification, from one architecture IR.
#[derive(Debug, Parser)]
#[command(name = "archproof", version, about, long_about = None,
    after_help = "Examples:\n  archproof demo                          # every engine, small; writes runs/demo/index.html\n  archproof report runs/ --out reports/   # an HTML report of finished runs\n  archproof inspect resnet50\n  archproof search cell --space nb201 --benchmark nb201-cifar10.csv --out runs/rea\n  archproof robustness --net mlp.json --dataset shapes --out runs/robust\n  archproof completions bash > archproof.bash")]
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
    Robustness(robustness::Args),
    Completions(CompletionsArgs),
}

/// Print a shell completion script for archproof.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  archproof completions bash > ~/.local/share/bash-completion/completions/archproof
  archproof completions zsh > ~/.zfunc/_archproof
  archproof completions fish > ~/.config/fish/completions/archproof.fish")]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
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
    use clap::CommandFactory;

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

    #[test]
    fn every_command_has_an_example_and_json() {
        let cli = super::Cli::command();
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
