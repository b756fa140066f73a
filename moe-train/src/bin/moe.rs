//! The `moe` command-line tool. Subcommands arrive with the train issue.

fn main() {
    eprintln!("moe: no subcommands are implemented yet (see README.md)");
    std::process::exit(2);
}
