//! Every bitstream of the reference's conformance vectors: parse every unit, compare the
//! `hls.json` view with the reference decoder's dictionaries, and re-encode.

use std::fs;
use std::path::{Path, PathBuf};

use nnc_bitstream::{
    encode_unit_with_header, parse_unit, BitWriter, NnrUnit, ParseContext, SideInfo, UnitReader,
};
use serde_json::{Map, Value};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors")
}

fn read_json(p: &Path) -> Value {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (case name, directory holding bitstream.nnc and hls.json) for every bitstream of the
/// manifest: the case folder itself or its `step_NN` folders.
fn bitstreams() -> Vec<(String, PathBuf)> {
    let dir = vectors_dir();
    let manifest = read_json(&dir.join("manifest.json"));
    let cases = manifest["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    let mut out = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name").to_owned();
        let files: Vec<String> = match &case["files"] {
            Value::Object(m) => m.keys().cloned().collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .filter(|f| f.ends_with("bitstream.nnc"))
            .map(|f| dir.join(f).parent().expect("parent").to_path_buf())
            .collect();
        dirs.sort();
        assert!(!dirs.is_empty(), "case {name} lists no bitstream");
        out.extend(dirs.into_iter().map(|d| (name.clone(), d)));
    }
    out
}

/// Side information a case needs: `decode.side_info.parameter_dimensions` of its config.
fn side_info(case_dir: &Path) -> SideInfo {
    let mut side = SideInfo::default();
    let cfg_path = case_dir.join("config.json");
    if !cfg_path.exists() {
        return side;
    }
    let cfg = read_json(&cfg_path);
    if let Some(dims) = cfg["decode"]["side_info"]["parameter_dimensions"].as_object() {
        for (name, d) in dims {
            let d: Vec<u64> = d
                .as_array()
                .expect("dims")
                .iter()
                .map(|x| x.as_u64().expect("dim"))
                .collect();
            side.tensor_dimensions.insert(name.clone(), d);
        }
    }
    side
}

fn case_dir(name: &str) -> PathBuf {
    vectors_dir().join(name)
}

#[test]
fn every_vector_matches_hls_json_and_re_encodes() {
    let streams = bitstreams();
    assert!(
        streams.len() >= 105,
        "only {} bitstreams found",
        streams.len()
    );
    let mut units_checked = 0;
    let mut ndus = 0;
    for (case, dir) in &streams {
        let side = side_info(&case_dir(case));
        let data = fs::read(dir.join("bitstream.nnc")).expect("bitstream");
        let expected = read_json(&dir.join("hls.json"));
        let expected = expected.as_array().expect("hls.json is a list");
        let mut reader = UnitReader::new(&data);
        let mut ctx = ParseContext::default();
        let mut i = 0;
        while let Some(raw) = reader
            .next()
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        {
            let parsed = parse_unit(raw, &mut ctx, &side)
                .unwrap_or_else(|e| panic!("{} unit {}: {e}", dir.display(), raw.index));
            let got = parsed.to_hls_json();
            let want: &Map<String, Value> = expected
                .get(i)
                .and_then(Value::as_object)
                .unwrap_or_else(|| panic!("{}: hls.json lacks unit {i}", dir.display()));
            for (k, v) in want {
                assert_eq!(got.get(k), Some(v), "{} unit {i}: key {k}", dir.display());
            }
            for k in got.keys() {
                assert!(
                    want.contains_key(k),
                    "{} unit {i}: extra key {k}",
                    dir.display()
                );
            }
            assert_eq!(&got, want, "{} unit {i}", dir.display());
            let got_keys: Vec<&String> = got.keys().collect();
            let want_keys: Vec<&String> = want.keys().collect();
            assert_eq!(got_keys, want_keys, "{} unit {i}: key order", dir.display());

            let again = encode_unit_with_header(&parsed.header, &parsed.unit, &parsed.context)
                .unwrap_or_else(|e| panic!("{} unit {i}: re-encode: {e}", dir.display()));
            assert!(
                again == raw.bytes,
                "{} unit {i}: re-encoded bytes differ",
                dir.display()
            );
            if let NnrUnit::Ndu { header, .. } = &parsed.unit {
                // the header alone re-encodes to exactly the original header bytes
                let mut w = BitWriter::new();
                parsed.header.write(&mut w).expect("unit header");
                header.write(&mut w, &parsed.context).expect("ndu header");
                let start = parsed.size.field_len();
                assert_eq!(
                    w.as_bytes(),
                    &raw.bytes[start..parsed.payload_offset],
                    "{} unit {i}: NDU header bytes",
                    dir.display()
                );
                ndus += 1;
            }
            units_checked += 1;
            i += 1;
        }
        assert_eq!(i, expected.len(), "{}: unit count", dir.display());
    }
    assert!(ndus > 100, "{ndus} NDUs");
    println!(
        "{} bitstreams, {units_checked} units, {ndus} NDUs",
        streams.len()
    );
}

/// Parses a whole bitstream; `Err` at the first failure.
fn parse_all(data: &[u8], side: &SideInfo) -> Result<usize, nnc_bitstream::Error> {
    let mut reader = UnitReader::new(data);
    let mut ctx = ParseContext::default();
    let mut n = 0;
    while let Some(raw) = reader.next()? {
        parse_unit(raw, &mut ctx, side)?;
        n += 1;
    }
    Ok(n)
}

fn hostile_cases() -> Vec<PathBuf> {
    [
        "t_default_2d",
        "c_scan_order2",
        "t_codebook_clustered_dq",
        "c_block_bn",
        "c_block_dc_lowrank",
        "seq_tca_diff/step_01",
        "c_block_pre_signalling_side_info",
    ]
    .iter()
    .map(|c| vectors_dir().join(c))
    .collect()
}

#[test]
fn truncations_are_errors_not_panics() {
    for dir in hostile_cases() {
        let side = side_info(&dir);
        let data = fs::read(dir.join("bitstream.nnc")).expect("bitstream");
        // unit boundaries: truncating there leaves a valid (shorter) stream
        let mut boundaries = vec![0];
        let mut reader = UnitReader::new(&data);
        while let Some(raw) = reader.next().expect("split") {
            boundaries.push(raw.byte_offset + raw.bytes.len());
        }
        for len in 0..data.len() {
            let res = parse_all(&data[..len], &side);
            if boundaries.contains(&len) {
                assert!(res.is_ok(), "{} cut at {len}: {res:?}", dir.display());
            } else {
                assert!(res.is_err(), "{} cut at {len} parsed", dir.display());
            }
        }
        // the header parsers on their own, cut short inside a unit
        let mut reader = UnitReader::new(&data);
        let mut ctx = ParseContext::default();
        while let Some(raw) = reader.next().expect("split") {
            let full = parse_unit(raw, &mut ctx.clone(), &side).expect("full unit");
            let header_end = full.payload_offset;
            for cut in raw.size_field_len()..header_end {
                let mut bytes = raw.bytes[..cut].to_vec();
                // keep the size field consistent so that only the header is short
                let n = bytes.len() as u64;
                if raw.nnr_unit_size_flag {
                    bytes[..4].copy_from_slice(&((n as u32) | 0x8000_0000).to_be_bytes());
                } else {
                    bytes[..2].copy_from_slice(&(n as u16).to_be_bytes());
                }
                let short = nnc_bitstream::RawUnit {
                    nnr_unit_size: n,
                    bytes: &bytes,
                    ..raw
                };
                let res = parse_unit(short, &mut ctx.clone(), &side);
                // an NDU cut right at its header end is still a header with an empty payload
                assert!(
                    res.is_err(),
                    "{} unit {} cut at {cut}",
                    dir.display(),
                    raw.index
                );
            }
            parse_unit(raw, &mut ctx, &side).expect("advance context");
        }
    }
}

#[test]
fn random_bit_flips_never_panic() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    let mut total = 0;
    for dir in hostile_cases() {
        let side = side_info(&dir);
        let data = fs::read(dir.join("bitstream.nnc")).expect("bitstream");
        // flips concentrated on the first 64 bytes (headers) and anywhere
        for round in 0..2000 {
            let mut d = data.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let span = if round % 2 == 0 {
                    d.len().min(64)
                } else {
                    d.len()
                };
                let byte = (next() % span as u64) as usize;
                d[byte] ^= 1 << (next() % 8);
            }
            total += 1;
            if parse_all(&d, &side).is_err() {
                errors += 1;
            }
        }
        // random garbage
        for _ in 0..500 {
            let len = (next() % 200) as usize;
            let d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse_all(&d, &side);
        }
    }
    assert!(
        errors > total / 10,
        "only {errors} of {total} flipped streams rejected"
    );
}
