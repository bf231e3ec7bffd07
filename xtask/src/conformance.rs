//! The conformance runner: decodes (and, with `--encode`, encodes) every case of a vector set made by
//! the reference's `gen_vectors.py` and compares with what the reference produced.
//!
//! Cases come from the set's `manifest.json` (each file's sha256 is verified), never from a directory
//! walk. Nothing here knows case names or shapes: every decision comes from a case's `config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use nnc_nn::io::read_tensors;
use nnc_tensor::{DecodeOptions, DecoderState, Tensor, TensorData};

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Vector set directory (holding `manifest.json`).
    pub vectors: PathBuf,
    /// Only cases whose name matches this glob (`*` and `?`).
    pub case_glob: Option<String>,
    /// Stop at the first failing case.
    pub first_fail: bool,
    /// Print only failures and the summary.
    pub quiet: bool,
    /// Encoder check: write our bitstream of every case (or sequence step) whose bytes differ
    /// from the reference's into this directory, as `CASE.nnc` or `CASE.step_NN.nnc`.
    pub keep_ours: Option<PathBuf>,
}

/// Outcome of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// `None` if it passed, else why it failed.
    pub failure: Option<String>,
}

/// Totals of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Every case's result, in manifest order.
    pub results: Vec<CaseResult>,
}

impl Summary {
    /// Number of passing cases.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_none()).count()
    }
    /// Number of failing cases.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

/// The vector sets of this repository: the 105 public cases (`conformance/vectors`), the edge
/// cases the public set does not hold (`conformance/edge`, made with `gen_vectors.py --set edge`),
/// then random combinations of options (`conformance/combo`, `--set combo --seed 11`: the single
/// cases of up to 20 KB, the three larger ones that found encoder bugs, and the twelve smallest
/// sequences, models and blocks; `conformance/combo-seed15`, `conformance/combo-seed19` and
/// `conformance/combo-seed65`, the cases of seeds 15, 19 and 65 that found bugs), and blocks
/// with a local scaling decoded with NNCodec's `reconstruct_lsa` (`conformance/lsa`, `--set lsa`).
pub fn default_vector_sets() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("conformance");
    vec![
        root.join("vectors"),
        root.join("edge"),
        root.join("combo"),
        root.join("combo-seed15"),
        root.join("combo-seed19"),
        root.join("combo-seed65"),
        root.join("lsa"),
    ]
}

/// Runs `run` (the decoder or the encoder check) on each set in turn; the results of all.
pub fn run_sets(
    sets: &[PathBuf],
    opts: &RunOptions,
    run: fn(&RunOptions) -> Result<Summary>,
) -> Result<Summary> {
    let mut all = Summary::default();
    for set in sets {
        let summary = run(&RunOptions {
            vectors: set.clone(),
            ..opts.clone()
        })?;
        all.results.extend(summary.results);
    }
    Ok(all)
}

/// Runs the decoder conformance check on every selected case, printing one line per case and a
/// summary line `N passed, N failed`.
pub fn run_decode(opts: &RunOptions) -> Result<Summary> {
    run_with(opts, check_decode_case)
}

/// Runs the encoder conformance check: encodes every case's input with the arguments its
/// `config.json` records and compares the bytes with the reference's bitstream.
pub fn run_encode(opts: &RunOptions) -> Result<Summary> {
    let keep_ours = opts.keep_ours.as_deref();
    run_with(opts, |dir, config| {
        crate::encode_case::check_encode_case(dir, config, keep_ours)
    })
}

fn run_with(opts: &RunOptions, check: impl Fn(&Path, &Value) -> Result<()>) -> Result<Summary> {
    let manifest_path = opts.vectors.join("manifest.json");
    let manifest: Value = read_json(&manifest_path)?;
    let cases = manifest
        .get("cases")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{}: no \"cases\" list", manifest_path.display()))?;
    let mut summary = Summary::default();
    for case in cases {
        let name = case
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("manifest case without a name"))?
            .to_string();
        if let Some(glob) = &opts.case_glob {
            if !glob_match(glob, &name) {
                continue;
            }
        }
        let outcome = verify_files(&opts.vectors, case).and_then(|()| {
            let dir = opts.vectors.join(&name);
            let config = read_json(&dir.join("config.json"))?;
            check(&dir, &config)
        });
        let failure = outcome.err().map(|e| format!("{e:#}"));
        match &failure {
            None if !opts.quiet => println!("PASS {name}"),
            None => {}
            Some(why) => println!("FAIL {name}: {why}"),
        }
        let stop = failure.is_some() && opts.first_fail;
        summary.results.push(CaseResult { name, failure });
        if stop {
            break;
        }
    }
    println!("{} passed, {} failed", summary.passed(), summary.failed());
    Ok(summary)
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Checks every file the manifest lists for a case against its sha256.
fn verify_files(root: &Path, case: &Value) -> Result<()> {
    let Some(files) = case.get("files").and_then(Value::as_object) else {
        return Ok(());
    };
    for (rel, meta) in files {
        let Some(expected) = meta.get("sha256").and_then(Value::as_str) else {
            continue;
        };
        let bytes = std::fs::read(root.join(rel)).with_context(|| format!("reading {rel}"))?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != expected {
            bail!("{rel}: sha256 {actual} differs from the manifest's {expected}");
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `*` matches any run, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// One decodable step of a case: its directory-relative files and the config block describing it.
pub(crate) struct Step<'a> {
    pub(crate) files: &'a serde_json::Map<String, Value>,
}

pub(crate) fn steps_of(config: &Value) -> Result<Vec<Step<'_>>> {
    let kind = config
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("single");
    let step_configs: Vec<&Value> = if kind == "sequence" {
        config
            .get("steps")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("sequence without steps"))?
            .iter()
            .collect()
    } else {
        vec![config]
    };
    step_configs
        .into_iter()
        .map(|s| {
            let files = s
                .get("files")
                .and_then(Value::as_object)
                .ok_or_else(|| anyhow!("no \"files\" map"))?;
            Ok(Step { files })
        })
        .collect()
}

/// Decoder settings a case's `config.json` asks for.
pub(crate) fn decode_options(config: &Value) -> Result<(DecodeOptions, Option<String>)> {
    let decode = config.get("decode").cloned().unwrap_or(Value::Null);
    let mut opts = DecodeOptions::new();
    if let Some(dims) = decode
        .pointer("/side_info/parameter_dimensions")
        .and_then(Value::as_object)
    {
        for (name, shape) in dims {
            let shape: Vec<u64> = serde_json::from_value(shape.clone())
                .with_context(|| format!("side_info dimensions of {name}"))?;
            opts.side_info.tensor_dimensions.insert(name.clone(), shape);
        }
    }
    if let Some(recompose) = decode.get("recompose").and_then(Value::as_bool) {
        opts.recompose_decomposed = recompose;
    }
    opts.hdsp = decode.get("hdsp").and_then(Value::as_bool).unwrap_or(false);
    // NNCodec's `reconstruct_lsa`, as a `decompress` argument or a step of the lower-level recipe.
    opts.apply_local_scaling = decode
        .pointer("/kwargs/reconstruct_lsa")
        .or_else(|| decode.get("reconstruct_lsa"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tensor_id = if decode.get("api").and_then(Value::as_str) == Some("tensor.decode") {
        Some(
            decode
                .get("tensor_id")
                .and_then(Value::as_str)
                .unwrap_or("0")
                .to_string(),
        )
    } else {
        None
    };
    Ok((opts, tensor_id))
}

fn check_decode_case(dir: &Path, config: &Value) -> Result<()> {
    let (opts, tensor_id) = decode_options(config)?;
    let is_sequence = config.get("kind").and_then(Value::as_str) == Some("sequence");
    let mut state = DecoderState::default();
    for (index, step) in steps_of(config)?.iter().enumerate() {
        let outcome = check_decode_step(dir, step, &opts, &mut state, tensor_id.as_deref());
        if is_sequence {
            outcome.with_context(|| format!("step {index}"))?;
        } else {
            outcome?;
        }
    }
    Ok(())
}

pub(crate) fn file_path(dir: &Path, step: &Step<'_>, key: &str) -> Option<PathBuf> {
    step.files
        .get(key)
        .and_then(Value::as_str)
        .map(|rel| dir.join(rel))
}

fn check_decode_step(
    dir: &Path,
    step: &Step<'_>,
    opts: &DecodeOptions,
    state: &mut DecoderState,
    tensor_id: Option<&str>,
) -> Result<()> {
    let bitstream_path =
        file_path(dir, step, "bitstream").ok_or_else(|| anyhow!("no bitstream"))?;
    let bytes = std::fs::read(&bitstream_path)?;

    if let Some(hls_path) = file_path(dir, step, "hls") {
        let expected = read_json(&hls_path)?;
        let actual = nnc_tensor::hls_json(&bytes, opts).context("parsing unit headers")?;
        compare_hls(&expected, &actual)?;
    }

    // The summary is read against the state before the step, as the decode is, and also
    // without any state: an update must summarise on its own.
    // The summary and the levels are the coded tensors'; an applied local scaling changes only
    // the decoded values, so those come from a second decode with it.
    let coded_opts = opts.clone().with_apply_local_scaling(false);
    let summary = nnc_tensor::summarise_stream(&bytes, state, &coded_opts)
        .context("summarising the stream")?;
    let stateless = nnc_tensor::summarise_stream(&bytes, &DecoderState::default(), &coded_opts)
        .context("summarising the stream without a state")?;
    let mut scaled = None;
    if opts.apply_local_scaling {
        let mut before = state.clone();
        scaled = Some(
            nnc_tensor::decode_stream(&bytes, &mut before, opts)
                .context("decoding with scaling")?,
        );
    }
    let decoded = nnc_tensor::decode_stream(&bytes, state, &coded_opts).context("decoding")?;
    check_summary(&bytes, &summary, &stateless, &decoded)?;

    let select = |name: &str| tensor_id.is_none_or(|id| id == name);
    if let Some(levels_path) = file_path(dir, step, "levels") {
        let expected = read_expected(&levels_path, tensor_id)?;
        let actual: Vec<Tensor> = decoded
            .tensors
            .iter()
            .filter(|t| select(&t.tensor.name))
            .filter_map(|t| t.levels_tensor())
            .collect();
        compare_tensor_sets("levels", &expected, &actual)?;
    }
    if let Some(decoded_path) = file_path(dir, step, "decoded") {
        let expected = read_expected(&decoded_path, tensor_id)?;
        let actual: Vec<Tensor> = scaled
            .as_ref()
            .unwrap_or(&decoded)
            .tensors
            .iter()
            .filter(|t| select(&t.tensor.name))
            .map(|t| t.tensor.clone())
            .collect();
        compare_tensor_sets("decoded", &expected, &actual)?;
    }
    Ok(())
}

/// Checks a stream's summary against its decode: the same tensors, shapes, dtypes and QPs in
/// output order, every element coded once, and the NDUs' bytes shared out exactly. Without a
/// state, only the QPs behind a member that needs one may be missing.
fn check_summary(
    bytes: &[u8],
    summary: &[nnc_tensor::TensorSummary],
    stateless: &[nnc_tensor::TensorSummary],
    decoded: &nnc_tensor::DecodedStream,
) -> Result<()> {
    if summary.len() != decoded.tensors.len() {
        bail!(
            "summary: {} tensors, the decode {}",
            summary.len(),
            decoded.tensors.len()
        );
    }
    for ((s, bare), d) in summary.iter().zip(stateless).zip(&decoded.tensors) {
        let t = &d.tensor;
        let qp = d.approximation.qp();
        let coded = match d.approximation {
            nnc_tensor::Approximation::Verbatim => Some(0),
            // A recomposed weight counts its factors' elements.
            nnc_tensor::Approximation::RawFloat if d.levels.is_none() => None,
            _ => Some(t.len() as u64),
        };
        if s.spec.name != t.name
            || s.spec.shape != t.shape
            || s.spec.dtype != t.dtype()
            || s.qp != qp
        {
            bail!(
                "summary of {:?}: {:?} {:?} {:?} qp {:?}, the decode {:?} {:?} {:?} qp {qp:?}",
                t.name,
                s.spec.name,
                s.spec.shape,
                s.spec.dtype,
                s.qp,
                t.name,
                t.shape,
                t.dtype()
            );
        }
        if coded.is_some_and(|n| n != s.coded_values) {
            bail!("summary of {:?}: {} values coded", t.name, s.coded_values);
        }
        if bare.spec != s.spec || bare.bytes != s.bytes || bare.qp.is_some_and(|q| Some(q) != qp) {
            bail!("summary of {:?} without a state: {bare:?}", t.name);
        }
    }
    let mut ndu_bytes = 0usize;
    let mut reader = nnc_bitstream::UnitReader::new(bytes);
    while let Some(raw) = reader.next()? {
        if raw.nnr_unit_type()? == nnc_bitstream::NnrUnitType::Ndu {
            ndu_bytes += raw.bytes.len();
        }
    }
    let shared: f64 = summary.iter().map(|s| s.bytes).sum();
    if (shared - ndu_bytes as f64).abs() > 1e-6 * (ndu_bytes as f64).max(1.0) {
        bail!("summary: {shared} bytes shared out, the NDUs hold {ndu_bytes}");
    }
    Ok(())
}

/// Reads an expected-output file; a `.npy` holds the one tensor the case's decode API returns.
fn read_expected(path: &Path, tensor_id: Option<&str>) -> Result<Vec<Tensor>> {
    read_tensors(path, tensor_id.unwrap_or("0"))
        .with_context(|| format!("reading {}", path.display()))
}

fn compare_hls(expected: &Value, actual: &[serde_json::Map<String, Value>]) -> Result<()> {
    let expected = expected
        .as_array()
        .ok_or_else(|| anyhow!("hls.json is not a list"))?;
    if expected.len() != actual.len() {
        bail!(
            "hls: {} units parsed, reference has {}",
            actual.len(),
            expected.len()
        );
    }
    for (index, (want, got)) in expected.iter().zip(actual).enumerate() {
        let want = want
            .as_object()
            .ok_or_else(|| anyhow!("hls.json unit {index} is not an object"))?;
        let mut keys: Vec<&String> = want.keys().chain(got.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            match (want.get(key), got.get(key)) {
                (Some(w), Some(g)) if json_eq(w, g) => {}
                (w, g) => bail!(
                    "hls: unit {index} field {key}: parsed {}, reference {}",
                    g.map_or("(absent)".to_string(), Value::to_string),
                    w.map_or("(absent)".to_string(), Value::to_string)
                ),
            }
        }
    }
    Ok(())
}

/// JSON equality where integers and integral floats compare by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(p), Some(q), _, _) => p == q,
                (_, _, Some(p), Some(q)) => p == q,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn compare_tensor_sets(what: &str, expected: &[Tensor], actual: &[Tensor]) -> Result<()> {
    let by_name: BTreeMap<&str, &Tensor> = actual.iter().map(|t| (t.name.as_str(), t)).collect();
    let want_names: Vec<&str> = expected.iter().map(|t| t.name.as_str()).collect();
    let mut got_names: Vec<&str> = by_name.keys().copied().collect();
    let mut sorted_want = want_names.clone();
    sorted_want.sort_unstable();
    got_names.sort_unstable();
    if sorted_want != got_names {
        bail!("{what}: tensors {got_names:?}, reference has {sorted_want:?}");
    }
    for want in expected {
        let got = by_name[want.name.as_str()];
        if got.shape != want.shape {
            bail!(
                "{what} {:?}: shape {:?}, reference {:?}",
                want.name,
                got.shape,
                want.shape
            );
        }
        if got.dtype() != want.dtype() {
            bail!(
                "{what} {:?}: dtype {}, reference {}",
                want.name,
                got.dtype().numpy_name(),
                want.dtype().numpy_name()
            );
        }
        if let Some(index) = first_bit_difference(&got.data, &want.data) {
            bail!("{what} {:?}: element {index} differs", want.name);
        }
    }
    Ok(())
}

/// Index of the first element whose bit pattern differs (so `-0.0` and NaN payloads count).
fn first_bit_difference(a: &TensorData, b: &TensorData) -> Option<usize> {
    fn first<T, K: PartialEq>(x: &[T], y: &[T], key: impl Fn(&T) -> K) -> Option<usize> {
        x.iter().zip(y).position(|(p, q)| key(p) != key(q))
    }
    match (a, b) {
        (TensorData::F32(x), TensorData::F32(y)) => first(x, y, |v| v.to_bits()),
        (TensorData::F64(x), TensorData::F64(y)) => first(x, y, |v| v.to_bits()),
        (TensorData::I32(x), TensorData::I32(y)) => first(x, y, |v| *v),
        (TensorData::I64(x), TensorData::I64(y)) => first(x, y, |v| *v),
        _ if a == b => None,
        _ => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("t_*", "t_default_2d"));
        assert!(glob_match("*dq*", "t_uni_dq_1d"));
        assert!(!glob_match("c_*", "t_default_2d"));
        assert!(glob_match("t_one_element_?d", "t_one_element_4d"));
    }

    #[test]
    fn bit_patterns_distinguish_signed_zero() {
        let a = TensorData::F32(vec![0.0, 1.0]);
        let b = TensorData::F32(vec![-0.0, 1.0]);
        assert_eq!(first_bit_difference(&a, &b), Some(0));
        assert_eq!(first_bit_difference(&a, &a), None);
    }
}
