//! Prints the first documents of each built-in domain and their sizes.
//! `cargo run -p moe-data --release --example builtin_sample -- [N]`

use moe_data::builtin::BuiltinDomain;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    for d in BuiltinDomain::ALL {
        println!("=== {} ({}) ===", d.name(), d.description());
        for doc in d.documents(0, n) {
            println!("{doc}\n---");
        }
        let bytes: usize = d.documents(0, 1000).map(|s| s.len()).sum();
        println!("[mean {} bytes per document]\n", bytes / 1000);
    }
}
