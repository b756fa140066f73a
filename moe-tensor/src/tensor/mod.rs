//! The `Tensor` type: a shared storage, a layout, and the autograd record.
//!
//! Op families live in sibling files (`unary.rs`, `binary.rs`, `reduce.rs`, ...);
//! each defines its forward as `impl Tensor` methods and its backward as a
//! [`BackwardOp`](crate::backprop::BackwardOp) next to it.

mod attention;
mod binary;
mod compare;
mod concat;
mod constructors;
mod convert;
mod cross_entropy;
mod cumsum;
mod dispatch_plan;
mod dispatch_rows;
mod embedding;
mod expert_combine;
mod fused_util;
mod gated;
mod gated_packed;
mod grouped_matmul;
mod in_place;
mod index;
mod linear_cross_entropy;
mod matmul;
mod reduce;
mod rms_norm;
mod rope;
mod segments;
mod sinkhorn;
mod softmax;
mod topk;
mod unary;
mod view;
mod where_cond;

pub use cross_entropy::{Reduction, DEFAULT_IGNORE_INDEX};
pub use dispatch_plan::{CopyLimit, DispatchPlan};
/// Kernel errors as tensor errors, for the CUDA backend's host-side checks.
#[cfg(feature = "cuda")]
pub(crate) use index::{dims3, kernel_err};
pub use rope::Rope;
pub use segments::Segments;
pub use unary::UnaryOp;

use crate::backprop::{self, BackwardOp};
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Device, Layout, Result, Shape};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A unique id per tensor node (views get their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

pub(crate) struct TensorImpl {
    pub(crate) id: TensorId,
    pub(crate) storage: Arc<RwLock<Storage>>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    pub(crate) requires_grad: bool,
    /// True for tensors not produced by a recorded op (data and parameters).
    pub(crate) is_leaf: bool,
    /// The op that produced this tensor; taken (freed) by backward.
    pub(crate) grad_fn: Mutex<Option<Arc<dyn BackwardOp>>>,
    /// Accumulated gradient of a leaf that requires grad.
    pub(crate) grad: Mutex<Option<Tensor>>,
}

thread_local! {
    static DROP_QUEUE: std::cell::RefCell<Vec<Arc<dyn BackwardOp>>> = const { std::cell::RefCell::new(Vec::new()) };
    static DRAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Drop for TensorImpl {
    /// Dropping the last handle of a long chain would recurse once per node
    /// (tensor → op → input tensor → ...) and overflow the stack; instead, ops
    /// are queued and released by a loop in the outermost drop.
    fn drop(&mut self) {
        let Some(op) = self.grad_fn.get_mut().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        DROP_QUEUE.with(|q| q.borrow_mut().push(op));
        if DRAINING.with(|d| d.replace(true)) {
            return;
        }
        while let Some(op) = DROP_QUEUE.with(|q| q.borrow_mut().pop()) {
            drop(op);
        }
        DRAINING.with(|d| d.set(false));
    }
}

/// An n-dimensional array with reverse-mode autograd. Cloning is cheap (a
/// reference count); views share storage with the tensor they come from.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorImpl>);

impl Tensor {
    /// A fresh leaf tensor owning `storage` with a contiguous `shape`.
    pub(crate) fn from_storage(storage: Storage, shape: Shape) -> Tensor {
        Self::build(Arc::new(RwLock::new(storage)), Layout::contiguous(shape), None, false)
    }

    fn build(
        storage: Arc<RwLock<Storage>>,
        layout: Layout,
        op: Option<Arc<dyn BackwardOp>>,
        leaf_requires_grad: bool,
    ) -> Tensor {
        crate::host_alloc::tune_once();
        let (dtype, device) = {
            let s = storage.read().unwrap_or_else(|e| e.into_inner());
            (s.dtype(), s.device())
        };
        let requires_grad = op.is_some() || leaf_requires_grad;
        Tensor(Arc::new(TensorImpl {
            id: TensorId::new(),
            storage,
            layout,
            dtype,
            device,
            requires_grad,
            is_leaf: op.is_none(),
            grad_fn: Mutex::new(op),
            grad: Mutex::new(None),
        }))
    }

    /// The result of an op: new storage, recorded for backward when grad mode is on
    /// and some input of `op` requires grad.
    pub(crate) fn from_op(storage: Storage, shape: Shape, op: impl BackwardOp + 'static) -> Tensor {
        let op = backprop::record(op);
        Self::build(Arc::new(RwLock::new(storage)), Layout::contiguous(shape), op, false)
    }

    /// Like [`Tensor::from_op`] for ops whose backward needs their own output:
    /// `make_op` receives a detached tensor sharing the output's storage (no copy).
    pub(crate) fn from_op_saving_output<O: BackwardOp + 'static>(
        storage: Storage,
        shape: Shape,
        make_op: impl FnOnce(Tensor) -> O,
    ) -> Tensor {
        let storage = Arc::new(RwLock::new(storage));
        let y = Self::build(storage.clone(), Layout::contiguous(shape.clone()), None, false);
        let op = backprop::record(make_op(y));
        Self::build(storage, Layout::contiguous(shape), op, false)
    }

    /// A view of `self`'s storage with another layout, recorded like [`Tensor::from_op`].
    pub(crate) fn view_op(&self, layout: Layout, op: impl BackwardOp + 'static) -> Tensor {
        let op = backprop::record(op);
        Self::build(self.0.storage.clone(), layout, op, false)
    }

    /// A result that is never differentiated (indices, masks, comparisons).
    pub(crate) fn from_cpu_no_grad(storage: CpuStorage, shape: Shape) -> Tensor {
        Self::from_storage(Storage::Cpu(storage), shape)
    }

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &Shape {
        self.0.layout.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.0.layout.dims()
    }
    pub fn rank(&self) -> usize {
        self.dims().len()
    }
    pub fn elem_count(&self) -> usize {
        self.shape().elem_count()
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> Device {
        self.0.device
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// Size of one dim (negative counts from the end).
    pub fn dim(&self, dim: isize) -> Result<usize> {
        Ok(self.dims()[self.shape().resolve_dim(dim, "dim")?])
    }

    /// Whether gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// Whether this tensor was not produced by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.is_leaf
    }

    /// A leaf that shares this tensor's data and accumulates gradients: a parameter.
    pub fn to_param(&self) -> Tensor {
        Self::build(self.0.storage.clone(), self.0.layout.clone(), None, true)
    }

    /// A leaf sharing the data, cut off from the graph.
    pub fn detach(&self) -> Tensor {
        Self::build(self.0.storage.clone(), self.0.layout.clone(), None, false)
    }

    /// The accumulated gradient of a parameter, if backward has reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the accumulated gradient (optimisers, gradient clipping, tests).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad;
    }

    pub(crate) fn read_storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_storage(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Overwrites this tensor's elements with `src`'s, in place (optimiser updates,
    /// loading weights). `self` must be contiguous; no graph is recorded.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        use crate::Error;
        if src.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "assign",
                lhs: self.shape().clone(),
                rhs: src.shape().clone(),
            });
        }
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: "assign",
                lhs: self.dtype(),
                rhs: src.dtype(),
            });
        }
        let range = self.layout().contiguous_range().ok_or_else(|| Error::InvalidShape {
            op: "assign",
            msg: "destination must be contiguous".into(),
        })?;
        if !self.device().is_cpu() {
            return crate::cuda_backend::assign(self, range, src);
        }
        let data = convert::contiguous_storage(src)?;
        let mut guard = self.write_storage();
        match (guard.cpu_mut("assign")?, &data) {
            (CpuStorage::U8(d), CpuStorage::U8(s)) => d[range].copy_from_slice(s),
            (CpuStorage::I64(d), CpuStorage::I64(s)) => d[range].copy_from_slice(s),
            (CpuStorage::F16(d), CpuStorage::F16(s)) => d[range].copy_from_slice(s),
            (CpuStorage::BF16(d), CpuStorage::BF16(s)) => d[range].copy_from_slice(s),
            (CpuStorage::F32(d), CpuStorage::F32(s)) => d[range].copy_from_slice(s),
            (CpuStorage::F64(d), CpuStorage::F64(s)) => d[range].copy_from_slice(s),
            _ => unreachable!("dtypes were checked equal above"),
        }
        Ok(())
    }

    /// Whether two tensors share the same storage buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// The strided description of this tensor for moe-kernels.
    pub(crate) fn strided(&self) -> moe_kernels::cpu::strided::Strided<'_> {
        moe_kernels::cpu::strided::Strided {
            dims: self.dims(),
            strides: self.layout().strides(),
            offset: self.layout().offset(),
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor[{:?}, {:?}, {:?}", self.dims(), self.dtype(), self.device())?;
        if self.requires_grad() {
            write!(f, ", requires_grad")?;
        }
        if let Ok(v) = self.to_vec_f64() {
            let head: Vec<_> = v.iter().take(8).collect();
            write!(f, ", {head:?}{}", if v.len() > 8 { "…" } else { "" })?;
        }
        write!(f, "]")
    }
}
