//! Shared inputs of the nnc criterion benchmarks: seeded generators and bin counting.
//!
//! The benchmarks live in `benches/benches/` (`cargo bench -p nnc-benches`, see
//! `docs/benchmarks.md`); this library only makes their inputs reproducible and their
//! throughput units exact: a SplitMix64 generator with Box–Muller normals ([`SplitMix64`],
//! [`randn_f32`]), Laplacian integer levels ([`laplacian_levels`]), skewed context-coded bin
//! sequences for the engine ([`EngineBins`]), a 16-layer model and two updates of it for the
//! model and update benchmarks ([`model_tensors`], [`model_updates`], [`TcaUpdate`]), and the
//! number of context-coded and bypass bins a tensor's levels binarize to ([`count_level_bins`]),
//! from which bins/s figures are derived.
//!
//! Does not know about: timing, files, the reference implementation.
//!
//! ```
//! use nnc_benches::{count_level_bins, randn_f32};
//! let x = randn_f32(1000, 1.0, 7);
//! assert_eq!(x, randn_f32(1000, 1.0, 7));
//! // 0 → sig; 1 → sig, sign, gt flag; −2 → sig, sign, two gt flags.
//! let bins = count_level_bins(&[0, 1, -2], false, 11);
//! assert_eq!((bins.context, bins.bypass), (8, 0));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use nnc_cabac::binarization::{encode_level, BinSink, LevelCoding, Neighbourhood};
use nnc_cabac::{dq, ContextLayout};
use nnc_tensor::{
    decode_stream, encode_incremental, DecodeOptions, DecoderState, EncodeInput, EncodeOptions,
    EncoderState, Tensor, TensorData,
};

/// Shape of the tensor workload: the reference's `randn(256, 64, 64)` (1 M elements).
pub const TENSOR_SHAPE: [usize; 3] = [256, 64, 64];

/// Seed of every generated input.
pub const SEED: u64 = 0;

/// Number of contexts the engine benchmark spreads its context-coded bins over.
pub const ENGINE_CONTEXTS: usize = 8;

/// Probability of a 1 bin in each engine-benchmark context: from nearly deterministic (like a
/// sig flag in a sparse region) to balanced and MPS = 1.
const ENGINE_P_ONE: [f64; ENGINE_CONTEXTS] = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7];

/// SplitMix64 pseudo-random generator with Box–Muller standard normals; fixed output per seed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
    spare: Option<f64>,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: None,
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller; the second value of each pair is kept for the next call).
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: the logarithm stays finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

/// `n` normal values with standard deviation `std`, as f32 (like `randn` scaled by `std`).
pub fn randn_f32(n: usize, std: f64, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| (rng.normal() * std) as f32).collect()
}

/// The tensor workload: [`TENSOR_SHAPE`] standard normals named `"0"` (the reference's tensor id).
pub fn randn_tensor(seed: u64) -> Tensor {
    let n = TENSOR_SHAPE.iter().product();
    Tensor {
        name: "0".into(),
        shape: TENSOR_SHAPE.to_vec(),
        data: TensorData::F32(randn_f32(n, 1.0, seed)),
    }
}

/// The 16-layer model of the model benchmarks: `layer{i}.weight`, 256 × 256 normals with
/// σ = 0.05 (seeds `SEED + i`).
pub fn model_tensors() -> Vec<Tensor> {
    (0..16u64)
        .map(|i| Tensor {
            name: format!("layer{i}.weight"),
            shape: vec![256, 256],
            data: TensorData::F32(randn_f32(256 * 256, 0.05, SEED + i)),
        })
        .collect()
}

/// Two successive updates of [`model_tensors`] for the update benchmarks, as a federated client
/// sends them: differences to the model, the first normals with σ = 0.005 (seeds
/// `SEED + 100 + i`), the second half the first plus new normals of the same σ (seeds
/// `SEED + 200 + i`), so the second's levels follow the first's as TCA expects.
pub fn model_updates(model: &[Tensor]) -> [Vec<Tensor>; 2] {
    let step = |seed: u64, previous: Option<&[Tensor]>| -> Vec<Tensor> {
        model
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut d = randn_f32(t.len(), 0.005, seed + i as u64);
                if let Some(TensorData::F32(prev)) = previous.map(|p| &p[i].data) {
                    for (x, p) in d.iter_mut().zip(prev) {
                        *x += 0.5 * p;
                    }
                }
                Tensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    data: TensorData::F32(d),
                }
            })
            .collect()
    };
    let first = step(SEED + 100, None);
    let second = step(SEED + 200, Some(&first));
    [first, second]
}

/// The update benchmarks' setup: the second of [`model_updates`] and the encoder's and
/// decoder's states after the first, coded with TCA and `compress_differences`.
#[derive(Clone, Debug)]
pub struct TcaUpdate {
    /// The options both updates are coded with.
    pub opts: EncodeOptions,
    /// The second update, the one to time.
    pub update: Vec<Tensor>,
    /// The encoder's state after the first update.
    pub enc_state: EncoderState,
    /// The decoder's state after decoding the first update.
    pub dec_state: DecoderState,
}

impl TcaUpdate {
    /// Codes and decodes the first update of [`model_tensors`] on `threads` threads.
    pub fn new(threads: Option<usize>) -> Result<Self, Box<dyn std::error::Error>> {
        Self::sparse(threads, 1.0)
    }

    /// [`TcaUpdate::new`] with updates that keep each value with probability `keep` (each
    /// update its own positions, as a client that sends its largest changes), the others zero.
    pub fn sparse(threads: Option<usize>, keep: f64) -> Result<Self, Box<dyn std::error::Error>> {
        let [mut first, mut update] = model_updates(&model_tensors());
        if keep < 1.0 {
            let mut rng = SplitMix64::new(SEED + 300);
            for t in first.iter_mut().chain(update.iter_mut()) {
                if let TensorData::F32(values) = &mut t.data {
                    for v in values.iter_mut() {
                        if rng.uniform() >= keep {
                            *v = 0.0;
                        }
                    }
                }
            }
        }
        let mut opts = EncodeOptions::default().with_threads(threads);
        opts.tca = true;
        opts.compress_differences = true;
        let mut enc_state = EncoderState::default();
        let mut dec_state = DecoderState::default();
        let bytes = encode_incremental(
            EncodeInput::from_tensors(&first)?,
            &opts,
            &mut enc_state,
            true,
        )?
        .bytes;
        let dopts = DecodeOptions::new().with_threads(threads);
        decode_stream(&bytes, &mut dec_state, &dopts)?;
        Ok(Self {
            opts,
            update,
            enc_state,
            dec_state,
        })
    }
}

/// `n` integer levels drawn from a Laplacian with mean absolute value about `mean_abs`, rounded
/// (for `mean_abs` = 3 about 80 % are non-zero, like a finely quantized weight tensor).
pub fn laplacian_levels(n: usize, mean_abs: f64, seed: u64) -> Vec<i32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let u = rng.uniform() - 0.5;
            let tail = (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE);
            (-mean_abs * u.signum() * tail.ln()).round() as i32
        })
        .collect()
}

/// A sequence of context-coded bins for the engine benchmark: bin `i` goes to context
/// `ctx[i]` (uniform over [`ENGINE_CONTEXTS`]) and is 1 with that context's fixed probability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineBins {
    /// Context index of each bin (`< ENGINE_CONTEXTS`).
    pub ctx: Vec<u8>,
    /// Bin values.
    pub bin: Vec<bool>,
}

impl EngineBins {
    /// `n` bins from `seed`.
    pub fn generate(n: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut ctx = Vec::with_capacity(n);
        let mut bin = Vec::with_capacity(n);
        for _ in 0..n {
            let c = (rng.next_u64() >> 61) as usize; // top 3 bits: 0..8
            ctx.push(c as u8);
            bin.push(rng.uniform() < ENGINE_P_ONE[c % ENGINE_CONTEXTS]);
        }
        Self { ctx, bin }
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.bin.len()
    }

    /// No bins.
    pub fn is_empty(&self) -> bool {
        self.bin.is_empty()
    }
}

/// `n` random words of `bits` bits each (for bypass-bin runs).
pub fn random_words(n: usize, bits: u32, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    (0..n)
        .map(|_| (rng.next_u64() >> 32) as u32 & mask)
        .collect()
}

/// Context-coded and bypass bins of a binarized tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BinCount {
    /// Context-coded bins (sig, sign, greater-than flags, remainder prefix).
    pub context: u64,
    /// Bypass bins (remainder suffix).
    pub bypass: u64,
}

impl BinCount {
    /// All bins.
    pub fn total(&self) -> u64 {
        self.context + self.bypass
    }
}

impl BinSink for BinCount {
    fn ctx_bin(&mut self, _ctx: usize, _bin: bool) {
        self.context += 1;
    }
    fn bypass_bins(&mut self, n: u32, _value: u32) {
        self.bypass += u64::from(n);
    }
}

/// Bins the level coder spends on `levels` (reconstruction units; with `dq` the DQ reconstruction
/// indices in row-major scan order) with `num_gtx_flags` greater-than flags and no codebook.
///
/// Counts the level bins only: the per-tensor header bins (context initialisation choice, row
/// skip flags) are not included. The count does not depend on the contexts, so the neighbourhood
/// is not tracked.
pub fn count_level_bins(levels: &[i32], dq: bool, num_gtx_flags: u32) -> BinCount {
    let layout = ContextLayout::new(num_gtx_flags);
    let lc = LevelCoding::unbounded(num_gtx_flags);
    let nbh = Neighbourhood::default();
    let mut count = BinCount::default();
    let mut state = 0u8;
    for &q in levels {
        let k = if dq { dq::coded_level(q, state) } else { q };
        encode_level(&mut count, &layout, &nbh, &lc, k, usize::from(state));
        if dq {
            state = dq::next_state(state, k);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_known_first_output() {
        // SplitMix64 with seed 0: the published first output.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn randn_has_unit_moments() {
        let x = randn_f32(100_000, 1.0, SEED);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert_ne!(x, randn_f32(100_000, 1.0, SEED + 1));
    }

    #[test]
    fn laplacian_levels_are_mostly_nonzero() {
        let l = laplacian_levels(10_000, 3.0, SEED);
        let nz = l.iter().filter(|&&v| v != 0).count();
        assert!((7_000..9_000).contains(&nz), "{nz} non-zero");
    }

    #[test]
    fn engine_bins_follow_context_probabilities() {
        let b = EngineBins::generate(80_000, SEED);
        assert_eq!(b.len(), 80_000);
        let ones_in = |c: u8| {
            let (ones, all) = b
                .ctx
                .iter()
                .zip(&b.bin)
                .filter(|(&x, _)| x == c)
                .fold((0u32, 0u32), |(o, a), (_, &v)| (o + u32::from(v), a + 1));
            f64::from(ones) / f64::from(all)
        };
        assert!(ones_in(0) < 0.04);
        assert!((ones_in(7) - 0.7).abs() < 0.03);
    }

    #[test]
    fn level_bins_include_remainder() {
        // |k| = 20 with N = 11: sig, sign, 11 gt flags, then remainder r = 20 − 12 = 8, whose
        // Exp-Golomb prefix is 1,1,1,0 (4 context bins) and suffix 3 bypass bins.
        let c = count_level_bins(&[20], false, 11);
        assert_eq!(
            c,
            BinCount {
                context: 17,
                bypass: 3
            }
        );
        assert_eq!(c.total(), 20);
    }

    #[test]
    fn dq_bins_use_coded_levels() {
        // In state 0 reconstruction index 4 is coded level 2: sig, sign, 2 gt flags.
        assert_eq!(count_level_bins(&[4], true, 11).context, 4);
        assert_eq!(count_level_bins(&[4], false, 11).context, 6);
    }
}
