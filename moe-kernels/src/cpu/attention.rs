//! Causal scaled-dot-product attention with grouped-query heads (GQA),
//! flash-attention style: forward and backward work on tiles with an
//! online softmax and never hold a `T×T` matrix, only score tiles (forward
//! `[MR, 256]` per row panel of MR queries, backward `[128, 128]`) and
//! `[MR, Dh]` accumulators per task. Forward saves the output and the row
//! logsumexp; backward recomputes probabilities per tile from them.
//!
//! ```text
//! q:   [B, Hq,  Tq, Dh]     k, v: [B, Hkv, Tk, Dh]     Hq = G · Hkv
//! o:   [B, Hq,  Tq, Dh]     lse:  [B, Hq, Tq]
//! query head h reads kv head h / G
//! ```
//! Causality is aligned bottom-right: query `i` sees keys `j ≤ i + (Tk − Tq)`,
//! which is the usual mask when `Tq == Tk` and the right one for decoding with
//! a KV cache (the new queries are the last `Tq` positions).
//!
//! The tile products call the GEMM micro-kernel directly on operands
//! packed once per head ([`PanelKernel`]): through `gemm_with`, each of the
//! hundreds of Dh-deep tile products per head packed both of its operands
//! again, which at Dh = 32 cost as much as the multiply-adds. Only the tiles
//! of probabilities and their gradients are packed per tile. Tiles of key
//! panels that no query of a row panel sees are skipped, so the causal mask
//! wastes at most one panel per row panel. On B 8, H 8, T 256, Dh 32 in
//! bf16 on 2 Zen 4 cores this took forward from 4.2 to 2.4 ms and backward
//! from 8.3 to 4.7 ms (`examples/attention_speed.rs`).
//!
//! Forward runs one task per (b, query head); backward one task per (b, kv
//! head), which owns `dk`, `dv` and the `dq` of its G query heads, so no
//! gradient is ever added from two threads: results are bitwise the same
//! for any thread count.

mod backward;
mod forward;

pub use backward::attention_backward;

use std::any::Any;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm::{MatRef, PanelKernel, ProductPrecision};
use super::index::check_len;
use super::softmax::numel;
use super::write_once::written_once;
use crate::{KernelError, Real};
use forward::{forward_head, ForwardTiles};

/// Keys per score buffer of a forward row panel (one chunk at T ≤ 256; the
/// online softmax carries longer rows across chunks).
const KEY_CHUNK: usize = 256;
/// Multiply-adds below which a call stays on the calling thread.
const PAR_MIN_WORK: usize = 1 << 16;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Batch size B.
    pub b: usize,
    /// Query heads Hq (a multiple of `hkv`).
    pub hq: usize,
    /// Key/value heads Hkv.
    pub hkv: usize,
    /// Query length Tq.
    pub tq: usize,
    /// Key length Tk (≥ Tq).
    pub tk: usize,
    /// Head size Dh.
    pub dh: usize,
}

impl AttnDims {
    /// Self-attention over `t` tokens: `Tq = Tk = t`.
    pub fn causal(b: usize, hq: usize, hkv: usize, t: usize, dh: usize) -> Self {
        Self {
            b,
            hq,
            hkv,
            tq: t,
            tk: t,
            dh,
        }
    }

    /// Query heads per kv head.
    pub fn group(&self) -> usize {
        self.hq / self.hkv
    }

    /// Checks the head and length relations (configuration errors: callers
    /// validate them, so this panics) and returns the element counts of
    /// `(q, kv, lse)`.
    pub(crate) fn sizes(&self, op: &'static str) -> Result<(usize, usize, usize), KernelError> {
        assert!(
            self.hkv > 0 && self.hq.is_multiple_of(self.hkv),
            "{op}: Hq = {} is not a multiple of Hkv = {}",
            self.hq,
            self.hkv
        );
        assert!(self.tq <= self.tk, "{op}: Tq = {} exceeds Tk = {}", self.tq, self.tk);
        let q = numel(op, &[self.b, self.hq, self.tq, self.dh])?;
        let kv = numel(op, &[self.b, self.hkv, self.tk, self.dh])?;
        Ok((q, kv, self.b * self.hq * self.tq))
    }

    /// Multiply-adds of the forward pass (half the `Tq×Tk` pairs are masked).
    fn work(&self) -> usize {
        self.b
            .saturating_mul(self.hq)
            .saturating_mul(self.tq)
            .saturating_mul(self.tk)
            .saturating_mul(self.dh.max(1))
    }
}

/// `data` as a row-major matrix of `cols` columns.
fn row_major<T>(data: &[T], cols: usize) -> MatRef<'_, T> {
    MatRef { data, rs: cols, cs: 1 }
}

/// The transpose of [`row_major`]: one column per row of `data`.
fn transposed<T>(data: &[T], cols: usize) -> MatRef<'_, T> {
    MatRef { data, rs: 1, cs: cols }
}

/// One head's inputs: `q: [Tq, Dh]`, `k, v: [Tk, Dh]`.
#[derive(Clone, Copy)]
struct HeadIn<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    tq: usize,
    tk: usize,
    dh: usize,
    scale: T,
}

/// The default softmax scale, `1 / sqrt(Dh)`.
pub fn default_scale<T: Real>(dh: usize) -> T {
    T::from_f64_lossy(1.0 / (dh as f64).sqrt())
}

/// Causal attention forward.
///
/// ```text
/// q: [B, Hq, Tq, Dh]   k, v: [B, Hkv, Tk, Dh]
/// o: [B, Hq, Tq, Dh]   returned: softmax(scale · q kᵀ + causal mask) v
/// lse: [B, Hq, Tq]     returned: logsumexp of each masked score row, for backward
/// ```
/// The tile products (`q kᵀ` and `p v`) read their operands at `precision`
/// (bf16: as the GPU's tensor-core attention rounds them, with f32 softmax
/// statistics and probabilities). `o` is a new vector written once (no
/// zeroing pass). Errors if an input's length does not match
/// `dims`; panics if `Hq % Hkv != 0` or `Tq > Tk` (callers validate the
/// configuration).
pub fn attention_forward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    dims: AttnDims,
    scale: T,
    precision: ProductPrecision,
) -> Result<(Vec<T>, Vec<T>), KernelError> {
    let (nq, nkv, nl) = dims.sizes(FORWARD)?;
    check_len(FORWARD, "q", nq, q.len())?;
    check_len(FORWARD, "k", nkv, k.len())?;
    check_len(FORWARD, "v", nkv, v.len())?;
    let mut lse = vec![T::zero(); nl];
    let o = written_once(nq, |o| forward_into(o, &mut lse, [q, k, v], dims, scale, precision));
    Ok((o, lse))
}

/// The op name forward's errors carry.
const FORWARD: &str = "attention";

/// Writes every slot of `o` and every `lse` from `[q, k, v]` (lengths checked).
fn forward_into<T: Real>(
    o: &mut [MaybeUninit<T>],
    lse: &mut [T],
    [q, k, v]: [&[T]; 3],
    dims: AttnDims,
    scale: T,
    precision: ProductPrecision,
) {
    let AttnDims {
        hq, hkv, tq, tk, dh, ..
    } = dims;
    if lse.is_empty() {
        return;
    }
    let g = dims.group();
    let kern = PanelKernel::<T>::new(precision);
    let head = |tiles: &mut ForwardTiles<T>, (bh, (oh, lh)): (usize, (&mut [MaybeUninit<T>], &mut [T]))| {
        let (b, h) = (bh / hq, bh % hq);
        let kv0 = (b * hkv + h / g) * tk * dh;
        let input = HeadIn {
            q: &q[bh * tq * dh..(bh + 1) * tq * dh],
            k: &k[kv0..kv0 + tk * dh],
            v: &v[kv0..kv0 + tk * dh],
            tq,
            tk,
            dh,
            scale,
        };
        forward_head(oh, lh, &input, &kern, tiles);
    };
    if dh == 0 {
        // Empty heads: every visible score is 0, so lse = ln(#visible keys).
        for (i, l) in lse.iter_mut().enumerate() {
            *l = T::from_f64_lossy((((i % tq) + tk - tq + 1) as f64).ln());
        }
        return;
    }
    if dims.work() >= PAR_MIN_WORK && dims.b * hq > 1 {
        o.par_chunks_mut(tq * dh)
            .zip(lse.par_chunks_mut(tq))
            .enumerate()
            .for_each(|item| with_spare(|tiles| head(tiles, item)));
    } else {
        with_spare(|tiles| {
            o.chunks_mut(tq * dh)
                .zip(lse.chunks_mut(tq))
                .enumerate()
                .for_each(|item| head(tiles, item))
        });
    }
}

/// Runs `f` on this thread's spare task buffers of type `S` (new ones the
/// first time): reused from call to call, so that a task does not fault in
/// fresh pages for its packed operands and accumulators (a megabyte at
/// T 1024 backward), which glibc would otherwise map and unmap per call.
fn with_spare<S: Default + 'static, R>(f: impl FnOnce(&mut S) -> R) -> R {
    thread_local! {
        static SPARE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
    }
    let taken = SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        let at = spare.iter().position(|b| b.is::<S>());
        at.map(|i| spare.swap_remove(i))
    });
    let mut buffers: Box<S> = taken.and_then(|b| b.downcast().ok()).unwrap_or_default();
    let out = f(&mut buffers);
    SPARE.with(|spare| spare.borrow_mut().push(buffers));
    out
}
