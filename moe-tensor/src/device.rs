//! Where a tensor's storage lives.

use std::fmt;
use std::str::FromStr;

/// A compute device: the CPU, or a CUDA device by ordinal (usable in a build
/// with the `cuda` feature on a machine with that GPU; elsewhere every
/// allocation on it is `DeviceUnavailable`).
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

    /// Succeeds when tensors can be made on this device here; otherwise the
    /// `DeviceUnavailable` error says why (a build without the `cuda`
    /// feature, no driver, no such GPU). Starts the CUDA device on success.
    pub fn ensure_available(&self) -> crate::Result<()> {
        crate::storage::check_device(self)
    }
}

/// `cpu` or `cuda:N`, the form [`Device::from_str`] reads.
impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A device name that is not `cpu`, `cuda` or `cuda:N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected cpu, cuda or cuda:N, got {0:?}")]
pub struct ParseDeviceError(pub String);

/// Reads `cpu`, `cuda` (device 0) or `cuda:N`.
impl FromStr for Device {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| ParseDeviceError(s.to_string())),
        }
    }
}

/// As its name (`"cpu"`, `"cuda:0"`), for config files.
impl serde::Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (s, d) in [
            ("cpu", Device::Cpu),
            ("cuda", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ] {
            assert_eq!(s.parse::<Device>().unwrap(), d);
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        assert_eq!(Device::Cpu.to_string().parse::<Device>().unwrap(), Device::Cpu);
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", ""] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(e.to_string().contains("cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn serde_uses_the_name() {
        assert_eq!(serde_json::to_string(&Device::Cuda(1)).unwrap(), "\"cuda:1\"");
        assert_eq!(serde_json::from_str::<Device>("\"cpu\"").unwrap(), Device::Cpu);
        let e = serde_json::from_str::<Device>("\"tpu\"").unwrap_err();
        assert!(e.to_string().contains("expected cpu, cuda or cuda:N"), "{e}");
    }

    #[test]
    fn the_cpu_is_always_available() {
        Device::Cpu.ensure_available().unwrap();
    }
}
