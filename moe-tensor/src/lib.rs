//! moe-tensor: tensors, views and reverse-mode autograd (being built).
