//! Host checks of the kernel sources: what can be verified without NVRTC.

use super::*;

/// The source without `//` comments (enough for these files: no `/* */`, no
/// `//` inside string literals).
fn strip_comments(s: &str) -> String {
    s.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names of the kernels a source defines: `extern "C" __global__ void NAME(`
/// (or `void __launch_bounds__(N) NAME(`)
/// and the instantiations `MACRO(NAME, ...)` of every `#define MACRO(NAME, ...)`
/// of the source (a macro whose first parameter is the kernel name).
fn defined_kernels(src: &str) -> Vec<String> {
    let code = strip_comments(src);
    let mut names = Vec::new();
    for part in code.split("__global__ void ").skip(1) {
        // An optional `__launch_bounds__(...)` comes before the name.
        let part = match part.strip_prefix("__launch_bounds__(") {
            Some(rest) => rest.split_once(')').map_or("", |(_, name)| name.trim_start()),
            None => part,
        };
        let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if name != "NAME" {
            names.push(name);
        }
    }
    let kernel_macros: Vec<String> = code
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|rest| {
            let (name, params) = rest.split_once('(')?;
            params.starts_with("NAME").then(|| format!("{name}("))
        })
        .collect();
    for macro_call in &kernel_macros {
        for line in code.lines().filter(|l| l.starts_with(macro_call.as_str())) {
            let inner = &line[macro_call.len()..];
            names.push(inner.split(',').next().unwrap_or("").trim().to_string());
        }
    }
    names
}

#[test]
fn every_declared_kernel_is_defined_and_every_defined_one_declared() {
    for k in ALL {
        let mut defined = defined_kernels(k.source);
        defined.sort();
        let mut declared: Vec<String> = k.functions.iter().map(|s| s.to_string()).collect();
        declared.sort();
        assert_eq!(defined, declared, "{}.cu", k.name);
    }
}

#[test]
fn kernels_are_extern_c_and_names_unique() {
    let mut seen = std::collections::HashSet::new();
    for k in ALL {
        let code = strip_comments(k.source);
        assert_eq!(
            code.matches("__global__").count(),
            code.matches("extern \"C\" __global__").count(),
            "{}.cu: every kernel must be extern \"C\" (NVRTC would mangle its name)",
            k.name
        );
        assert!(seen.insert(k.name), "module {} twice", k.name);
    }
}

#[test]
fn sources_are_balanced_and_include_nothing() {
    for (name, src) in ALL.iter().map(|k| (k.name, k.source)).chain([("common", COMMON)]) {
        let code = strip_comments(src);
        assert!(!code.contains("#include"), "{name}: NVRTC compiles without headers");
        for (open, close) in [('{', '}'), ('(', ')'), ('[', ']')] {
            let mut depth = 0i64;
            for c in code.chars() {
                if c == open {
                    depth += 1;
                } else if c == close {
                    depth -= 1;
                }
                assert!(depth >= 0, "{name}: unbalanced {close}");
            }
            assert_eq!(depth, 0, "{name}: unbalanced {open}");
        }
        let math_h = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == "INFINITY" || w == "NAN");
        assert!(!math_h, "{name}: INFINITY/NAN are math.h macros");
    }
}

#[test]
fn full_source_puts_common_first() {
    let s = ELEMENTWISE.full_source();
    assert!(s.starts_with(COMMON));
    assert!(s.ends_with(ELEMENTWISE.source));
}

/// `#define NAME VALUE` lines of a source.
fn defines(src: &str) -> Vec<(String, i32)> {
    strip_comments(src)
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("#define ")?.split_whitespace();
            let (name, value) = (it.next()?, it.next()?);
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn op_codes_match_the_cuda_defines() {
    let defs = defines(ELEMENTWISE.source);
    for &(name, code) in ops::unary::ALL.iter().chain(ops::binary::ALL).chain(ops::compare::ALL) {
        let found: Vec<i32> = defs.iter().filter(|(n, _)| n == name).map(|(_, v)| *v).collect();
        assert_eq!(found, vec![code], "{name}");
    }
    let uop = defs.iter().filter(|(n, _)| n.starts_with("UOP_")).count();
    let bop = defs.iter().filter(|(n, _)| n.starts_with("BOP_")).count();
    let cmp = defs.iter().filter(|(n, _)| n.starts_with("CMP_")).count();
    assert_eq!(
        (uop, bop, cmp),
        (ops::unary::ALL.len(), ops::binary::ALL.len(), ops::compare::ALL.len())
    );
}

#[test]
fn attention_tile_sizes_match_the_cuda_defines() {
    use attention_launch::{BLOCK_ROWS, THREADS, TILE};
    let defs = defines(ATTENTION.source);
    let get = |name: &str| defs.iter().find(|(n, _)| n == name).map(|(_, v)| *v as usize);
    assert_eq!(get("ATT_BLOCK_ROWS"), Some(BLOCK_ROWS));
    assert_eq!(get("ATT_TILE"), Some(TILE));
    assert_eq!(
        get("ATT_WARPS").zip(get("ATT_ROWS")).map(|(w, r)| w * r),
        Some(BLOCK_ROWS)
    );
    assert_eq!(get("ATT_WARPS").map(|w| w * 32), Some(THREADS as usize));
    // Every launchable kernel name is declared.
    for kernel in ["attn_fwd", "attn_bwd_dq", "attn_bwd_dkv"] {
        for dtype in ["f32", "f64"] {
            for class in attention_launch::HEAD_CLASSES {
                let name = format!("{kernel}_{dtype}_d{class}");
                assert!(ATTENTION.functions.contains(&name.as_str()), "{name}");
            }
        }
    }
}

#[test]
fn tensor_core_attention_tiles_match_the_cuda_defines() {
    use attention_tc_launch::{BLOCK_ROWS, HEAD_SIZES, PAD, THREADS, TILE};
    let defs = defines(ATTENTION_TC.source);
    let get = |name: &str| defs.iter().find(|(n, _)| n == name).map(|(_, v)| *v as usize);
    assert_eq!(get("ATT_TC_ROWS"), Some(BLOCK_ROWS));
    assert_eq!(get("ATT_TC_TILE"), Some(TILE));
    assert_eq!(get("ATT_TC_PAD"), Some(PAD));
    // One 16-row mma tile per warp.
    assert_eq!(get("ATT_TC_WARPS").map(|w| w * 16), Some(BLOCK_ROWS));
    assert_eq!(get("ATT_TC_WARPS").map(|w| w * 32), Some(THREADS as usize));
    for kernel in ["fwd", "bwd_dq", "bwd_dkv"] {
        for dh in HEAD_SIZES {
            let name = format!("attn_tc_{kernel}_d{dh}");
            assert!(ATTENTION_TC.functions.contains(&name.as_str()), "{name}");
        }
    }
}

#[test]
fn strided_arg_has_the_c_layout() {
    assert_eq!(std::mem::size_of::<StridedArg>(), 4 + 4 + 8 + 8 * 8 + 8 * 8);
    assert_eq!(std::mem::align_of::<StridedArg>(), 8);
    assert!(COMMON.contains(&format!("#define MAX_RANK {MAX_RANK}")));
}

#[test]
fn strided_arg_offsets_match_the_cpu_walk() {
    use crate::cpu::strided::{offsets, Strided};
    // [2, 3] transposed to [3, 2]; a [3] row broadcast to [4, 3]; a narrowed
    // [2, 1, 2] view at offset 5 (the size-1 dim is dropped by new()).
    let cases: [(&[usize], &[usize], usize); 3] = [
        (&[3, 2], &[1, 3], 0),
        (&[4, 3], &[0, 1], 0),
        (&[2, 1, 2], &[4, 9, 1], 5),
    ];
    for (dims, strides, offset) in cases {
        let arg = StridedArg::new(dims, strides, offset).unwrap();
        let want = offsets(Strided { dims, strides, offset });
        let got: Vec<usize> = (0..want.len() as i64).map(|i| arg.offset_of(i) as usize).collect();
        assert_eq!(got, want, "dims {dims:?} strides {strides:?}");
    }
    // By hand: the transposed [3, 2] view walks 0, 3, 1, 4, 2, 5.
    let t = StridedArg::new(&[3, 2], &[1, 3], 0).unwrap();
    assert_eq!(
        (0..6).map(|i| t.offset_of(i)).collect::<Vec<_>>(),
        vec![0, 3, 1, 4, 2, 5]
    );
    assert_eq!(StridedArg::new(&[2; 9], &[1; 9], 0), None, "rank 9 does not fit");
    assert!(
        StridedArg::new(&[1; 12], &[0; 12], 0).is_some(),
        "size-1 dims are dropped"
    );
    assert_eq!(StridedArg::new(&[2], &[1, 1], 0), None);
}

#[test]
fn sinkhorn_block_and_eps_match_the_cpu_contract() {
    use crate::cpu::sinkhorn::{SINKHORN_EPS, SINKHORN_THREADS};
    let defs = defines(SINKHORN.source);
    let threads = defs
        .iter()
        .find(|(n, _)| n == "SINKHORN_THREADS")
        .map(|(_, v)| *v as usize);
    assert_eq!(threads, Some(SINKHORN_THREADS));
    // `defines` reads integers only; the eps is spelled as in Rust.
    assert!(SINKHORN
        .source
        .contains(&format!("#define SINKHORN_EPS {SINKHORN_EPS:e}")));
    assert_eq!(
        launch::sinkhorn(SINKHORN_THREADS).map(|l| l.block),
        Some(SINKHORN_THREADS as u32)
    );
    assert_eq!(launch::sinkhorn(SINKHORN_THREADS + 1), None);
}
