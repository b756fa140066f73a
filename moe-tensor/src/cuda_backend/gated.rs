//! Gated activations `act(gate) · up` on CUDA, forward and backward, f32 and
//! f64 (kernels: elementwise.cu): over two views of one shape
//! (`Tensor::gated`) or over one packed `[.., 2F]` buffer holding each row's
//! gate values then its up values (`Tensor::gated_packed`).

use super::device::cuda_err;
use super::elementwise::unary_code;
use super::launch::{config, float_kernel, int, long, strided};
use super::memory::{cuda_of, elems, CudaStorage};
use crate::storage::Storage;
use crate::{Result, Tensor, UnaryOp};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use moe_kernels::cuda::launch::elementwise as ew;
use moe_kernels::cuda::ELEMENTWISE;

const OP: &str = "gated_act";
const PACKED: &str = "gated_packed";

/// `act(gate) · up`, row-major, for `gate` and `up` of one shape and float
/// dtype in any layouts.
pub(crate) fn gated(gate: &Tensor, up: &Tensor, act: UnaryOp) -> Result<Storage> {
    float_kernel!(gate.dtype(), OP, gated_typed(gate, up, act))
}

fn gated_typed<T: DeviceRepr>(suffix: &str, gate: &Tensor, up: &Tensor, act: UnaryOp) -> Result<Storage> {
    let (code, p0, p1) = unary_code(act);
    let n = gate.elem_count();
    let (gs, us) = (gate.read_storage(), up.read_storage());
    let (gc, uc) = (cuda_of(&gs, OP)?, cuda_of(&us, OP)?);
    let dev = gc.dev().clone();
    let mut y = CudaStorage::alloc(&dev, gate.dtype(), n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, &format!("gated_fwd_{suffix}"))?;
        let (nn, sg, su) = (long(n, OP)?, strided(gate.layout(), OP)?, strided(up.layout(), OP)?);
        let (gv, uv) = (gc.view::<T>(0..gc.len(), OP)?, uc.view::<T>(0..uc.len(), OP)?);
        let mut yv = y.view_mut::<T>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn)
            .arg(&code)
            .arg(&p0)
            .arg(&p1)
            .arg(&sg)
            .arg(&gv)
            .arg(&su)
            .arg(&uv)
            .arg(&mut yv);
        // SAFETY: gated_fwd_T(long long n, int op, double p0, double p1,
        // Strided sg, const T* gate, Strided su, const T* up, T* y): both
        // views lie inside their buffers, y holds n elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(y))
}

/// `(dgate, dup)`, row-major, from the output gradient `g` and the inputs
/// (all of one shape and dtype, any layouts).
pub(crate) fn gated_backward(g: &Tensor, gate: &Tensor, up: &Tensor, act: UnaryOp) -> Result<(Storage, Storage)> {
    float_kernel!(gate.dtype(), OP, gated_backward_typed(g, gate, up, act))
}

fn gated_backward_typed<T: DeviceRepr>(
    suffix: &str,
    g: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    act: UnaryOp,
) -> Result<(Storage, Storage)> {
    let (code, p0, p1) = unary_code(act);
    let n = gate.elem_count();
    let (ds, gs, us) = (g.read_storage(), gate.read_storage(), up.read_storage());
    let (dc, gc, uc) = (cuda_of(&ds, OP)?, cuda_of(&gs, OP)?, cuda_of(&us, OP)?);
    let dev = gc.dev().clone();
    let mut dgate = CudaStorage::alloc(&dev, gate.dtype(), n, OP)?;
    let mut dup = CudaStorage::alloc(&dev, gate.dtype(), n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, &format!("gated_bwd_{suffix}"))?;
        let nn = long(n, OP)?;
        let (sd, sg, su) = (
            strided(g.layout(), OP)?,
            strided(gate.layout(), OP)?,
            strided(up.layout(), OP)?,
        );
        let (dv, gv, uv) = (
            dc.view::<T>(0..dc.len(), OP)?,
            gc.view::<T>(0..gc.len(), OP)?,
            uc.view::<T>(0..uc.len(), OP)?,
        );
        let (mut dgv, mut duv) = (dgate.view_mut::<T>(OP)?, dup.view_mut::<T>(OP)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn)
            .arg(&code)
            .arg(&p0)
            .arg(&p1)
            .arg(&sd)
            .arg(&dv)
            .arg(&sg)
            .arg(&gv)
            .arg(&su)
            .arg(&uv)
            .arg(&mut dgv)
            .arg(&mut duv);
        // SAFETY: gated_bwd_T(long long n, int op, double p0, double p1,
        // Strided sd, const T* dy, Strided sg, const T* gate, Strided su,
        // const T* up, T* dgate, T* dup): the views lie inside their buffers,
        // dgate and dup hold n elements each.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok((Storage::Cuda(dgate), Storage::Cuda(dup)))
}

/// `act(gate) · up` of a contiguous `h [.., 2F]` (gate then up in each row),
/// as a row-major `[.., F]` storage.
pub(crate) fn gated_packed(h: &Tensor, act: UnaryOp) -> Result<Storage> {
    float_kernel!(h.dtype(), PACKED, gated_packed_typed(h, act))
}

fn gated_packed_typed<T: DeviceRepr>(suffix: &str, h: &Tensor, act: UnaryOp) -> Result<Storage> {
    let (code, p0, p1) = unary_code(act);
    let f = h.dims().last().copied().unwrap_or(0) / 2;
    let n = h.elem_count() / 2;
    let guard = h.read_storage();
    let hc = cuda_of(&guard, PACKED)?;
    let dev = hc.dev().clone();
    let mut y = CudaStorage::alloc(&dev, h.dtype(), n, PACKED)?;
    if let Some(l) = ew(n) {
        let k = dev.function(&ELEMENTWISE, &format!("gated_packed_fwd_{suffix}"))?;
        let (nn, ff) = (long(n, PACKED)?, int(f, PACKED, "half width")?);
        let hv = elems::<T>(hc, h, PACKED)?;
        let mut yv = y.view_mut::<T>(PACKED)?;
        let mut b = dev.stream.launch_builder(&k);
        b.arg(&nn).arg(&ff).arg(&code).arg(&p0).arg(&p1).arg(&hv).arg(&mut yv);
        // SAFETY: gated_packed_fwd_T(long long n, int f, int op, double p0,
        // double p1, const T* h, T* y): h holds 2n elements, y n.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(PACKED))?;
    }
    Ok(Storage::Cuda(y))
}

/// The `[.., 2F]` gradient of [`gated_packed`] from a contiguous output
/// gradient `g [.., F]` and the contiguous input `h`, written in one pass.
pub(crate) fn gated_packed_backward(g: &Tensor, h: &Tensor, act: UnaryOp) -> Result<Storage> {
    float_kernel!(h.dtype(), PACKED, gated_packed_backward_typed(g, h, act))
}

fn gated_packed_backward_typed<T: DeviceRepr>(suffix: &str, g: &Tensor, h: &Tensor, act: UnaryOp) -> Result<Storage> {
    let (code, p0, p1) = unary_code(act);
    let f = h.dims().last().copied().unwrap_or(0) / 2;
    let n = h.elem_count() / 2;
    let (gs, hs) = (g.read_storage(), h.read_storage());
    let (gc, hc) = (cuda_of(&gs, PACKED)?, cuda_of(&hs, PACKED)?);
    let dev = hc.dev().clone();
    let mut dh = CudaStorage::alloc(&dev, h.dtype(), h.elem_count(), PACKED)?;
    if let Some(l) = ew(n) {
        let k = dev.function(&ELEMENTWISE, &format!("gated_packed_bwd_{suffix}"))?;
        let (nn, ff) = (long(n, PACKED)?, int(f, PACKED, "half width")?);
        let (gv, hv) = (elems::<T>(gc, g, PACKED)?, elems::<T>(hc, h, PACKED)?);
        let mut dv = dh.view_mut::<T>(PACKED)?;
        let mut b = dev.stream.launch_builder(&k);
        b.arg(&nn)
            .arg(&ff)
            .arg(&code)
            .arg(&p0)
            .arg(&p1)
            .arg(&gv)
            .arg(&hv)
            .arg(&mut dv);
        // SAFETY: gated_packed_bwd_T(long long n, int f, int op, double p0,
        // double p1, const T* dy, const T* h, T* dh): dy holds n elements, h
        // and dh 2n; every element of dh is written.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(PACKED))?;
    }
    Ok(Storage::Cuda(dh))
}
