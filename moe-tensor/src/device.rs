//! Where a tensor's storage lives.

/// A compute device. Only the CPU exists in this build; `Cuda` is reserved for
/// the cudarc backend and every op returns `DeviceUnavailable` for it until then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl Device {
    /// Whether this is the CPU.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}
