//! Whole CUDA ops with their own backward records, for ops whose CPU record
//! keeps host data (targets, ids) that stays on the device here: fused
//! cross-entropy, embedding and top-k.

use super::fused::{cross_entropy, cross_entropy_backward, CrossEntropySaved};
use super::index::{embedding, embedding_backward, topk, topk_backward};
use super::memory::{download, host_contiguous, upload};
use crate::backprop::BackwardOp;
use crate::storage::Storage;
use crate::{DType, Device, Error, Result, Shape, Tensor};

struct ToDeviceBackward {
    x: Tensor,
}

impl BackwardOp for ToDeviceBackward {
    fn name(&self) -> &'static str {
        "to_device"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.to_device(&self.x.device())?)])
    }
}

/// `t` copied to another device (CPU ↔ CUDA, or CUDA ↔ CUDA through the
/// host), contiguous; float tensors record the move so the gradient moves
/// back.
pub(crate) fn to_device(t: &Tensor, device: &Device) -> Result<Tensor> {
    let host = if t.device().is_cpu() {
        host_contiguous(t)?
    } else {
        download(t)?
    };
    let s = match device {
        Device::Cpu => Storage::Cpu(host),
        Device::Cuda(ordinal) => upload(&host, *ordinal)?,
    };
    let back = ToDeviceBackward { x: t.clone() };
    Ok(if t.dtype().is_float() {
        Tensor::from_op(s, t.shape().clone(), back)
    } else {
        Tensor::from_storage(s, t.shape().clone())
    })
}

/// Errors unless `ids` is an i64 tensor on `x`'s device.
fn check_ids(op: &'static str, x: &Tensor, ids: &Tensor) -> Result<()> {
    if ids.dtype() != DType::I64 {
        return Err(Error::DTypeMismatch {
            op,
            lhs: ids.dtype(),
            rhs: DType::I64,
        });
    }
    if ids.device() != x.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: x.device(),
            rhs: ids.device(),
        });
    }
    Ok(())
}

struct CrossEntropyBackward {
    logits: Tensor,
    targets: Tensor,
    saved: CrossEntropySaved,
    ignore: i64,
    mean: bool,
}

impl BackwardOp for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.logits]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dx = cross_entropy_backward(&self.logits, &self.targets, &self.saved, g, self.ignore, self.mean)?;
        Ok(vec![Some(Tensor::from_storage(dx, self.logits.shape().clone()))])
    }
}

/// Cross-entropy of contiguous f32 `logits [.., V]` and i64 `targets [..]`
/// on one CUDA device, recorded for backward; the loss is a rank-0 tensor on
/// the device (the targets never leave it; a bad target is reported after
/// one 4-byte read back).
pub(crate) fn cross_entropy_op(logits: &Tensor, targets: &Tensor, ignore: i64, mean: bool) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    check_ids(OP, logits, targets)?;
    let (loss, saved) = cross_entropy(logits, targets, ignore, mean)?;
    let back = CrossEntropyBackward {
        logits: logits.clone(),
        targets: targets.contiguous()?,
        saved,
        ignore,
        mean,
    };
    Ok(Tensor::from_op(loss, Shape::from(Vec::<usize>::new()), back))
}

struct EmbeddingBackward {
    weight: Tensor,
    ids: Tensor,
}

impl BackwardOp for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.weight]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (v, d) = (self.weight.dims()[0], self.weight.dims()[1]);
        let g = g.contiguous()?;
        let dw = embedding_backward(&self.ids, &g, v, d)?;
        Ok(vec![Some(Tensor::from_storage(dw, self.weight.shape().clone()))])
    }
}

/// Rows `ids` of `weight [V, D]` (f32, CUDA), shape `ids.dims() + [D]`,
/// recorded for backward.
pub(crate) fn embedding_op(weight: &Tensor, ids: &Tensor) -> Result<Tensor> {
    const OP: &str = "embedding";
    check_ids(OP, weight, ids)?;
    let w = weight.contiguous()?;
    let out = embedding(&w, ids)?;
    let mut dims = ids.dims().to_vec();
    dims.push(weight.dims()[1]);
    let back = EmbeddingBackward {
        weight: weight.clone(),
        ids: ids.contiguous()?,
    };
    Ok(Tensor::from_op(out, Shape::from(dims), back))
}

struct TopkBackward {
    x: Tensor,
    /// `[.., k]` i64 on the device.
    indices: Tensor,
}

impl BackwardOp for TopkBackward {
    fn name(&self) -> &'static str {
        "topk"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let n = self.x.dims().last().copied().unwrap_or(1);
        let k = self.indices.dims().last().copied().unwrap_or(0);
        let rows = self.x.elem_count().checked_div(n).unwrap_or(0);
        let g = g.contiguous()?;
        let dx = topk_backward(&g, &self.indices, rows, n, k)?;
        Ok(vec![Some(Tensor::from_storage(dx, self.x.shape().clone()))])
    }
}

/// Top-k along the last dim of f32 `x` on CUDA (`k` ≤ last dim, checked by
/// the caller): values (recorded for backward) and i64 indices, both on the
/// device — the routing decision never leaves it.
pub(crate) fn topk_op(x: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let n = x.dims().last().copied().unwrap_or(1);
    let rows = x.elem_count().checked_div(n).unwrap_or(0);
    let xc = x.contiguous()?;
    let (vals, idx) = topk(&xc, rows, n, k)?;
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = k;
    }
    let shape = Shape::from(dims);
    let indices = Tensor::from_storage(idx, shape.clone());
    let back = TopkBackward {
        x: x.clone(),
        indices: indices.clone(),
    };
    Ok((Tensor::from_op(vals, shape, back), indices))
}
