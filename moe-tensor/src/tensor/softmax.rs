//! `softmax` and `log_softmax` over any dim, through the fused row kernels of
//! moe-kernels. A dim other than the last is moved last with a transposed
//! copy and the result is transposed back (a view), so the kernels only ever
//! see contiguous `[N, C]` rows. Backward uses the saved output only.

use super::fused_util::{check_float, elems, float_call, plain, Float};
use super::index::kernel_err;
use crate::backprop::BackwardOp;
use crate::storage::Storage;
use crate::{Result, Tensor};
use moe_kernels::cpu::softmax as kernels;

/// Backward of softmax / log_softmax over the last dim of a contiguous input.
struct SoftmaxBackward {
    x: Tensor,
    /// The saved output (shares storage with the result).
    y: Tensor,
    log: bool,
}

fn op_name(log: bool) -> &'static str {
    if log {
        "log_softmax"
    } else {
        "softmax"
    }
}

/// `[N, C]` view of a tensor's dims with C the last dim.
fn rows(x: &Tensor) -> (usize, usize) {
    let dims = x.dims();
    let c = dims.last().copied().unwrap_or(1);
    (dims[..dims.len().saturating_sub(1)].iter().product(), c)
}

impl BackwardOp for SoftmaxBackward {
    fn name(&self) -> &'static str {
        op_name(self.log)
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = g.contiguous()?;
        if !g.device().is_cpu() {
            let dx = crate::cuda_backend::softmax_backward(&self.y, &g, self.log)?;
            return Ok(vec![Some(Tensor::from_storage(dx, self.y.shape().clone()))]);
        }
        let dx = float_call!(self.y.dtype(), self.name(), backward(&self.y, &g, self.log))?;
        Ok(vec![Some(dx)])
    }
}

fn backward<T: Float>(y: &Tensor, g: &Tensor, log: bool) -> Result<Tensor> {
    let op = op_name(log);
    let (n, c) = rows(y);
    let (ys, gs) = (y.read_storage(), g.read_storage());
    let (yv, gv) = (elems::<T>(&ys, y, op)?, elems::<T>(&gs, g, op)?);
    let mut dx = vec![T::zero(); yv.len()];
    if log {
        kernels::log_softmax_backward(&mut dx, gv, yv, n, c).map_err(kernel_err(op))?;
    } else {
        kernels::softmax_backward(&mut dx, gv, yv, n, c).map_err(kernel_err(op))?;
    }
    Ok(plain(dx, y.shape()))
}

/// Forward over the last dim of a contiguous `x`.
fn forward_last<T: Float>(x: &Tensor, log: bool) -> Result<Tensor> {
    let op = op_name(log);
    let (n, c) = rows(x);
    let out = {
        let xs = x.read_storage();
        let xv = elems::<T>(&xs, x, op)?;
        let mut y = vec![T::zero(); xv.len()];
        if log {
            kernels::log_softmax_forward(&mut y, xv, n, c).map_err(kernel_err(op))?;
        } else {
            kernels::softmax_forward(&mut y, xv, n, c).map_err(kernel_err(op))?;
        }
        y
    };
    let xc = x.clone();
    Ok(Tensor::from_op_saving_output(
        Storage::Cpu(T::into_storage(out)),
        x.shape().clone(),
        |y| SoftmaxBackward { x: xc, y, log },
    ))
}

impl Tensor {
    /// Softmax along `dim` (negative counts from the end), numerically stable
    /// (max-subtracted), like `torch.softmax`. f32/f64.
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        self.softmax_any(dim, false)
    }

    /// Log-softmax along `dim`, like `torch.log_softmax`. f32/f64.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        self.softmax_any(dim, true)
    }

    fn softmax_any(&self, dim: isize, log: bool) -> Result<Tensor> {
        let op = op_name(log);
        check_float(op, self)?;
        let d = self.shape().resolve_dim(dim, op)?;
        let last = self.rank() - 1;
        let fwd = |x: &Tensor| -> Result<Tensor> {
            if x.device().is_cpu() {
                return float_call!(x.dtype(), op, forward_last(x, log));
            }
            let out = crate::cuda_backend::softmax(x, log)?;
            let xc = x.clone();
            Ok(Tensor::from_op_saving_output(out, x.shape().clone(), |y| {
                SoftmaxBackward { x: xc, y, log }
            }))
        };
        if d == last {
            let x = self.contiguous()?;
            return fwd(&x);
        }
        let (a, b) = (d as isize, last as isize);
        let x = self.transpose(a, b)?.contiguous()?;
        let y = fwd(&x)?;
        y.transpose(a, b)
    }
}
