//! The popcount kernels and the run-time choice between them.
//!
//! Each kernel computes one query's distances to a transposed database block (see
//! [`block`](super::block)) and returns their minimum, which lets top-k and radius search
//! skip a whole block with one comparison once their bound is tighter than anything in it.

use std::sync::OnceLock;

use thrifty_core::{CoreError, CoreResult};

use super::block::BLOCK;
use super::scalar;

/// A popcount kernel. [`Kernel::detected`] is what the free functions use; forcing another
/// one (that [`Kernel::is_available`]) gives bit-identical results and exists for tests and
/// benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// AVX-512 `VPOPCNTQ` on 8 codes' words per instruction (Ice Lake, Zen 4 and later).
    Avx512Vpopcntdq,
    /// AVX2 nibble lookup (`VPSHUFB`) with byte counts summed by `VPSADBW` (Muła et al.).
    Avx2,
    /// NEON `CNT` on bytes, widened by pairwise adds.
    Neon,
    /// `u64::count_ones`, built with `POPCNT` where the CPU has it.
    Scalar,
}

/// Fastest first: the first available one is the one detected.
const ALL: [Kernel; 4] = [
    Kernel::Avx512Vpopcntdq,
    Kernel::Avx2,
    Kernel::Neon,
    Kernel::Scalar,
];

impl Kernel {
    /// The name [`kernel`](super::kernel) reports and [`Kernel::parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vpopcntdq => "avx512-vpopcntdq",
            Kernel::Avx2 => "avx2",
            Kernel::Neon => "neon",
            Kernel::Scalar => "scalar",
        }
    }

    /// The kernel called `name`.
    pub fn parse(name: &str) -> CoreResult<Kernel> {
        ALL.iter()
            .copied()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|k| k.name()).collect();
                CoreError::invalid(
                    "kernel",
                    format!("expected one of {}, got {name:?}", names.join(", ")),
                )
            })
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vpopcntdq => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vpopcntdq")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every kernel this CPU can run, fastest first.
    pub fn available() -> Vec<Kernel> {
        ALL.iter().copied().filter(|k| k.is_available()).collect()
    }

    /// The fastest available kernel, detected once per process.
    pub fn detected() -> Kernel {
        static DETECTED: OnceLock<Kernel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            ALL.iter()
                .copied()
                .find(|k| k.is_available())
                .unwrap_or(Kernel::Scalar)
        })
    }

    /// Refuses a kernel this CPU cannot run: calling it would be undefined behaviour.
    pub(crate) fn check(self) -> CoreResult<()> {
        if self.is_available() {
            return Ok(());
        }
        let names: Vec<&str> = Kernel::available().iter().map(|k| k.name()).collect();
        Err(CoreError::invalid(
            "kernel",
            format!(
                "{} is not available on this CPU (available: {})",
                self.name(),
                names.join(", ")
            ),
        ))
    }

    /// Distances from `query` (`words` words) to every column of the transposed `block`
    /// (`words * BLOCK` words) into `dist`; returns their minimum. Only call after
    /// [`Kernel::check`].
    #[inline]
    pub(crate) fn distances(
        self,
        words: usize,
        block: &[u64],
        query: &[u64],
        dist: &mut [u32; BLOCK],
    ) -> u32 {
        assert!(block.len() >= words * BLOCK && query.len() >= words);
        match self {
            // SAFETY: `check` has confirmed the CPU features each arm's kernel enables, and
            // the assertion above bounds every load the kernels make.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vpopcntdq => unsafe {
                super::avx512::distances(words, block, query, dist)
            },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { super::avx2::distances(words, block, query, dist) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe { super::neon::distances(words, block, query, dist) },
            // Kernels of other architectures never pass `check`; scalar is a safe answer.
            _ => scalar::distances(words, block, query, dist),
        }
    }
}
