//! Level-coding conformance against the reference's vectors in `conformance/vectors/`.
//!
//! For every NDU that carries one INT or FLOAT tensor (no blocks, no TCA/HDSP sequences) this test
//! locates the arithmetic-coded payload at the end of the unit (the header length is found by
//! trying every split: only the true one decodes to exactly the remaining bytes with the expected
//! levels), then checks that
//! - decoding gives the reference's levels (`levels.np[yz]`) and consumes the whole unit,
//! - the entry-point-creating decoder reproduces `cabac_entry_point_list` from `hls.json`,
//! - decoding from those entry points gives the same levels,
//! - re-encoding the levels reproduces the payload bytes exactly.
//!
//! It does not parse NNR headers; that is the bitstream crate's job.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::collections::BTreeMap;
use std::path::Path;

use nnc_cabac::{
    decode_layer, decode_layer_and_create_entry_points, decode_layer_with_entry_points,
    encode_layer, ArithDecoder, ArithEncoder, EncodeLayerOptions, HdspMode, LayerConfig,
    LayerHistory,
};
use serde_json::Value;

/// Parse a little-endian int32/int64/int16/int8 C-order `.npy` into i32 values.
fn parse_npy(bytes: &[u8]) -> Option<Vec<i32>> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return None;
    }
    let (hlen, hstart) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(bytes.get(hstart..hstart + hlen)?).ok()?;
    if header.contains("'fortran_order': True") {
        return None;
    }
    let descr = header.split("'descr':").nth(1)?.split('\'').nth(1)?;
    let shape = header
        .split("'shape':")
        .nth(1)?
        .split('(')
        .nth(1)?
        .split(')')
        .next()?;
    let count: usize = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>().unwrap())
        .product();
    let data = &bytes[hstart + hlen..];
    let width = match descr {
        "<i4" => 4,
        "<i8" => 8,
        "<i2" => 2,
        "|i1" => 1,
        _ => return None,
    };
    let vals = data
        .get(..count * width)?
        .chunks_exact(width)
        .map(|c| match width {
            4 => i32::from_le_bytes(c.try_into().unwrap()),
            8 => i64::from_le_bytes(c.try_into().unwrap()) as i32,
            2 => i32::from(i16::from_le_bytes(c.try_into().unwrap())),
            _ => i32::from(c[0] as i8),
        });
    Some(vals.collect())
}

/// Members of a stored (uncompressed) `.npz`, by name without the `.npy` suffix.
fn parse_npz(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i + 30 <= bytes.len() && bytes[i..i + 4] == *b"PK\x03\x04" {
        let le16 = |o: usize| usize::from(u16::from_le_bytes([bytes[i + o], bytes[i + o + 1]]));
        let method = le16(8);
        let name_len = le16(26);
        let extra_len = le16(28);
        let name = String::from_utf8_lossy(&bytes[i + 30..i + 30 + name_len]).to_string();
        let data_start = i + 30 + name_len + extra_len;
        if method != 0 {
            break;
        }
        // Stored member: the .npy header tells its own length.
        let Some(values) = parse_npy(&bytes[data_start..]) else {
            break;
        };
        let hlen = if bytes[data_start + 6] == 1 {
            10 + usize::from(u16::from_le_bytes([
                bytes[data_start + 8],
                bytes[data_start + 9],
            ]))
        } else {
            12 + u32::from_le_bytes(bytes[data_start + 8..data_start + 12].try_into().unwrap())
                as usize
        };
        let header = String::from_utf8_lossy(&bytes[data_start..data_start + hlen]);
        let width = if header.contains("<i8") {
            8
        } else if header.contains("<i2") {
            2
        } else if header.contains("|i1") {
            1
        } else {
            4
        };
        let mut next = data_start + hlen + values.len() * width;
        // Skip a data descriptor if one follows.
        if bytes.get(next..next + 4) == Some(b"PK\x07\x08") {
            next += 24;
        }
        out.insert(name.trim_end_matches(".npy").to_string(), values);
        i = next;
    }
    out
}

struct Case<'v> {
    name: String,
    tensor: String,
    base: Option<Vec<i32>>,
    hdsp_hist: Option<Vec<i8>>,
    unit: &'v [u8],
    cfg: LayerConfig,
    qp_bits: Option<(u32, i32)>,
    levels: Vec<i32>,
    eps: Option<Vec<u64>>,
    param_opt: bool,
    row_skip: bool,
    /// The vector's encoder input equals the decoded levels. When it does not (bit-depth-limited DQ
    /// indices of the wrong parity), re-encoding cannot reproduce the param_opt choices, which the
    /// reference makes on the raw input (deepcabac.md §6.1).
    reencodable: bool,
}

impl Case<'_> {
    fn history(&self) -> LayerHistory<'_> {
        LayerHistory {
            base_levels: self.base.as_deref(),
            hdsp_mode: if self.hdsp_hist.is_some() {
                HdspMode::TensorOn
            } else {
                HdspMode::AlwaysOff
            },
            hdsp_hist: self.hdsp_hist.as_deref(),
        }
    }
}

/// Per-tensor decoder state carried through a sequence of bitstreams (hls.md §6.4–6.5).
#[derive(Default)]
struct SeqState {
    /// Last decoded levels (TCA base).
    base: BTreeMap<String, Vec<i32>>,
    /// HDSP in use, and the cumulative non-zero history.
    hdsp: bool,
    hist: BTreeMap<String, Vec<i8>>,
}

impl SeqState {
    fn update(&mut self, tensor: &str, decoded: &[i32]) {
        self.base.insert(tensor.to_string(), decoded.to_vec());
        if self.hdsp {
            let h = self
                .hist
                .entry(tensor.to_string())
                .or_insert_with(|| vec![0; decoded.len()]);
            for (h, &v) in h.iter_mut().zip(decoded) {
                if v != 0 {
                    *h = 1;
                }
            }
        }
    }
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Try every header length; return (payload offset, decoded levels) for the split that decodes
/// to exactly the rest of the unit with the expected levels (or those levels minus the codebook
/// zero offset).
fn locate_payload(case: &Case<'_>) -> Option<(usize, Vec<i32>)> {
    let hist = case.history();
    let cbz = case.cfg.codebook_zero_offset as i32;
    for h in 1..case.unit.len() {
        let payload = &case.unit[h..];
        let mut dec = ArithDecoder::new(payload);
        if let Some((bits, offset)) = case.qp_bits {
            if dec.iae_v(bits) != offset {
                continue;
            }
        }
        let mut out = vec![0; case.levels.len()];
        if decode_layer(&mut dec, &case.cfg, &hist, &mut out).is_err() {
            continue;
        }
        if dec.finish().ok() != Some(payload.len()) {
            continue;
        }
        let shifted: Vec<i32> = out.iter().map(|v| v + cbz).collect();
        if out == case.levels || (cbz != 0 && shifted == case.levels) {
            return Some((h, out));
        }
    }
    None
}

fn collect_cases<'v>(
    dir: &Path,
    config: &Value,
    bitstream: &'v [u8],
    state: &SeqState,
) -> Vec<Case<'v>> {
    let hls: Value = serde_json::from_slice(&std::fs::read(dir.join("hls.json")).unwrap()).unwrap();
    let units = config["nnr_units"].as_array().cloned().unwrap_or_default();
    let hls_units = hls.as_array().cloned().unwrap_or_default();
    let meta = config.get("levels_meta").cloned().unwrap_or(Value::Null);
    let tensors: Vec<&String> = meta
        .as_object()
        .map(|m| m.keys().filter(|k| !k.starts_with('_')).collect())
        .unwrap_or_default();
    let levels_by_name: BTreeMap<String, Vec<i32>> =
        if dir.join("levels.npy").exists() && tensors.len() == 1 {
            let v = parse_npy(&std::fs::read(dir.join("levels.npy")).unwrap()).unwrap_or_default();
            BTreeMap::from([(tensors[0].clone(), v)])
        } else if dir.join("levels.npz").exists() {
            parse_npz(&std::fs::read(dir.join("levels.npz")).unwrap())
        } else {
            BTreeMap::new()
        };
    let mps = hls_units.iter().find(|x| u(x, "nnr_unit_type") == Some(1));
    let qp_density = mps.and_then(|m| u(m, "mps_qp_density")).unwrap_or(2) as u32;
    let base_qp = mps
        .and_then(|m| m.get("mps_quantization_parameter"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let enc_info = &config["encoder_internal"]["enc_info"];
    let param_opt = enc_info["param_opt_flag"].as_bool().unwrap_or(true);
    let row_skip = enc_info["row_skip_enabled_flag"].as_u64().unwrap_or(0) == 1;
    let reencodable = config["encoder_levels_equal_decoder_levels"]
        .as_bool()
        .unwrap_or(true);
    let gpi = hls_units
        .first()
        .and_then(|s| u(s, "general_profile_idc"))
        .unwrap_or(0) as u8;

    let mut cases = vec![];
    for (unit, hu) in units.iter().zip(&hls_units) {
        if u(unit, "nnr_unit_type") != Some(5) {
            continue;
        }
        let payload_type = u(hu, "nnr_compressed_data_unit_payload_type").unwrap_or(99);
        if payload_type > 1 || u(hu, "nnr_multiple_topology_elements_present_flag") == Some(1) {
            continue;
        }
        let Some(name) = hu["topology_elem_id"].as_str() else {
            continue;
        };
        let Some(levels) = levels_by_name.get(name) else {
            continue;
        };
        let tm = &meta[name];
        if !matches!(
            tm["approx_method"].as_str(),
            Some("uniform" | "skip" | "codebook")
        ) {
            continue;
        }
        let dims: Vec<usize> = match hu["tensor_dimensions"].as_array() {
            Some(d) => d.iter().map(|x| x.as_u64().unwrap() as usize).collect(),
            None => continue,
        };
        let codebook = tm["approx_method"].as_str() == Some("codebook") && gpi == 1;
        let cfg = LayerConfig {
            dims,
            dq_flag: payload_type == 1 && u(hu, "dq_flag") == Some(1),
            scan_order: u(hu, "scan_order").unwrap_or(0) as u8,
            general_profile_idc: gpi,
            parent_node_id_present_flag: u(hu, "parent_node_id_present_flag") == Some(1),
            codebook_size: if codebook {
                u(hu, "codebook_size__").unwrap_or(0) as u32
            } else {
                0
            },
            codebook_zero_offset: if codebook {
                u(hu, "CbZeroOffset__").unwrap_or(0) as u32
            } else {
                0
            },
            cabac_unary_length: u(hu, "cabac_unary_length_minus1").unwrap_or(10) as u32 + 1,
        };
        let qp_bits = (payload_type == 1).then(|| {
            let qp = tm["qp"].as_i64().unwrap_or(base_qp);
            (6 + qp_density, (qp - base_qp) as i32)
        });
        let off = u(unit, "offset").unwrap() as usize;
        let size = u(unit, "nnr_unit_size").unwrap() as usize;
        let tca = u(hu, "temporal_context_modeling_flag") == Some(1) && gpi == 1;
        let base = if tca {
            state.base.get(name).cloned()
        } else {
            None
        };
        let hdsp_hist = state.hdsp.then(|| {
            state
                .hist
                .get(name)
                .cloned()
                .unwrap_or_else(|| vec![0; levels.len()])
        });
        let eps = hu["cabac_entry_point_list"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_u64().unwrap()).collect());
        cases.push(Case {
            name: format!("{}:{name}", dir.display()),
            tensor: name.to_string(),
            base,
            hdsp_hist,
            unit: &bitstream[off..off + size],
            cfg,
            qp_bits,
            levels: levels.clone(),
            eps,
            param_opt,
            row_skip: row_skip && gpi == 1,
            reencodable,
        });
    }
    cases
}

#[derive(Default)]
struct Tally {
    checked: usize,
    with_eps: usize,
    with_history: usize,
    hdsp_on: usize,
    tca_on: usize,
    reencoded: usize,
    not_reencodable: usize,
    failures: Vec<String>,
}

/// Check every case of one bitstream; decoded levels update the sequence state.
fn check_bitstream(dir: &Path, config: &Value, state: &mut SeqState, t: &mut Tally) {
    let Ok(bitstream) = std::fs::read(dir.join("bitstream.nnc")) else {
        return;
    };
    for case in collect_cases(dir, config, &bitstream, state) {
        let hist = case.history();
        let Some((h, decoded)) = locate_payload(&case) else {
            t.failures.push(format!(
                "{}: no header split decodes to the reference levels",
                case.name
            ));
            continue;
        };
        t.checked += 1;
        if case.base.is_some() || case.hdsp_hist.is_some() {
            t.with_history += 1;
        }
        let payload = &case.unit[h..];
        let start = |dec: &mut ArithDecoder<'_>| {
            if let Some((bits, _)) = case.qp_bits {
                dec.iae_v(bits);
            }
        };

        if let Some(expected_eps) = &case.eps {
            let mut dec = ArithDecoder::new(payload);
            start(&mut dec);
            let mut out = vec![0; decoded.len()];
            let (_, eps) =
                decode_layer_and_create_entry_points(&mut dec, &case.cfg, &hist, &mut out).unwrap();
            if &eps != expected_eps {
                t.failures.push(format!(
                    "{}: entry points {eps:?} != {expected_eps:?}",
                    case.name
                ));
            }
            let mut dec = ArithDecoder::new(payload);
            start(&mut dec);
            let mut out = vec![0; decoded.len()];
            decode_layer_with_entry_points(&mut dec, &case.cfg, &hist, expected_eps, &mut out, 2)
                .unwrap();
            if out != decoded || dec.finish().ok() != Some(payload.len()) {
                t.failures.push(format!(
                    "{}: decoding from the signalled entry points differs",
                    case.name
                ));
            }
            t.with_eps += 1;
        }

        // Re-encode with the HDSP choice the stream signals.
        let mut dec = ArithDecoder::new(payload);
        start(&mut dec);
        let mut out = vec![0; decoded.len()];
        let info = decode_layer(&mut dec, &case.cfg, &hist, &mut out).unwrap();
        t.hdsp_on += usize::from(info.hist_dep_sig_prob_enabled_flag);
        t.tca_on += usize::from(case.base.is_some());
        let mut enc_hist = hist;
        if enc_hist.hdsp_mode == HdspMode::TensorOn && !info.hist_dep_sig_prob_enabled_flag {
            enc_hist.hdsp_mode = HdspMode::TensorOff;
        }
        let mut enc = ArithEncoder::new();
        if let Some((bits, offset)) = case.qp_bits {
            enc.iae_v(bits, offset);
        }
        let opts = EncodeLayerOptions {
            param_opt: case.param_opt,
            row_skip_enabled_flag: case.row_skip,
            ..Default::default()
        };
        match encode_layer(&mut enc, &case.cfg, &enc_hist, &opts, &decoded) {
            Ok(()) if enc.finish() == payload => t.reencoded += 1,
            Ok(()) if !case.reencodable => t.not_reencodable += 1,
            Ok(()) => t
                .failures
                .push(format!("{}: re-encoded payload differs", case.name)),
            Err(e) => t
                .failures
                .push(format!("{}: re-encode failed: {e}", case.name)),
        }
        state.update(&case.tensor, &decoded);
    }
}

#[test]
fn conformance_vectors_levels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors");
    let Ok(entries) = std::fs::read_dir(&root) else {
        eprintln!("no conformance vectors at {}", root.display());
        return;
    };
    let mut dirs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    let mut t = Tally::default();
    for dir in &dirs {
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        if let Some(steps) = config["steps"].as_array() {
            let mut state = SeqState {
                hdsp: !config["steps"][0]["nnc_compress_kwargs"]["hdsp_tool"].is_null(),
                ..Default::default()
            };
            for (i, step) in steps.iter().enumerate() {
                check_bitstream(&dir.join(format!("step_{i:02}")), step, &mut state, &mut t);
            }
        } else {
            check_bitstream(dir, &config, &mut SeqState::default(), &mut t);
        }
    }
    eprintln!(
        "conformance: {} tensors decoded ({} with TCA/HDSP history: {} TCA, {} HDSP on; {} with entry \
         points), {} re-encoded bit-exactly, {} not re-encodable (encoder input unknown)",
        t.checked, t.with_history, t.tca_on, t.hdsp_on, t.with_eps, t.reencoded, t.not_reencodable
    );
    assert!(
        t.failures.is_empty(),
        "{} failures:\n{}",
        t.failures.len(),
        t.failures.join("\n")
    );
    assert!(
        t.checked >= 150 && t.with_eps >= 7 && t.reencoded >= 145,
        "too few cases checked"
    );
}
