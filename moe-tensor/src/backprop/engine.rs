//! The backward pass over a recorded graph.

use super::NoGradGuard;
use crate::tensor::TensorId;
use crate::{Error, Result, Tensor};
use std::collections::{HashMap, HashSet};

/// Nodes reachable from `root` through tensors that require grad, inputs before
/// the tensors made from them (post-order, computed with an explicit stack).
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited: HashSet<TensorId> = HashSet::new();
    // (node, children already pushed?)
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.push(node);
            continue;
        }
        if !visited.insert(node.id()) {
            continue;
        }
        let op = node.0.grad_fn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        stack.push((node, true));
        if let Some(op) = op {
            for input in op.inputs() {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// Names of the ops recorded in the graph that produced `root` (for coverage tests).
pub fn op_names(root: &Tensor) -> std::collections::BTreeSet<&'static str> {
    topo_order(root)
        .iter()
        .filter_map(|t| {
            t.0.grad_fn
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|op| op.name())
        })
        .collect()
}

fn accumulate(grads: &mut HashMap<TensorId, Tensor>, id: TensorId, g: Tensor) -> Result<()> {
    let merged = match grads.remove(&id) {
        Some(prev) => prev.add(&g)?,
        None => g,
    };
    grads.insert(id, merged);
    Ok(())
}

impl Tensor {
    /// Backpropagates from a one-element tensor (seed gradient 1).
    pub fn backward(&self) -> Result<()> {
        if self.elem_count() != 1 {
            return Err(Error::BackwardNonScalar {
                shape: self.shape().clone(),
            });
        }
        let seed = self.ones_like()?;
        self.backward_with(&seed)
    }

    /// Backpropagates `grad` (same shape, dtype and device as `self`) through the graph.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if !self.requires_grad() {
            return Err(Error::BackwardNoGrad);
        }
        if grad.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "backward",
                lhs: self.shape().clone(),
                rhs: grad.shape().clone(),
            });
        }
        if grad.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: "backward",
                lhs: self.dtype(),
                rhs: grad.dtype(),
            });
        }
        let _no_grad = NoGradGuard::new();
        let order = topo_order(self);
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(self.id(), grad.detach());
        for node in order.iter().rev() {
            let Some(g) = grads.remove(&node.id()) else { continue };
            if node.is_leaf() {
                let mut slot = node.0.grad.lock().unwrap_or_else(|e| e.into_inner());
                *slot = Some(match slot.take() {
                    Some(prev) => prev.add(&g)?,
                    None => g,
                });
                continue;
            }
            // Taking the op frees this node's part of the graph.
            let op = node.0.grad_fn.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(op) = op else {
                return Err(Error::Autograd {
                    msg: "the graph was already freed by an earlier backward through this tensor".into(),
                });
            };
            let input_grads = crate::profile::time_backward(op.name(), || op.backward(&g))?;
            let inputs = op.inputs();
            if input_grads.len() != inputs.len() {
                return Err(Error::Autograd {
                    msg: format!(
                        "{} returned {} gradients for {} inputs",
                        op.name(),
                        input_grads.len(),
                        inputs.len()
                    ),
                });
            }
            for (input, ig) in inputs.into_iter().zip(input_grads) {
                let Some(ig) = ig else { continue };
                if !input.requires_grad() {
                    continue;
                }
                if ig.shape() != input.shape() {
                    return Err(Error::Autograd {
                        msg: format!(
                            "{} produced a gradient of shape {:?} for an input of shape {:?}",
                            op.name(),
                            ig.shape(),
                            input.shape()
                        ),
                    });
                }
                accumulate(&mut grads, input.id(), ig)?;
            }
        }
        Ok(())
    }
}
