//! Writes every CUDA kernel source exactly as NVRTC compiles it
//! (`KernelSource::full_source`) and the names of its kernels, for tools that
//! build the sources for something other than NVRTC (the CPU-emulated device
//! of `tools/cuda_emu/device`):
//!
//! ```text
//! cargo run -p moe-kernels --example kernel_manifest -- DIR
//! ```
//! Writes `DIR/NAME.cu` and `DIR/NAME.functions` (one kernel name a line)
//! per source, and `DIR/sources` (the source names, one a line).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: kernel_manifest DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    let mut names = String::new();
    for src in moe_kernels::cuda::ALL {
        std::fs::write(dir.join(format!("{}.cu", src.name)), src.full_source())?;
        let functions: String = src.functions.iter().map(|f| format!("{f}\n")).collect();
        std::fs::write(dir.join(format!("{}.functions", src.name)), functions)?;
        names.push_str(src.name);
        names.push('\n');
    }
    std::fs::write(dir.join("sources"), names)
}
