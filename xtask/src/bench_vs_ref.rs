//! `cargo xtask bench-vs-ref --python PY`: times the reference (NNCodec 2.1.3 in a child Python
//! process) and ours (in process, this release build) on the same inputs with the same default
//! arguments, and checks that the bitstreams and the decoded values are identical.
//!
//! Workloads: `randn(256, 64, 64)`, a 90 %-sparse 1024 × 1024 float32 tensor and a small layer
//! (64 × 16, timed over at least [`SMALL_REPS`] calls, as a federated client or a layer-by-layer
//! caller makes many small calls) through the tensor pipeline (`nncodec.tensor`), a randomly
//! initialised ResNet-50-shaped state dict, the second of two updates of it (differences, as a
//! federated client sends them) coded with temporal context adaptation from the states the first
//! left (`nncodec.nnc.compress` / `decompress` with `approx_param_base`; our incremental encoder
//! and decoder states) and, when its weights are in the cache directory,
//! all-MiniLM-L6-v2 (`$NNC_MINILM_SAFETENSORS`, else `all-MiniLM-L6-v2/model.safetensors` in the
//! cache directory), as it is and with each of its matrices pruned to 90 % zeros by magnitude,
//! through the model pipeline (`nncodec.nn` on a dict). With `--tools`, the coding tools beyond
//! the defaults instead, one at a time through `nncodec.nnc.compress` ([`tools`]). Inputs are
//! generated here with a seeded generator and written as `.npy`/`.npz` (with `--keep`, the
//! ResNet-50-shaped model also as `.safetensors`); the reference's codec calls are timed inside
//! Python with `time.perf_counter`, so interpreter start-up, imports and file I/O are not
//! counted. Workload by workload, the reference runs right before ours, so both sides meet the
//! machine in about the same state. Each side's fastest of `reps` runs is reported (the machine
//! is shared; the minimum is the least disturbed estimate). Our decode is timed as the
//! reference's: bitstream to values, without keeping levels or recording decoder state.
//!
//! With `--ours-python PY` (an interpreter where our package, `crates/nnc-py`, is installed) each
//! default workload also runs through `nnc.encode` / `nnc.decode` in that interpreter, on the
//! arrays the reference gets and timed the same way, on 1 thread and on all cores: what a Python
//! user of ours sees, conversions between NumPy and the codec included. Its bytes and values are
//! checked against the reference's as well.

mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use nnc_nn::io::{read_npz, read_tensors, write_npy, write_npz, write_tensors};
use nnc_tensor::{
    decode_stream, encode, encode_incremental, DecodeOptions, DecoderState, EncodeInput,
    EncodeOptions, EncoderState,
};
use nnc_tensor::{DType, Tensor, TensorData};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Python interpreter with nncodec 2.1.3 installed.
    pub python: PathBuf,
    /// Only the tensor workload, one run per side.
    pub quick: bool,
    /// Runs per workload and side (default: 5 for the tensor, 2 for models; 1 with `quick`).
    pub reps: Option<usize>,
    /// Where all-MiniLM-L6-v2 is looked for (`all-MiniLM-L6-v2/model.safetensors` inside).
    pub cache_dir: Option<PathBuf>,
    /// Keep the work directory (inputs, bitstreams, the Python script) instead of deleting it.
    pub keep: bool,
    /// The coding tools beyond the defaults (`tools`) instead of the default workloads.
    pub tools: bool,
    /// Python interpreter with our package (`import nnc`): also time it on the default
    /// workloads, as a Python user calls it.
    pub ours_python: Option<PathBuf>,
    /// Only the workloads of these names (all when empty).
    pub only: Vec<String>,
}

impl Options {
    /// Runs per side of a workload whose usual count is `default`: `--reps` if given, else 1
    /// with `--quick`, else `default`; at least 1.
    fn runs(&self, default: usize) -> usize {
        self.reps
            .unwrap_or(if self.quick { 1 } else { default })
            .max(1)
    }
}

/// The reference side, written next to the inputs and run as `python bench_ref.py WORKDIR`.
const REFERENCE_SCRIPT: &str = r#"
import json, os, sys, time
import numpy as np

work = sys.argv[1]
with open(os.path.join(work, "plan.json")) as f:
    plan = json.load(f)
from nncodec import tensor as nnc_tensor
from nncodec import nn as nnc_nn
from nncodec import nnc as nnc_api

results = {}
for w in plan["workloads"]:
    name, reps = w["name"], int(w["reps"])
    # Each timed call gets what its `prep` made right before it, outside the timing (an
    # update's copy of the base it changes).
    prep_enc = prep_dec = lambda: None
    if w["kind"] == "tensor":
        x = np.load(w["input"])
        enc = lambda _: nnc_tensor.encode(x, {"results": work})
        dec = lambda bs, _: {"0": nnc_tensor.decode(bs)}
    elif w["kind"] == "update":
        import copy
        def load(path):
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        previous, model = load(w["previous"]), load(w["input"])
        kw = dict(qp=-32, row_skipping=True, tca=True, compress_differences=True)
        new_base = lambda: {"parameters": {}, "put_node_depth": {}, "device_id": 0, "parameter_id": {}}
        enc_base, dec_base = new_base(), new_base()
        out = os.path.join(work, "update.nnc")
        first = nnc_api.compress(previous, bitstream_path=out, return_bitstream=True,
                                 approx_param_base=enc_base, update_base_param=True, **kw)
        nnc_api.decompress(bytearray(first), approx_param_base=dec_base, update_base_param=True)
        prep_enc = lambda: copy.deepcopy(enc_base)
        prep_dec = lambda: copy.deepcopy(dec_base)
        enc = lambda base: nnc_api.compress(model, bitstream_path=out, return_bitstream=True,
                                            approx_param_base=base, update_base_param=True, **kw)
        dec = lambda bs, base: nnc_api.decompress(bytearray(bs), approx_param_base=base,
                                                  update_base_param=True)
    else:
        with np.load(w["input"]) as z:
            model = {k: z[k] for k in z.files}
        if w["kind"] == "compress":
            kwargs, out = w["kwargs"], os.path.join(work, "compress.nnc")
            enc = lambda _: nnc_api.compress(model, bitstream_path=out, return_bitstream=True, **kwargs)
            dec = lambda bs, _: nnc_api.decompress(bytearray(bs))
        else:
            enc = lambda _: nnc_nn.encode(model, {"results": work, "verbose": False})
            dec = lambda bs, _: nnc_nn.decode(bs, {"verbose": False})
    enc_s, dec_s = [], []
    try:
        # The previous repetition's result is freed before the clock starts, as the Rust side's
        # is: rebinding the name inside the timed call would free a whole model's arrays there.
        for _ in range(reps):
            arg = prep_enc()
            bs = None
            t0 = time.perf_counter()
            bs = enc(arg)
            enc_s.append(time.perf_counter() - t0)
        for _ in range(reps):
            arg = prep_dec()
            rec = None
            t0 = time.perf_counter()
            rec = dec(bs, arg)
            dec_s.append(time.perf_counter() - t0)
    except BaseException as e:  # SystemExit included: the reference exits on bad input
        results[name] = {"error": (type(e).__name__ + ": " + str(e))[:300]}
        continue
    bs_path = os.path.join(work, "ref_" + name + ".nnc")
    with open(bs_path, "wb") as f:
        f.write(bytes(bs))
    rec_path = os.path.join(work, "ref_" + name + "_decoded.npz")
    np.savez(rec_path, **{k: np.asarray(v) for k, v in rec.items()})
    results[name] = {"encode_s": enc_s, "decode_s": dec_s, "bitstream": bs_path, "decoded": rec_path}

with open(os.path.join(work, "ref_results.json"), "w") as f:
    json.dump(results, f)
"#;

/// Our Python package on the same inputs, run as `python bench_ours.py WORKDIR` after the
/// reference wrote `plan.json`: `nnc.encode` / `nnc.decode` on 1 thread, then on all cores.
const OURS_PYTHON_SCRIPT: &str = r#"
import copy, json, os, sys, time
import numpy as np
import nnc

work = sys.argv[1]
with open(os.path.join(work, "plan.json")) as f:
    plan = json.load(f)

results = {}
for w in plan["workloads"]:
    name, reps = w["name"], int(w["reps"])
    def load(path):
        if w["kind"] == "tensor":
            return np.load(path)
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    data = load(w["input"])
    kw, enc_state, dec_state = {}, None, None
    if w["kind"] == "update":
        # The update the reference codes, from the states its previous one left.
        kw = dict(tca=True, compress_differences=True)
        enc_state, dec_state = nnc.EncoderState(), nnc.DecoderState()
        nnc.decode(nnc.encode(load(w["previous"]), state=enc_state, **kw), state=dec_state)
    copy_of = lambda state: None if state is None else copy.deepcopy(state)
    sides = {}
    for label, threads in (("one", 1), ("all", None)):
        enc_s, dec_s = [], []
        for _ in range(reps):
            state = copy_of(enc_state)
            bs = None  # freed outside the clock, as on the reference's side
            t0 = time.perf_counter()
            bs = nnc.encode(data, threads=threads, state=state, **kw)
            enc_s.append(time.perf_counter() - t0)
        for _ in range(reps):
            state = copy_of(dec_state)
            rec = None
            t0 = time.perf_counter()
            rec = nnc.decode(bs, threads=threads, state=state)
            dec_s.append(time.perf_counter() - t0)
        bs_path = os.path.join(work, "py_" + label + "_" + name + ".nnc")
        with open(bs_path, "wb") as f:
            f.write(bs)
        rec_path = os.path.join(work, "py_" + label + "_" + name + "_decoded.npz")
        np.savez(rec_path, **rec)
        sides[label] = {"encode_s": enc_s, "decode_s": dec_s, "bitstream": bs_path, "decoded": rec_path}
    results[name] = sides

with open(os.path.join(work, "py_results.json"), "w") as f:
    json.dump(results, f)
"#;

/// Conv and linear weights of torchvision's `resnet50()` in `state_dict` order. Every conv is
/// followed by its batch norm (`convK` → `bnK`, `downsample.0` → `downsample.1`, `conv1` → `bn1`);
/// `fc.bias` follows `fc.weight`.
const RESNET50_WEIGHTS: &[(&str, &[usize])] = &[
    ("conv1.weight", &[64, 3, 7, 7]),
    ("layer1.0.conv1.weight", &[64, 64, 1, 1]),
    ("layer1.0.conv2.weight", &[64, 64, 3, 3]),
    ("layer1.0.conv3.weight", &[256, 64, 1, 1]),
    ("layer1.0.downsample.0.weight", &[256, 64, 1, 1]),
    ("layer1.1.conv1.weight", &[64, 256, 1, 1]),
    ("layer1.1.conv2.weight", &[64, 64, 3, 3]),
    ("layer1.1.conv3.weight", &[256, 64, 1, 1]),
    ("layer1.2.conv1.weight", &[64, 256, 1, 1]),
    ("layer1.2.conv2.weight", &[64, 64, 3, 3]),
    ("layer1.2.conv3.weight", &[256, 64, 1, 1]),
    ("layer2.0.conv1.weight", &[128, 256, 1, 1]),
    ("layer2.0.conv2.weight", &[128, 128, 3, 3]),
    ("layer2.0.conv3.weight", &[512, 128, 1, 1]),
    ("layer2.0.downsample.0.weight", &[512, 256, 1, 1]),
    ("layer2.1.conv1.weight", &[128, 512, 1, 1]),
    ("layer2.1.conv2.weight", &[128, 128, 3, 3]),
    ("layer2.1.conv3.weight", &[512, 128, 1, 1]),
    ("layer2.2.conv1.weight", &[128, 512, 1, 1]),
    ("layer2.2.conv2.weight", &[128, 128, 3, 3]),
    ("layer2.2.conv3.weight", &[512, 128, 1, 1]),
    ("layer2.3.conv1.weight", &[128, 512, 1, 1]),
    ("layer2.3.conv2.weight", &[128, 128, 3, 3]),
    ("layer2.3.conv3.weight", &[512, 128, 1, 1]),
    ("layer3.0.conv1.weight", &[256, 512, 1, 1]),
    ("layer3.0.conv2.weight", &[256, 256, 3, 3]),
    ("layer3.0.conv3.weight", &[1024, 256, 1, 1]),
    ("layer3.0.downsample.0.weight", &[1024, 512, 1, 1]),
    ("layer3.1.conv1.weight", &[256, 1024, 1, 1]),
    ("layer3.1.conv2.weight", &[256, 256, 3, 3]),
    ("layer3.1.conv3.weight", &[1024, 256, 1, 1]),
    ("layer3.2.conv1.weight", &[256, 1024, 1, 1]),
    ("layer3.2.conv2.weight", &[256, 256, 3, 3]),
    ("layer3.2.conv3.weight", &[1024, 256, 1, 1]),
    ("layer3.3.conv1.weight", &[256, 1024, 1, 1]),
    ("layer3.3.conv2.weight", &[256, 256, 3, 3]),
    ("layer3.3.conv3.weight", &[1024, 256, 1, 1]),
    ("layer3.4.conv1.weight", &[256, 1024, 1, 1]),
    ("layer3.4.conv2.weight", &[256, 256, 3, 3]),
    ("layer3.4.conv3.weight", &[1024, 256, 1, 1]),
    ("layer3.5.conv1.weight", &[256, 1024, 1, 1]),
    ("layer3.5.conv2.weight", &[256, 256, 3, 3]),
    ("layer3.5.conv3.weight", &[1024, 256, 1, 1]),
    ("layer4.0.conv1.weight", &[512, 1024, 1, 1]),
    ("layer4.0.conv2.weight", &[512, 512, 3, 3]),
    ("layer4.0.conv3.weight", &[2048, 512, 1, 1]),
    ("layer4.0.downsample.0.weight", &[2048, 1024, 1, 1]),
    ("layer4.1.conv1.weight", &[512, 2048, 1, 1]),
    ("layer4.1.conv2.weight", &[512, 512, 3, 3]),
    ("layer4.1.conv3.weight", &[2048, 512, 1, 1]),
    ("layer4.2.conv1.weight", &[512, 2048, 1, 1]),
    ("layer4.2.conv2.weight", &[512, 512, 3, 3]),
    ("layer4.2.conv3.weight", &[2048, 512, 1, 1]),
    ("fc.weight", &[1000, 2048]),
];

/// Seed of every generated input.
const SEED: u64 = 0;

/// SplitMix64 with Box–Muller normals: the same generator (and so, for seed 0, the same tensor) as
/// `nnc_benches::randn_tensor` uses for the criterion benches.
struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: None,
        }
    }
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

fn f32_tensor(name: &str, shape: &[usize], values: Vec<f32>) -> Tensor {
    Tensor {
        name: name.to_string(),
        shape: shape.to_vec(),
        data: TensorData::F32(values),
    }
}

/// `randn(256, 64, 64)`, seed 0, named `"0"` (the reference's default tensor id).
fn randn_tensor() -> Tensor {
    let shape = [256usize, 64, 64];
    let mut rng = Rng::new(SEED);
    let n = shape.iter().product();
    f32_tensor("0", &shape, (0..n).map(|_| rng.normal() as f32).collect())
}

/// A sparse 1024 × 1024 tensor: 90 % exact zeros, the rest normal with σ = 0.02 (like a pruned
/// layer or a sparsified federated update), so decoding is mostly runs of zero sig flags.
fn sparse_tensor() -> Tensor {
    let shape = [1024usize, 1024];
    let mut rng = Rng::new(SEED);
    let n = shape.iter().product();
    let values = (0..n)
        .map(|_| {
            let keep = rng.uniform() < 0.1;
            let v = rng.normal() * 0.02;
            if keep {
                v as f32
            } else {
                0.0
            }
        })
        .collect();
    f32_tensor("0", &shape, values)
}

/// Runs of the small-layer workload per side at least: one call takes well under a millisecond
/// on our side, so the fastest of a few is mostly the machine's noise.
const SMALL_REPS: usize = 50;

/// A small layer, 64 × 16 normal values with σ = 0.05 (about a dense layer's weights), named `"0"`.
fn small_tensor() -> Tensor {
    let shape = [64usize, 16];
    let mut rng = Rng::new(SEED);
    let n = shape.iter().product();
    f32_tensor(
        "0",
        &shape,
        (0..n).map(|_| (rng.normal() * 0.05) as f32).collect(),
    )
}

/// `model` with every float32 tensor of two or more dimensions pruned by magnitude, as one-shot
/// unstructured pruning leaves a layer: the `fraction` of its values smallest in magnitude
/// become exact zeros (ties at the threshold stay). Other tensors are kept as they are.
fn pruned_by_magnitude(model: &[Tensor], fraction: f64) -> Vec<Tensor> {
    model
        .iter()
        .map(|t| match &t.data {
            TensorData::F32(v) if t.shape.len() >= 2 && !v.is_empty() => {
                let mut mags: Vec<f32> = v.iter().map(|x| x.abs()).collect();
                let k = ((v.len() as f64 * fraction) as usize).min(v.len() - 1);
                let (_, threshold, _) = mags.select_nth_unstable_by(k, f32::total_cmp);
                let threshold = *threshold;
                let pruned = v
                    .iter()
                    .map(|&x| if x.abs() < threshold { 0.0 } else { x })
                    .collect();
                Tensor {
                    data: TensorData::F32(pruned),
                    ..t.clone()
                }
            }
            _ => t.clone(),
        })
        .collect()
}

/// torchvision's `resnet50()` initialisation with our generator: conv weights Kaiming-normal
/// (fan-out, ReLU gain), the classifier like `nn.Linear` (uniform ±1/√fan_in), batch norms at
/// weight 1, bias 0, running mean 0, running variance 1 (`num_batches_tracked` left out).
fn resnet50_state_dict() -> Vec<Tensor> {
    let mut rng = Rng::new(SEED);
    let mut out = Vec::with_capacity(RESNET50_WEIGHTS.len() * 5 + 1);
    for &(name, shape) in RESNET50_WEIGHTS {
        let n: usize = shape.iter().product();
        if name == "fc.weight" {
            let bound = 1.0 / (shape[1] as f64).sqrt();
            let mut uniform = |len: usize| -> Vec<f32> {
                (0..len)
                    .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                    .collect()
            };
            let w = uniform(n);
            let b = uniform(shape[0]);
            out.push(f32_tensor(name, shape, w));
            out.push(f32_tensor("fc.bias", &shape[..1], b));
            continue;
        }
        let fan_out = shape[0] * shape[2] * shape[3];
        let std = (2.0 / fan_out as f64).sqrt();
        out.push(f32_tensor(
            name,
            shape,
            (0..n).map(|_| (rng.normal() * std) as f32).collect(),
        ));
        let bn = batch_norm_of(name);
        let c = shape[0];
        for (param, value) in [
            ("weight", 1.0),
            ("bias", 0.0),
            ("running_mean", 0.0),
            ("running_var", 1.0),
        ] {
            out.push(f32_tensor(&format!("{bn}.{param}"), &[c], vec![value; c]));
        }
    }
    out
}

/// Two successive updates of `model` as a federated client sends them (differences to it): the
/// first normals with a tenth of each tensor's root mean square (at least 0.001), the second
/// half the first plus new normals of the same size, so that its levels follow the first's as
/// temporal context adaptation expects. With `keep` below 1 each update keeps each value with
/// that probability and is 0 elsewhere (each its own positions), as a client that sends only
/// its largest changes.
fn updates_of(model: &[Tensor], keep: f64) -> [Vec<Tensor>; 2] {
    let mut rng = Rng::new(SEED + 1);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for t in model {
        let values = t.data.as_f32_lossless().unwrap_or_default();
        let n = values.len().max(1) as f64;
        let rms = (values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n).sqrt();
        let sigma = 0.1 * rms.max(0.01);
        let mut d1: Vec<f32> = (0..t.len())
            .map(|_| (rng.normal() * sigma) as f32)
            .collect();
        let mut d2: Vec<f32> = d1
            .iter()
            .map(|&d| (0.5 * f64::from(d) + rng.normal() * sigma) as f32)
            .collect();
        if keep < 1.0 {
            for v in d1.iter_mut().chain(d2.iter_mut()) {
                if rng.uniform() >= keep {
                    *v = 0.0;
                }
            }
        }
        first.push(f32_tensor(&t.name, &t.shape, d1));
        second.push(f32_tensor(&t.name, &t.shape, d2));
    }
    [first, second]
}

/// The update workload `name` of `model` (`updates_of` with `keep`): both updates written as
/// `<name>1.npz` and `<name>2.npz` in `work`, the second timed from the states the first leaves,
/// coded with TCA and `compress_differences`.
fn update_workload(
    (name, label): (&'static str, &str),
    model: &[Tensor],
    keep: f64,
    work: &Path,
    reps: usize,
) -> Result<Workload> {
    let [first, second] = updates_of(model, keep);
    let previous = work.join(format!("{name}1.npz"));
    write_npz(&previous, &first)?;
    let input = work.join(format!("{name}2.npz"));
    write_npz(&input, &second)?;
    let mut options = EncodeOptions::default();
    options.tca = true;
    options.compress_differences = true;
    Ok(Workload {
        name,
        label: label.into(),
        kind: Kind::Update(previous, first),
        tensors: second,
        input,
        reps,
        options,
    })
}

/// The batch norm that follows conv weight `name` in torchvision's ResNet.
fn batch_norm_of(name: &str) -> String {
    let module = name.trim_end_matches(".weight");
    if let Some(prefix) = module.strip_suffix("downsample.0") {
        return format!("{prefix}downsample.1");
    }
    match module.rsplit_once('.') {
        Some((prefix, conv)) => format!("{prefix}.{}", conv.replace("conv", "bn")),
        None => module.replace("conv", "bn"),
    }
}

/// The reference's model dict takes float32 and int32 arrays only: other floats become float32 and
/// other integers int32 (both sides then code the same arrays).
fn to_reference_dtypes(tensors: Vec<Tensor>) -> Result<Vec<Tensor>> {
    tensors
        .into_iter()
        .map(|t| {
            let data = match t.data {
                TensorData::F32(_) | TensorData::I32(_) => t.data,
                TensorData::I64(v) => TensorData::I32(
                    v.iter()
                        .map(|&x| i32::try_from(x))
                        .collect::<std::result::Result<_, _>>()
                        .with_context(|| format!("{}: value outside int32", t.name))?,
                ),
                other => TensorData::F32(
                    other
                        .as_f32_lossless()
                        .ok_or_else(|| anyhow!("{}: dtype not supported here", t.name))?
                        .into_owned(),
                ),
            };
            Ok(Tensor { data, ..t })
        })
        .collect()
}

/// Which of the reference's entry points codes a workload.
#[derive(Clone, PartialEq)]
enum Kind {
    /// `nncodec.tensor` on the one tensor.
    Tensor,
    /// `nncodec.nn` on a dict.
    Model,
    /// `nncodec.nnc.compress` on a dict, with these keyword arguments.
    Compress(Value),
    /// `nncodec.nnc.compress` / `decompress` of an update with TCA and `compress_differences`,
    /// from the bases the previous update (this `.npz`, and these tensors) left.
    Update(PathBuf, Vec<Tensor>),
}

impl Kind {
    fn script_name(&self) -> &'static str {
        match self {
            Kind::Tensor => "tensor",
            Kind::Model => "model",
            Kind::Compress(_) => "compress",
            Kind::Update(..) => "update",
        }
    }
}

struct Workload {
    name: &'static str,
    label: String,
    kind: Kind,
    tensors: Vec<Tensor>,
    input: PathBuf,
    reps: usize,
    /// Our settings, the reference's for this entry point (without threads).
    options: EncodeOptions,
}

/// One side's timings and output for one workload.
struct Side {
    encode_s: f64,
    decode_s: f64,
    bytes: Vec<u8>,
    decoded: Vec<Tensor>,
}

/// A time for the table: seconds to the millisecond, or microseconds below 10 ms (the small
/// layer's calls).
fn seconds(s: f64) -> String {
    if s < 0.01 {
        format!("{:.0}us", s * 1e6)
    } else {
        format!("{s:.3}s")
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The version of `module` as `python` imports it (`version_code` prints it), or why it
/// cannot be run.
fn probe_python(
    python: &Path,
    module: &str,
    version_code: &str,
) -> std::result::Result<String, String> {
    let out = Command::new(python)
        .args(["-c", version_code])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!(
            "{} cannot import {module} ({last})",
            python.display()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn workloads(opts: &Options, work: &Path) -> Result<Vec<Workload>> {
    let tensor_workload = |name: &'static str, label: &str, file: &str, t: Tensor, reps: usize| {
        let input = work.join(file);
        write_npy(&input, &t)?;
        Ok::<_, anyhow::Error>(Workload {
            name,
            label: label.into(),
            kind: Kind::Tensor,
            tensors: vec![t],
            input,
            reps,
            options: EncodeOptions::default(),
        })
    };
    if opts.tools {
        return tool_workloads(opts, work);
    }
    let mut list = vec![tensor_workload(
        "randn",
        "randn(256,64,64)",
        "randn_256x64x64.npy",
        randn_tensor(),
        opts.runs(5),
    )?];
    if opts.quick {
        return Ok(list);
    }
    list.push(tensor_workload(
        "sparse",
        "sparse(1024,1024) 90%",
        "sparse_1024x1024.npy",
        sparse_tensor(),
        opts.runs(5),
    )?);
    list.push(tensor_workload(
        "small",
        "small layer (64,16)",
        "small_64x16.npy",
        small_tensor(),
        opts.runs(5).max(SMALL_REPS),
    )?);
    let model = resnet50_state_dict();
    // The reference reads the .npz (its venv has no safetensors). With --keep the same model is
    // also left as .safetensors for `nnc encode` and other tools; without it nobody reads it.
    let input = work.join("resnet50_random.npz");
    write_npz(&input, &model)?;
    if opts.keep {
        write_tensors(&work.join("resnet50_random.safetensors"), &model)?;
    }
    let update = update_workload(
        ("resnet50_update", "ResNet-50 update, TCA"),
        &model,
        1.0,
        work,
        opts.runs(2),
    )?;
    list.push(Workload {
        name: "resnet50",
        label: "ResNet-50 (random init)".into(),
        kind: Kind::Model,
        tensors: model,
        input,
        reps: opts.runs(2),
        options: EncodeOptions::default(),
    });
    list.push(update);
    let minilm = std::env::var_os("NNC_MINILM_SAFETENSORS")
        .map(PathBuf::from)
        .or_else(|| {
            opts.cache_dir
                .clone()
                .or_else(crate::fetch::cache_dir)
                .map(|d| d.join("all-MiniLM-L6-v2").join("model.safetensors"))
        });
    match minilm {
        Some(path) if path.is_file() => {
            let model = to_reference_dtypes(read_tensors(&path, "0")?)?;
            let pruned = pruned_by_magnitude(&model, 0.9);
            // The federated case: sparse updates of the model's float tensors with TCA.
            let floats: Vec<Tensor> = model
                .iter()
                .filter(|t| t.data.dtype() == DType::F32)
                .cloned()
                .collect();
            let update = update_workload(
                ("minilm_sparse_update", "MiniLM update 10%, TCA"),
                &floats,
                0.1,
                work,
                opts.runs(2),
            )?;
            for (name, label, file, tensors) in [
                ("minilm", "all-MiniLM-L6-v2", "minilm.npz", model),
                (
                    "minilm_pruned",
                    "all-MiniLM-L6-v2 pruned 90%",
                    "minilm_pruned90.npz",
                    pruned,
                ),
            ] {
                let input = work.join(file);
                write_npz(&input, &tensors)?;
                list.push(Workload {
                    name,
                    label: label.into(),
                    kind: Kind::Model,
                    tensors,
                    input,
                    reps: opts.runs(2),
                    options: EncodeOptions::default(),
                });
            }
            list.push(update);
        }
        Some(path) => println!("MiniLM: skipped ({} not present)", path.display()),
        None => println!(
            "MiniLM: skipped (no cache directory: set NNC_MINILM_SAFETENSORS or NNC_CACHE_DIR)"
        ),
    }
    Ok(list)
}

/// `--tools`: one workload per coding tool ([`tools::tools`]), three runs per side (the codebook
/// search one) unless `--reps` says otherwise.
fn tool_workloads(opts: &Options, work: &Path) -> Result<Vec<Workload>> {
    let randn = randn_tensor();
    let codebook = tools::codebook_input(&randn)
        .ok_or_else(|| anyhow!("randn has fewer values than the codebook input"))?;
    let randn_input = work.join("randn_256x64x64.npz");
    write_npz(&randn_input, std::slice::from_ref(&randn))?;
    let codebook_input = work.join("randn_64x1024.npz");
    write_npz(&codebook_input, std::slice::from_ref(&codebook))?;
    Ok(tools::tools()
        .into_iter()
        .map(|t| {
            let (tensor, input, runs) = if t.codebook_input {
                (&codebook, &codebook_input, opts.runs(1))
            } else {
                (&randn, &randn_input, opts.runs(3))
            };
            Workload {
                name: t.name,
                label: t.label.into(),
                kind: Kind::Compress(t.kwargs),
                tensors: vec![tensor.clone()],
                input: input.clone(),
                reps: runs,
                options: t.options,
            }
        })
        .collect())
}

/// Runs the reference on workload `w` in a Python process of its own. The outer error is the
/// harness failing; the inner one is the reference failing on this workload.
fn run_reference(python: &Path, work: &Path, w: &Workload) -> Result<Result<Side>> {
    let plan = serde_json::json!({
        "workloads": [{
            "name": w.name,
            "kind": w.kind.script_name(),
            "kwargs": match &w.kind {
                Kind::Compress(kwargs) => kwargs.clone(),
                _ => Value::Null,
            },
            "previous": match &w.kind {
                Kind::Update(path, _) => Value::from(path.display().to_string()),
                _ => Value::Null,
            },
            "input": w.input,
            "reps": w.reps,
        }]
    });
    std::fs::write(work.join("plan.json"), serde_json::to_vec_pretty(&plan)?)?;
    let results = run_script(
        python,
        work,
        ("bench_ref.py", REFERENCE_SCRIPT),
        "ref_results.json",
        "the reference run",
    )?;
    let side = || {
        let r = results
            .get(w.name)
            .ok_or_else(|| anyhow!("no reference result for {}", w.name))?;
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            bail!("{e}");
        }
        side_from_json(r, w.name)
    };
    Ok(side())
}

/// Writes `script` (file name, text) into `work`, runs it as `python SCRIPT WORK` there and
/// returns the JSON it wrote to `results`; a failed run gives the end of its stderr.
fn run_script(
    python: &Path,
    work: &Path,
    (file, text): (&str, &str),
    results: &str,
    what: &str,
) -> Result<Value> {
    let script = work.join(file);
    std::fs::write(&script, text)?;
    let out = Command::new(python)
        .arg(&script)
        .arg(work)
        .current_dir(work)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("{what} failed:\n{tail}");
    }
    Ok(serde_json::from_slice(&std::fs::read(work.join(results))?)?)
}

/// One side as a script recorded it: `encode_s` and `decode_s` (every run), the paths of its
/// `bitstream` and of its `decoded` arrays (`.npz`).
fn side_from_json(r: &Value, name: &str) -> Result<Side> {
    let times = |k: &str| -> Result<Vec<f64>> {
        Ok(serde_json::from_value(
            r.get(k).cloned().unwrap_or(Value::Null),
        )?)
    };
    let path = |k: &str| -> Result<PathBuf> {
        r.get(k)
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("no {k} for {name}"))
    };
    Ok(Side {
        encode_s: min(&times("encode_s")?),
        decode_s: min(&times("decode_s")?),
        bytes: std::fs::read(path("bitstream")?)?,
        decoded: read_npz(&path("decoded")?)?,
    })
}

/// Our Python package on the workload the reference just ran (its `plan.json` is still in
/// `work`): the 1-thread side, then the all-cores side.
fn run_ours_python(python: &Path, work: &Path, w: &Workload) -> Result<(Side, Side)> {
    let results = run_script(
        python,
        work,
        ("bench_ours.py", OURS_PYTHON_SCRIPT),
        "py_results.json",
        "our Python package",
    )?;
    let r = results
        .get(w.name)
        .ok_or_else(|| anyhow!("no Python result for {}", w.name))?;
    let side = |label: &str| {
        r.get(label)
            .ok_or_else(|| anyhow!("no {label} side for {}", w.name))
            .and_then(|s| side_from_json(s, w.name))
    };
    Ok((side("one")?, side("all")?))
}

/// Ours on `threads` worker threads (`None`: all cores). An update is coded from the states its
/// previous update left (cloned before each timed call, outside the timing), and decoded as a
/// receiver of a sequence does: recording the state the next update needs.
fn run_ours(w: &Workload, threads: Option<usize>) -> Result<Side> {
    let opts = w.options.clone().with_threads(threads);
    let mut decode_opts = DecodeOptions::new()
        .with_threads(threads)
        .with_keep_levels(false)
        .with_update_state(false);
    let (mut enc_state, mut dec_state) = (EncoderState::default(), DecoderState::default());
    if let Kind::Update(_, previous) = &w.kind {
        let first = encode_incremental(
            EncodeInput::from_tensors(previous)?,
            &opts,
            &mut enc_state,
            true,
        )?;
        decode_opts = decode_opts.with_update_state(true);
        decode_stream(&first.bytes, &mut dec_state, &decode_opts)?;
    }
    let update = matches!(w.kind, Kind::Update(..));
    let mut encode_s = Vec::with_capacity(w.reps);
    let mut bytes = Vec::new();
    for _ in 0..w.reps {
        let mut state = enc_state.clone();
        let t0 = Instant::now();
        let input = EncodeInput::from_tensors(&w.tensors)?;
        bytes = if update {
            encode_incremental(input, &opts, &mut state, true)?.bytes
        } else {
            encode(&input, &opts)?.bytes
        };
        encode_s.push(t0.elapsed().as_secs_f64());
    }
    let mut decode_s = Vec::with_capacity(w.reps);
    let mut decoded = Vec::new();
    for _ in 0..w.reps {
        // What the reference's standalone decode does: bitstream to values. Levels are not
        // handed out, and no incremental state is recorded but an update's (the defaults, which
        // incremental decoding needs, copy every level into the state).
        let mut state = dec_state.clone();
        let t0 = Instant::now();
        let stream = decode_stream(&bytes, &mut state, &decode_opts)?;
        decode_s.push(t0.elapsed().as_secs_f64());
        decoded = stream.tensors.into_iter().map(|t| t.tensor).collect();
    }
    Ok(Side {
        encode_s: min(&encode_s),
        decode_s: min(&decode_s),
        bytes,
        decoded,
    })
}

/// Prints one line of the table: the reference against one thread and all cores of ours, with
/// both of ours checked against the reference's bytes and values; `false` if either differs.
fn print_row(label: &str, values: usize, reps: usize, r: &Side, one: &Side, all: &Side) -> bool {
    // Both thread counts must give the reference's bytes and values.
    let (mut bytes, mut decoded) = compare(all, r);
    let (bytes_1t, decoded_1t) = compare(one, r);
    bytes = bytes.or(bytes_1t.map(|d| format!("1 thread: {d}")));
    decoded = decoded.or(decoded_1t.map(|d| format!("1 thread: {d}")));
    let same = bytes.is_none() && decoded.is_none();
    println!(
        "{:<28} {:>10} {:>4} | {:>9} {:>9} {:>6.2}x {:>9} {:>6.2}x | {:>9} {:>9} {:>6.2}x \
         {:>9} {:>6.2}x | {}, {}",
        label,
        values,
        reps,
        seconds(r.encode_s),
        seconds(one.encode_s),
        r.encode_s / one.encode_s,
        seconds(all.encode_s),
        r.encode_s / all.encode_s,
        seconds(r.decode_s),
        seconds(one.decode_s),
        r.decode_s / one.decode_s,
        seconds(all.decode_s),
        r.decode_s / all.decode_s,
        bytes.unwrap_or_else(|| format!("identical ({} B)", all.bytes.len())),
        decoded.unwrap_or_else(|| "identical".into()),
    );
    same
}

/// `None` if ours matches the reference bit for bit, else the first difference.
fn compare(ours: &Side, reference: &Side) -> (Option<String>, Option<String>) {
    let bytes = if ours.bytes == reference.bytes {
        None
    } else {
        let at = ours
            .bytes
            .iter()
            .zip(&reference.bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.bytes.len().min(reference.bytes.len()));
        Some(format!(
            "{} B vs reference {} B, first difference at byte {at}",
            ours.bytes.len(),
            reference.bytes.len()
        ))
    };
    let mut values = None;
    for r in &reference.decoded {
        let Some(o) = ours.decoded.iter().find(|o| o.name == r.name) else {
            values = Some(format!("{} missing from our decode", r.name));
            break;
        };
        let bits = |t: &Tensor| {
            t.data
                .as_f32_lossless()
                .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        // Floats by bit pattern (−0.0 and NaN count), integers by value.
        let same = match (bits(o), bits(r)) {
            (Some(a), Some(b)) => a == b,
            _ => o.data == r.data,
        };
        if o.shape != r.shape || !same {
            values = Some(format!("{} differs", r.name));
            break;
        }
    }
    if values.is_none() && ours.decoded.len() != reference.decoded.len() {
        values = Some(format!(
            "{} tensors vs reference {}",
            ours.decoded.len(),
            reference.decoded.len()
        ));
    }
    (bytes, values)
}

/// Runs the comparison; `Ok(false)` if any bitstream or decoded tensor differs. A missing
/// interpreter or reference is not an error: the run is skipped with a message.
pub fn run(opts: &Options) -> Result<bool> {
    let version = match probe_python(
        &opts.python,
        "nncodec",
        "import importlib.metadata as m, nncodec; print(m.version('nncodec'))",
    ) {
        Ok(v) => v,
        Err(why) => {
            println!("bench-vs-ref: skipped: {why}");
            return Ok(true);
        }
    };
    let work = std::env::temp_dir().join(format!("nnc-bench-vs-ref-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let outcome = run_in(opts, &version, &work);
    if opts.keep {
        println!("work directory kept: {}", work.display());
    } else {
        std::fs::remove_dir_all(&work).ok();
    }
    outcome
}

fn run_in(opts: &Options, version: &str, work: &Path) -> Result<bool> {
    println!(
        "bench-vs-ref: reference nncodec {version} ({}), ours in process (release build) on 1 \
         thread and on all {} cores",
        opts.python.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("load average at start: {}", load_average());
    let mut list = workloads(opts, work)?;
    if !opts.only.is_empty() {
        let names: Vec<&str> = list.iter().map(|w| w.name).collect();
        if let Some(missing) = opts.only.iter().find(|n| !names.contains(&n.as_str())) {
            bail!(
                "no workload {missing:?} here (there are: {})",
                names.join(", ")
            );
        }
        list.retain(|w| opts.only.iter().any(|n| n == w.name));
    }
    println!(
        "each workload: the reference (its own Python process), then ours on 1 thread, then on \
         all cores"
    );
    let python_side = match &opts.ours_python {
        Some(py) if opts.tools => {
            println!(
                "{}: not run with --tools (the default workloads only)",
                py.display()
            );
            None
        }
        Some(py) => match probe_python(py, "nnc", "import nnc; print(nnc.__version__)") {
            Ok(version) => {
                println!(
                    "then, on the lines \"from Python\", our Python package nnc {version} ({}) \
                     on the same arrays, on 1 thread and on all cores",
                    py.display()
                );
                Some(py.clone())
            }
            Err(why) => {
                println!("from Python: skipped: {why}");
                None
            }
        },
        None => None,
    };
    println!(
        "{:<28} {:>10} {:>4} | {:>9} {:>9} {:>7} {:>9} {:>7} | {:>9} {:>9} {:>7} {:>9} {:>7} | \
         bitstream, decoded",
        "workload",
        "values",
        "runs",
        "enc ref",
        "ours 1T",
        "ratio",
        "ours all",
        "ratio",
        "dec ref",
        "ours 1T",
        "ratio",
        "ours all",
        "ratio"
    );
    let mut all_same = true;
    for w in &list {
        // The reference right before ours on the same workload, so both sides see the machine
        // in about the same state (it is shared, and its speed drifts over minutes).
        let r = run_reference(&opts.python, work, w)?;
        let one = run_ours(w, Some(1)).with_context(|| format!("ours on {}", w.label))?;
        let ours = run_ours(w, None).with_context(|| format!("ours on {}", w.label))?;
        let values: usize = w.tensors.iter().map(Tensor::len).sum();
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                all_same = false;
                println!(
                    "{:<28} {:>10} {:>4} | reference failed: {e:#}; ours (all cores): encode \
                     {:.3}s, decode {:.3}s",
                    w.label, values, w.reps, ours.encode_s, ours.decode_s
                );
                continue;
            }
        };
        all_same &= print_row(&w.label, values, w.reps, &r, &one, &ours);
        if let (Some(py), Kind::Tensor | Kind::Model | Kind::Update(..)) = (&python_side, &w.kind) {
            match run_ours_python(py, work, w) {
                Ok((one, all)) => {
                    all_same &= print_row("  from Python", values, w.reps, &r, &one, &all);
                }
                Err(e) => {
                    all_same = false;
                    println!("  from Python: {e:#}");
                }
            }
        }
    }
    println!("load average at end: {}", load_average());
    println!("(times: fastest of `runs` per side; ratio = reference / ours)");
    Ok(all_same)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet50_has_torchvision_parameter_count() {
        let model = resnet50_state_dict();
        let all: usize = model.iter().map(Tensor::len).sum();
        let running: usize = model
            .iter()
            .filter(|t| t.name.contains("running_"))
            .map(Tensor::len)
            .sum();
        // torchvision: sum(p.numel() for p in resnet50().parameters()) == 25_557_032.
        assert_eq!(all - running, 25_557_032);
        // conv1 + 16 bottlenecks × 3 convs + 4 downsamples = 53 batch norms, 4 tensors each.
        assert_eq!(model.len(), 53 * 5 + 2);
    }

    #[test]
    fn batch_norm_names_follow_torchvision() {
        assert_eq!(batch_norm_of("conv1.weight"), "bn1");
        assert_eq!(batch_norm_of("layer2.3.conv2.weight"), "layer2.3.bn2");
        assert_eq!(
            batch_norm_of("layer4.0.downsample.0.weight"),
            "layer4.0.downsample.1"
        );
    }

    #[test]
    fn times_below_ten_milliseconds_are_given_in_microseconds() {
        assert_eq!(seconds(1.23456), "1.235s");
        assert_eq!(seconds(0.0104), "0.010s");
        assert_eq!(seconds(0.000_256_4), "256us");
    }

    #[test]
    fn randn_matches_splitmix_first_values() {
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        let t = randn_tensor();
        assert_eq!(t.len(), 1 << 20);
        let TensorData::F32(v) = &t.data else {
            panic!("f32 expected")
        };
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn pruning_zeroes_the_smallest_values_of_matrices_only() {
        let t = |name: &str, shape: Vec<usize>, v: Vec<f32>| {
            Tensor::try_new(name, shape, TensorData::F32(v)).expect("shape")
        };
        let w: Vec<f32> = (0..100).map(|i| (i as f32 - 49.5) / 10.0).collect();
        let model = vec![
            t("w", vec![10, 10], w.clone()),
            t("b", vec![100], w.clone()),
        ];
        let out = pruned_by_magnitude(&model, 0.9);
        let TensorData::F32(pw) = &out[0].data else {
            panic!("f32 expected")
        };
        // The ten values of largest magnitude (|x| >= 4.55) stay, the other ninety become 0.
        let kept: Vec<usize> = (0..100).filter(|&i| pw[i] != 0.0).collect();
        assert_eq!(kept, [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]);
        assert!(kept.iter().all(|&i| pw[i] == w[i]));
        assert_eq!(out[1], model[1]);
        assert_eq!(out[0].shape, model[0].shape);
    }

    #[test]
    fn model_dict_gets_float32_and_int32_only() {
        let t = |name: &str, data| Tensor::try_new(name, vec![2], data).expect("shape");
        let out = to_reference_dtypes(vec![
            t("ids", TensorData::I64(vec![0, 511])),
            t("half", TensorData::F16(vec![0x3c00, 0xc000])),
            t("w", TensorData::F32(vec![0.5, -0.0])),
        ])
        .expect("convertible");
        assert_eq!(out[0].data, TensorData::I32(vec![0, 511]));
        assert_eq!(out[1].data, TensorData::F32(vec![1.0, -2.0]));
        assert_eq!(out[2].data, TensorData::F32(vec![0.5, -0.0]));
        assert!(to_reference_dtypes(vec![t("big", TensorData::I64(vec![0, 1 << 40]))]).is_err());
    }
}
