//! One context per CUDA device, made on first use and kept for the process:
//! a single non-default stream every op of the device is queued on (so the
//! host never waits except to read data back), a lazily made cuBLAS handle on
//! that stream, the NVRTC module cache and the caching allocator's pool.

use crate::{Device, Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use moe_kernels::cuda::pool::{BucketPool, PoolStats};
use moe_kernels::cuda::KernelSource;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Most bytes of freed device buffers a device keeps for reuse.
const MAX_CACHED_BYTES: usize = 8 << 30;

/// A started CUDA device.
pub(crate) struct CudaDev {
    pub(crate) ordinal: usize,
    pub(crate) ctx: Arc<CudaContext>,
    /// The one stream every op of this device runs on, in order.
    pub(crate) stream: Arc<CudaStream>,
    blas: Mutex<Option<Arc<CudaBlas>>>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    pub(crate) pool: Mutex<BucketPool<CudaSlice<u8>>>,
}

impl std::fmt::Debug for CudaDev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDev({})", self.ordinal)
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Error::Cuda` for `op` from any driver/NVRTC/cuBLAS error.
pub(crate) fn cuda_err<E: std::fmt::Debug>(op: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Cuda {
        op,
        msg: format!("{e:?}"),
    }
}

fn unavailable(ordinal: usize, msg: impl Into<String>) -> Error {
    Error::DeviceUnavailable {
        device: Device::Cuda(ordinal),
        msg: msg.into(),
    }
}

fn registry() -> &'static Mutex<HashMap<usize, Arc<CudaDev>>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDev>>>> = OnceLock::new();
    DEVICES.get_or_init(Default::default)
}

/// Waits until every started device has finished the work queued on it.
pub(crate) fn synchronize_all() -> Result<()> {
    let devices: Vec<Arc<CudaDev>> = lock(registry()).values().cloned().collect();
    for d in devices {
        d.stream.synchronize().map_err(cuda_err("synchronize"))?;
    }
    Ok(())
}

impl CudaDev {
    /// The started device `ordinal`, starting it on first use. A failed start
    /// is not remembered (the next call tries again).
    pub(crate) fn get(ordinal: usize) -> Result<Arc<CudaDev>> {
        let mut devices = lock(registry());
        if let Some(d) = devices.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(CudaDev::start(ordinal)?);
        devices.insert(ordinal, d.clone());
        Ok(d)
    }

    fn start(ordinal: usize) -> Result<CudaDev> {
        // SAFETY: only tries to load the shared library; calling into a
        // library that is absent would panic inside cudarc instead.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable(ordinal, "the CUDA driver library (libcuda) was not found"));
        }
        let count =
            CudaContext::device_count().map_err(|e| unavailable(ordinal, format!("cuInit/device count: {e:?}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(unavailable(ordinal, format!("{count} CUDA device(s) present")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(ordinal, format!("context: {e:?}")))?;
        // SAFETY: every allocation, copy, kernel and cuBLAS call of this
        // context goes through `stream` (one per device), so stream order
        // alone orders all uses of every buffer; cudarc's per-buffer events
        // (a record per argument per launch) would only add overhead.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| unavailable(ordinal, format!("stream: {e:?}")))?;
        Ok(CudaDev {
            ordinal,
            ctx,
            stream,
            blas: Mutex::new(None),
            modules: Mutex::new(HashMap::new()),
            pool: Mutex::new(BucketPool::new(MAX_CACHED_BYTES)),
        })
    }

    /// The device as a [`Device`].
    pub(crate) fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    /// The cuBLAS handle of this device's stream, made on first use.
    pub(crate) fn blas(&self, op: &'static str) -> Result<Arc<CudaBlas>> {
        let mut slot = lock(&self.blas);
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        // SAFETY: as in `start`, only probes for the library.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(unavailable(
                self.ordinal,
                format!("{op}: the cuBLAS library was not found"),
            ));
        }
        let b = Arc::new(CudaBlas::new(self.stream.clone()).map_err(cuda_err(op))?);
        *slot = Some(b.clone());
        Ok(b)
    }

    /// Kernel `name` of `src`, compiling `src` with NVRTC for this device's
    /// architecture the first time any of its kernels is asked for.
    pub(crate) fn function(&self, src: &KernelSource, name: &str) -> Result<CudaFunction> {
        const OP: &str = "nvrtc";
        let module = {
            let mut modules = lock(&self.modules);
            match modules.get(src.name) {
                Some(m) => m.clone(),
                None => {
                    let m = self.compile(src)?;
                    modules.insert(src.name, m.clone());
                    m
                }
            }
        };
        module.load_function(name).map_err(|e| Error::Cuda {
            op: OP,
            msg: format!("{}.cu has no kernel {name}: {e:?}", src.name),
        })
    }

    fn compile(&self, src: &KernelSource) -> Result<Arc<CudaModule>> {
        const OP: &str = "nvrtc";
        // SAFETY: only probes for the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(unavailable(self.ordinal, "the NVRTC library (libnvrtc) was not found"));
        }
        let (major, minor) = self.ctx.compute_capability().map_err(cuda_err(OP))?;
        let arch = arch_name(major, minor)?;
        let opts = cudarc::nvrtc::CompileOptions {
            arch: Some(arch),
            name: Some(format!("{}.cu", src.name)),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(src.full_source(), opts).map_err(|e| Error::Cuda {
            op: OP,
            msg: format!("compiling {}.cu for {arch}: {e:?}", src.name),
        })?;
        self.ctx.load_module(ptx).map_err(cuda_err(OP))
    }
}

/// NVRTC's `--gpu-architecture` value for a compute capability (a `'static`
/// string, as cudarc's options want).
fn arch_name(major: i32, minor: i32) -> Result<&'static str> {
    Ok(match (major, minor) {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        _ if major >= 8 => "compute_80",
        _ => {
            return Err(Error::Cuda {
                op: "nvrtc",
                msg: format!("compute capability {major}.{minor} is older than 7.0 (bf16/atomics need newer)"),
            })
        }
    })
}

/// Starts CUDA device `ordinal` (or fails with the reason).
pub(crate) fn check_device(ordinal: usize) -> Result<()> {
    CudaDev::get(ordinal).map(|_| ())
}

/// Name and compute capability of CUDA device `ordinal`, starting it if
/// needed; the error says why there is none (for test skip messages).
pub fn device_info(ordinal: usize) -> Result<String> {
    let d = CudaDev::get(ordinal)?;
    let name = d.ctx.name().map_err(cuda_err("device_info"))?;
    let (major, minor) = d.ctx.compute_capability().map_err(cuda_err("device_info"))?;
    Ok(format!("{name} (sm_{major}{minor})"))
}

/// The caching allocator's counters of CUDA device `ordinal`.
pub fn pool_stats(ordinal: usize) -> Result<PoolStats> {
    Ok(lock(&CudaDev::get(ordinal)?.pool).stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_cover_current_gpus() {
        assert_eq!(arch_name(9, 0).unwrap(), "compute_90");
        assert_eq!(arch_name(8, 0).unwrap(), "compute_80");
        assert_eq!(
            arch_name(8, 7).unwrap(),
            "compute_80",
            "unknown 8.x falls back to sm_80 PTX"
        );
        assert!(arch_name(6, 1).is_err());
    }

    /// Compiles every kernel source for sm_80 and sm_90 when NVRTC can be
    /// loaded (no GPU needed); otherwise says why it is skipped.
    /// `MOE_DUMP_PTX=DIR` keeps the PTX (for ptxas).
    #[test]
    fn every_kernel_source_compiles_with_nvrtc() {
        // SAFETY: only probes for the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            println!("no NVRTC library (libnvrtc): skipping every_kernel_source_compiles_with_nvrtc");
            return;
        }
        for arch in ["compute_80", "compute_90"] {
            for src in moe_kernels::cuda::ALL {
                let opts = cudarc::nvrtc::CompileOptions {
                    arch: Some(arch),
                    name: Some(format!("{}.cu", src.name)),
                    ..Default::default()
                };
                let ptx = cudarc::nvrtc::compile_ptx_with_opts(src.full_source(), opts)
                    .unwrap_or_else(|e| panic!("{}.cu for {arch}: {e:?}", src.name));
                let text = ptx.to_src();
                // MOE_DUMP_PTX=DIR writes each module's PTX there, so ptxas can
                // assemble it (the inline asm is only checked at that stage).
                if let Some(dir) = std::env::var_os("MOE_DUMP_PTX") {
                    let path = std::path::Path::new(&dir).join(format!("{}_{arch}.ptx", src.name));
                    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                for f in src.functions {
                    assert!(text.contains(&format!(".entry {f}(")), "{}.cu: no entry {f}", src.name);
                }
            }
        }
    }
}
