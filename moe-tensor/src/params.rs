//! Named parameters: the ordered set of leaf tensors a model trains.

use crate::{Error, Result, Tensor};
use std::collections::HashMap;

/// An ordered map from parameter name to a leaf tensor that requires grad.
#[derive(Clone, Default, Debug)]
pub struct Params {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `value` under `name` as a parameter and returns the parameter tensor.
    pub fn insert(&mut self, name: impl Into<String>, value: &Tensor) -> Result<Tensor> {
        let name = name.into();
        if self.index.contains_key(&name) {
            return Err(Error::Autograd {
                msg: format!("parameter {name:?} registered twice"),
            });
        }
        let p = if value.is_leaf() && value.requires_grad() {
            value.clone()
        } else {
            value.detach().to_param()
        };
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, p.clone()));
        Ok(p)
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    /// Parameters in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.entries.iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        self.entries.iter().for_each(|(_, t)| t.zero_grad());
    }
}
