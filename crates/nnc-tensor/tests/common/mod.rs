//! Shared helpers of the hostile-input tests: the conformance corpus, a seeded PRNG, mutators and
//! a decode guarded by `catch_unwind` with its wall time.
#![allow(dead_code)]

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use nnc_bitstream::{encode_unit_with_header, parse_unit, NnrUnit, ParseContext, UnitReader};
use nnc_tensor::{decode_stream, hls_json, DecodeOptions, DecoderState, ErrorKind};
use serde_json::Value;

/// splitmix64: tiny, seedable, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
    /// A value that is often small, sometimes a power of two, sometimes huge.
    pub fn interesting_u64(&mut self, around: u64) -> u64 {
        match self.below(9) {
            0 => 0,
            1 => 1,
            2 => around.saturating_add(1),
            3 => around.saturating_sub(1),
            4 => around.saturating_mul(2),
            5 => 1 << self.below(40),
            6 => self.next_u64() >> self.below(64),
            7 => u64::MAX >> self.below(8),
            _ => self.below(64) as u64,
        }
    }
}

/// Root of the conformance vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors")
}

/// One conformance case: its bitstreams in decoding order and the decoder settings it needs.
pub struct Vector {
    pub name: String,
    pub steps: Vec<Vec<u8>>,
    pub opts: DecodeOptions,
}

/// Every case of `manifest.json`, with the bitstream of each step.
pub fn load_vectors() -> Vec<Vector> {
    let dir = vectors_dir();
    let manifest: Value = read_json(&dir.join("manifest.json"));
    let cases = manifest["cases"].as_array().expect("manifest has cases");
    cases
        .iter()
        .map(|case| {
            let name = case["name"].as_str().expect("case name").to_string();
            let config = match case.get("config") {
                Some(c) if c.is_object() => c.clone(),
                _ => read_json(&dir.join(&name).join("config.json")),
            };
            let step_configs: Vec<&Value> = match config["steps"].as_array() {
                Some(steps) if config["kind"] == "sequence" => steps.iter().collect(),
                _ => vec![&config],
            };
            let steps = step_configs
                .iter()
                .map(|s| {
                    let rel = s["files"]["bitstream"].as_str().expect("bitstream path");
                    std::fs::read(dir.join(&name).join(rel)).expect("bitstream readable")
                })
                .collect();
            Vector {
                opts: options_for(&config),
                name,
                steps,
            }
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The decoder settings a case's `config.json` asks for (side information, recomposition, HDSP).
pub fn options_for(config: &Value) -> DecodeOptions {
    let decode = &config["decode"];
    let mut opts = DecodeOptions::new();
    if let Some(dims) = decode
        .pointer("/side_info/parameter_dimensions")
        .and_then(Value::as_object)
    {
        for (name, shape) in dims {
            let shape: Vec<u64> = serde_json::from_value(shape.clone()).expect("dims");
            opts = opts.with_tensor_dimensions(name.clone(), shape);
        }
    }
    if let Some(r) = decode["recompose"].as_bool() {
        opts = opts.with_recompose_decomposed(r);
    }
    opts.with_hdsp(decode["hdsp"].as_bool().unwrap_or(false))
}

/// What one guarded decode did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ok,
    Err(ErrorKind),
    Panic(String),
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent inside [`guarded`] and defers to the default
/// hook elsewhere, so assertion failures of the tests themselves still print.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
}

/// Runs `f` under `catch_unwind`, returning its result or the panic message, and the wall time.
pub fn guarded<T>(f: impl FnOnce() -> T) -> (Result<T, String>, Duration) {
    install_quiet_hook();
    QUIET.with(|q| q.set(true));
    let start = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(f));
    let elapsed = start.elapsed();
    QUIET.with(|q| q.set(false));
    let r = r.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into())
    });
    (r, elapsed)
}

/// Decodes `bytes` with a copy of `state` (and parses its headers as `nnc info` does), both under
/// `catch_unwind`. Returns the decode outcome (a panic in either counts) and the total time.
pub fn decode_guarded(
    bytes: &[u8],
    state: &DecoderState,
    opts: &DecodeOptions,
) -> (Outcome, Duration) {
    let (info, t_info) = guarded(|| hls_json(bytes, opts).map(|_| ()));
    if let Err(msg) = info {
        return (Outcome::Panic(format!("hls_json: {msg}")), t_info);
    }
    let mut state = state.clone();
    let (r, t) = guarded(|| decode_stream(bytes, &mut state, opts).map(|_| ()));
    let outcome = match r {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Err(e.kind()),
        Err(msg) => Outcome::Panic(msg),
    };
    (outcome, t + t_info)
}

/// Byte offsets and lengths of the units of a well-formed stream.
pub fn unit_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut r = UnitReader::new(bytes);
    let mut spans = Vec::new();
    while let Ok(Some(u)) = r.next() {
        spans.push((u.byte_offset, u.bytes.len()));
    }
    spans
}

/// One random corruption of `bytes` and its description. Positions are biased towards unit
/// headers, where a flip changes the syntax rather than only the arithmetic-coded payload.
pub fn mutate(bytes: &[u8], rng: &mut Rng, opts: &DecodeOptions) -> (Vec<u8>, String) {
    let spans = unit_spans(bytes);
    let mut out = bytes.to_vec();
    let pick_pos = |rng: &mut Rng, len: usize| -> usize {
        if len == 0 {
            return 0;
        }
        if !spans.is_empty() && rng.below(2) == 0 {
            let (off, ulen) = spans[rng.below(spans.len())];
            (off + rng.below(ulen.clamp(1, 48))).min(len - 1)
        } else {
            rng.below(len)
        }
    };
    match rng.below(16) {
        0..=4 => {
            let at = pick_pos(rng, out.len());
            let bit = rng.below(8);
            if let Some(b) = out.get_mut(at) {
                *b ^= 1 << bit;
            }
            (out, format!("flip bit {bit} of byte {at}"))
        }
        5 | 6 => {
            let n = 2 + rng.below(7);
            let mut desc = String::from("flip bits");
            for _ in 0..n {
                let at = pick_pos(rng, out.len());
                let bit = rng.below(8);
                if let Some(b) = out.get_mut(at) {
                    *b ^= 1 << bit;
                }
                desc += &format!(" {at}.{bit}");
            }
            (out, desc)
        }
        7 => {
            let at = pick_pos(rng, out.len() + 1);
            let b = rng.byte();
            out.insert(at.min(out.len()), b);
            (out, format!("insert {b:#04x} at {at}"))
        }
        8 => {
            if out.is_empty() {
                return (out, "nothing to delete".into());
            }
            let at = pick_pos(rng, out.len());
            out.remove(at);
            (out, format!("delete byte {at}"))
        }
        9 => {
            let at = pick_pos(rng, out.len());
            let b = [0x00, 0xff, 0x80, 0x7f][rng.below(4)];
            if let Some(x) = out.get_mut(at) {
                *x = b;
            }
            (out, format!("set byte {at} to {b:#04x}"))
        }
        10 => unit_level(bytes, &spans, rng),
        _ => match structured(bytes, rng, opts) {
            Some(m) => m,
            None => {
                let at = pick_pos(rng, out.len());
                if let Some(b) = out.get_mut(at) {
                    *b = b.wrapping_add(1);
                }
                (out, format!("increment byte {at}"))
            }
        },
    }
}

/// Drops, duplicates or swaps whole units (framing stays valid).
fn unit_level(bytes: &[u8], spans: &[(usize, usize)], rng: &mut Rng) -> (Vec<u8>, String) {
    if spans.len() < 2 {
        return (bytes.to_vec(), "no units to rearrange".into());
    }
    let mut units: Vec<&[u8]> = spans.iter().map(|&(o, l)| &bytes[o..o + l]).collect();
    let i = rng.below(units.len());
    let j = rng.below(units.len());
    let desc = match rng.below(3) {
        0 => {
            units.remove(i);
            format!("drop unit {i}")
        }
        1 => {
            units.insert(j, units[i]);
            format!("copy unit {i} to {j}")
        }
        _ => {
            units.swap(i, j);
            format!("swap units {i} and {j}")
        }
    };
    (units.concat(), desc)
}

/// Re-encodes one NDU with a changed header field or payload, keeping the framing valid.
fn structured(bytes: &[u8], rng: &mut Rng, opts: &DecodeOptions) -> Option<(Vec<u8>, String)> {
    let mut reader = UnitReader::new(bytes);
    let mut ctx = ParseContext::default();
    let mut units = Vec::new();
    while let Ok(Some(raw)) = reader.next() {
        let parsed = parse_unit(raw, &mut ctx, &opts.side_info).ok()?;
        units.push((raw.bytes, parsed));
    }
    let ndus: Vec<usize> = units
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| matches!(p.unit, NnrUnit::Ndu { .. }))
        .map(|(i, _)| i)
        .collect();
    let target = *ndus.get(rng.below(ndus.len().max(1)))?;
    let (_, parsed) = &units[target];
    let NnrUnit::Ndu { header, payload } = &parsed.unit else {
        return None;
    };
    let mut h = header.clone();
    let mut p = payload.to_vec();
    let desc = match rng.below(13) {
        0 => {
            let n = rng.below(p.len() + 1);
            p.truncate(n);
            format!("unit {target}: payload truncated to {n}")
        }
        1 => {
            let n = 1 + rng.below(64);
            p.extend((0..n).map(|_| rng.byte()));
            format!("unit {target}: {n} random payload bytes appended")
        }
        2 => {
            for _ in 0..1 + rng.below(4) {
                if !p.is_empty() {
                    let at = rng.below(p.len());
                    p[at] ^= 1 << rng.below(8);
                }
            }
            format!("unit {target}: payload bits flipped")
        }
        3 | 4 => {
            if h.tensor_dimensions.is_empty() {
                return None;
            }
            let i = rng.below(h.tensor_dimensions.len());
            let d = rng.interesting_u64(h.tensor_dimensions[i]);
            h.tensor_dimensions[i] = d;
            h.tensor_dimensions_flag = Some(true);
            format!("unit {target}: tensor_dimensions[{i}] = {d}")
        }
        5 => {
            if rng.below(2) == 0 && h.tensor_dimensions.len() > 1 {
                h.tensor_dimensions.pop();
            } else {
                h.tensor_dimensions.push(1 + rng.below(5) as u64);
            }
            h.tensor_dimensions_flag = Some(true);
            format!(
                "unit {target}: tensor_dimensions = {:?}",
                h.tensor_dimensions
            )
        }
        6 => {
            h.dq_flag = h.dq_flag.map(|f| !f);
            format!("unit {target}: dq_flag toggled")
        }
        7 => {
            let s = rng.below(16) as u8;
            h.scan_order = Some(s);
            format!("unit {target}: scan_order = {s}")
        }
        8 => {
            let n = rng.byte();
            h.cabac_unary_length_minus1 = n;
            h.cabac_unary_length_flag = Some(true);
            format!("unit {target}: cabac_unary_length_minus1 = {n}")
        }
        9 => {
            let c = rng.below(16) as u8;
            h.compressed_parameter_types = c;
            format!("unit {target}: compressed_parameter_types = {c}")
        }
        10 => {
            h.decomposition_rank = Some(rng.interesting_u64(4));
            h.g_number_of_rows = Some(rng.interesting_u64(16));
            format!(
                "unit {target}: decomposition_rank {:?}, g_number_of_rows {:?}",
                h.decomposition_rank, h.g_number_of_rows
            )
        }
        11 => {
            let cb = h.codebook.as_mut()?;
            match rng.below(3) {
                0 => cb.codebook_zero_offset = rng.interesting_u64(cb.codebook_zero_offset),
                1 => {
                    let n = rng.below(cb.values.len() + 2);
                    cb.values.resize(n, 7);
                    cb.codebook_size = n as u64;
                }
                _ => cb.codebook_size = rng.interesting_u64(cb.codebook_size),
            }
            format!("unit {target}: codebook changed")
        }
        _ => {
            h.temporal_context_modeling_flag = h.temporal_context_modeling_flag.map(|f| !f);
            h.put_node_depth = h.put_node_depth.map(|d| d ^ 1);
            format!("unit {target}: temporal_context_modeling_flag/put_node_depth changed")
        }
    };
    let unit = NnrUnit::Ndu {
        header: h,
        payload: p.into(),
    };
    let encoded = encode_unit_with_header(&parsed.header, &unit, &parsed.context).ok()?;
    let mut out = Vec::with_capacity(bytes.len() + 64);
    for (i, (raw, _)) in units.iter().enumerate() {
        if i == target {
            out.extend_from_slice(&encoded);
        } else {
            out.extend_from_slice(raw);
        }
    }
    Some((out, desc))
}

/// Re-encodes `bytes` with `edit(ndu_number, header)` applied to every NDU header (`ndu_number`
/// counts NDUs from 0); the payloads and all other units are kept.
pub fn edit_ndus(
    bytes: &[u8],
    opts: &DecodeOptions,
    mut edit: impl FnMut(usize, &mut nnc_bitstream::NduHeader),
) -> Vec<u8> {
    let mut reader = UnitReader::new(bytes);
    let mut ctx = ParseContext::default();
    let mut out = Vec::new();
    let mut ndu = 0;
    while let Some(raw) = reader.next().expect("framing") {
        let parsed = parse_unit(raw, &mut ctx, &opts.side_info).expect("parse");
        match &parsed.unit {
            NnrUnit::Ndu { header, payload } => {
                let mut h = header.clone();
                edit(ndu, &mut h);
                ndu += 1;
                let unit = NnrUnit::Ndu {
                    header: h,
                    payload: payload.clone(),
                };
                out.extend(
                    encode_unit_with_header(&parsed.header, &unit, &parsed.context)
                        .expect("encode"),
                );
            }
            _ => out.extend_from_slice(raw.bytes),
        }
    }
    out
}

/// The conformance case called `name`.
pub fn vector(name: &str) -> Vector {
    load_vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}
