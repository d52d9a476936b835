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
    after_help = "Examples:\n  archproof inspect resnet50\n  archproof export resnet18 --format dot -o r18.dot\n  archproof search cell --space search-spaces/nb201.toml --benchmark nb201-cifar10.csv --out runs/rea\n  archproof doctor")]
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
    }
}
