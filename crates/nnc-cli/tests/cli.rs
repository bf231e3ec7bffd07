//! The `nnc` binary on good and bad input: exit codes (0 success, 1 invalid input or runtime
//! error, 2 usage), error messages on stderr with the unit index and byte offset, no panics; and
//! insta snapshots of `nnc info --json` and `nnc --help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .output()
        .expect("nnc runs")
}

/// The folder of a conformance case (a sequence's holds its `step_NN` folders).
fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/vectors")
        .join(name)
}

fn vector(name: &str) -> PathBuf {
    case(name).join("bitstream.nnc")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status 1 with a one-line `nnc:` message and no panic.
fn assert_clean_failure(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    assert!(err.starts_with("nnc: "), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    // The innermost cause is printed once, not repeated by the error chain.
    let last = err.trim_end().rsplit(": ").next().unwrap_or_default();
    assert_eq!(err.matches(last).count(), 1, "{what}: {err}");
    assert!(o.stdout.is_empty(), "{what}: stdout {:?}", o.stdout);
    err
}

#[test]
fn decode_writes_npz_and_npy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let npz = dir.path().join("out.npz");
    let o = nnc(&[
        "decode",
        vector("c_block_bn").to_str().expect("utf-8"),
        "-o",
        npz.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Written entry by entry, the archive equals the whole-model writer's.
    let bytes = std::fs::read(vector("c_block_bn")).expect("read");
    let decoded = nnc_tensor::decode_stream(
        &bytes,
        &mut nnc_tensor::DecoderState::default(),
        &nnc_tensor::DecodeOptions::new(),
    )
    .expect("decode");
    let tensors: Vec<_> = decoded.tensors.into_iter().map(|t| t.tensor).collect();
    let whole = dir.path().join("whole.npz");
    nnc_nn::io::write_npz(&whole, &tensors).expect("write");
    assert_eq!(
        std::fs::read(&npz).expect("written"),
        std::fs::read(&whole).expect("written")
    );
    // No overwrite without --force.
    let o = nnc(&[
        "decode",
        vector("c_block_bn").to_str().expect("utf-8"),
        "-o",
        npz.to_str().expect("utf-8"),
    ]);
    assert!(assert_clean_failure(&o, "overwrite").contains("--force"));

    let npy = dir.path().join("out.npy");
    let o = nnc(&[
        "decode",
        vector("t_default_2d").to_str().expect("utf-8"),
        "-o",
        npy.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&npy)
        .expect("written")
        .starts_with(b"\x93NUMPY"));
}

/// A decode that cannot be written (here: several tensors to one `.npy`) names the output the
/// user gave, not the temporary file it writes through, and leaves nothing in the directory.
#[test]
fn an_unwritable_output_is_named_as_given_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let npy = dir.path().join("out.npy");
    let o = nnc(&[
        "decode",
        vector("c_block_bn").to_str().expect("utf-8"),
        "-o",
        npy.to_str().expect("utf-8"),
    ]);
    let err = assert_clean_failure(&o, "several tensors to .npy");
    assert!(
        err.starts_with(&format!("nnc: {}: ", npy.display())),
        "{err}"
    );
    assert!(!err.contains(".nnc-tmp"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn invalid_input_exits_1_with_unit_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read(vector("t_default_2d")).expect("vector");
    let out = dir.path().join("out.npz");
    let out = out.to_str().expect("utf-8");

    // Garbage.
    let garbage = dir.path().join("garbage.nnc");
    std::fs::write(&garbage, b"this is not an NNR bitstream at all").expect("write");
    let g = garbage.to_str().expect("utf-8");
    let err = assert_clean_failure(&nnc(&["decode", g, "-o", out]), "garbage");
    assert!(err.contains("NNR unit 0 at byte 0"), "{err}");
    assert_clean_failure(&nnc(&["info", g]), "info garbage");
    assert_clean_failure(&nnc(&["info", "--json", g]), "info --json garbage");

    // A corrupted NDU payload: the error names unit 3 and its offset.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    bad.truncate(last);
    let path = dir.path().join("cut.nnc");
    std::fs::write(&path, &bad).expect("write");
    let err = assert_clean_failure(
        &nnc(&["decode", path.to_str().expect("utf-8"), "-o", out]),
        "truncated",
    );
    assert!(err.contains("NNR unit 3 at byte"), "{err}");

    // A flipped payload bit: the arithmetic decoder's error, with unit, offset and tensor.
    let mut flipped = good.clone();
    flipped[60] ^= 0x10;
    std::fs::write(&path, &flipped).expect("write");
    let err = assert_clean_failure(
        &nnc(&["decode", path.to_str().expect("utf-8"), "-o", out]),
        "flipped",
    );
    assert!(err.contains("NNR unit 3 at byte 18: "), "{err}");
    assert!(err.contains("cabac: "), "{err}");

    // Missing side information names the tensor to supply.
    let side = vector("c_block_pre_signalling_side_info");
    let err = assert_clean_failure(
        &nnc(&["decode", side.to_str().expect("utf-8"), "-o", out]),
        "side info",
    );
    assert!(err.contains("tensor \"l.weight\""), "{err}");
    assert!(err.contains("side information"), "{err}");

    // Empty file and missing file.
    let empty = dir.path().join("empty.nnc");
    std::fs::write(&empty, b"").expect("write");
    assert_clean_failure(
        &nnc(&["decode", empty.to_str().expect("utf-8"), "-o", out]),
        "empty",
    );
    let err = assert_clean_failure(
        &nnc(&["decode", "/nonexistent/x.nnc", "-o", out]),
        "missing",
    );
    assert!(err.contains("reading /nonexistent/x.nnc"), "{err}");
    assert!(!Path::new(out).exists(), "no output after a failed decode");

    // A bitstream given to `encode` (as the model or as the base) is named for what it is.
    let stream = vector("t_default_2d");
    let stream = stream.to_str().expect("utf-8");
    let coded = dir.path().join("again.nnc");
    let coded = coded.to_str().expect("utf-8");
    let err = assert_clean_failure(&nnc(&["encode", stream, "-o", coded]), "encode a stream");
    assert!(err.contains("this is a bitstream, not a model"), "{err}");
    assert!(err.contains(&format!("nnc decode {stream}")), "{err}");
}

#[test]
fn limits_are_reported_as_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.npz");
    let o = nnc(&[
        "decode",
        vector("t_default_2d").to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
        "--max-tensor-elements",
        "10",
    ]);
    let err = assert_clean_failure(&o, "limit");
    assert!(err.contains("above the limit of 10"), "{err}");
    assert!(err.contains("NNR unit 3 at byte"), "{err}");

    let o = nnc(&[
        "decode",
        vector("c_block_bn").to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
        "--max-total-elements",
        "100",
    ]);
    let err = assert_clean_failure(&o, "total limit");
    assert!(err.contains("total element count"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["decode"][..],
        &["decode", "x.nnc"][..],
        &["frobnicate"][..],
        &["info", "--no-such-flag", "x"][..],
        &[
            "decode",
            "x.nnc",
            "-o",
            "y.npz",
            "--max-tensor-elements",
            "lots",
        ][..],
        // More worker threads than nnc starts: refused before any is started.
        &["decode", "x.nnc", "-o", "y.npz", "-j", "5000"][..],
        &["encode", "x.npz", "-o", "y.nnc", "--threads", "1025"][..],
        // A sparsification setting without sparsification would be ignored.
        &[
            "encode",
            "x.npz",
            "-o",
            "y.nnc",
            "--struct-spars-factor",
            "0.5",
        ][..],
    ] {
        let o = nnc(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    assert!(
        stderr(&nnc(&["decode", "x.nnc", "-o", "y.npz", "-j", "5000"]))
            .contains("at most 1024 worker threads")
    );
    assert!(stderr(&nnc(&[
        "encode",
        "x.npz",
        "-o",
        "y.nnc",
        "--struct-spars-factor",
        "0.5"
    ]))
    .contains("--sparsity"));
    assert_eq!(nnc(&["--help"]).status.code(), Some(0));
    assert_eq!(nnc(&["--version"]).status.code(), Some(0));
}

/// Corrupted bitstreams through the binary: exit 0 or 1, never a panic (exit 101 with a
/// backtrace). A smaller sample than the library's mutation test: each run is a process.
#[test]
fn corrupted_streams_never_panic_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.nnc");
    let out = dir.path().join("out.npz");
    let (i, o) = (input.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut runs = 0;
    for name in [
        "t_default_2d",
        "c_block_bn",
        "c_scan_order1",
        "t_codebook_clustered_nodq",
        "c_block_dc_lowrank",
    ] {
        let good = std::fs::read(vector(name)).expect("vector");
        for k in 0..24 {
            let mut bad = good.clone();
            match k % 3 {
                0 => bad.truncate(rand(good.len())),
                1 => bad[rand(good.len()).min(40)] ^= 1 << rand(8),
                _ => {
                    let at = rand(good.len());
                    bad[at] ^= 1 << rand(8);
                }
            }
            std::fs::write(&input, &bad).expect("write");
            for args in [
                &["decode", i, "-o", o, "-f"][..],
                &["info", "--json", i][..],
            ] {
                let r = nnc(args);
                runs += 1;
                assert!(
                    matches!(r.status.code(), Some(0 | 1)),
                    "{name} mutation {k} {args:?}: {:?} {}",
                    r.status,
                    stderr(&r)
                );
                assert!(!stderr(&r).contains("panicked"), "{}", stderr(&r));
            }
        }
    }
    assert_eq!(runs, 240);
}

#[test]
fn info_json_snapshots() {
    for name in [
        "t_default_2d",
        "c_scan_order1",
        "t_codebook_clustered_nodq",
        "c_block_bn",
    ] {
        let o = nnc(&["info", "--json", vector(name).to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
        insta::assert_json_snapshot!(format!("info_json_{name}"), json);
    }
}

/// `nnc stats` reads headers only: a weight recomposed from a low-rank pair gets its factors'
/// bytes (not the bias it shares their block with), and an update that uses temporal context is
/// summarised without the earlier streams' state.
#[test]
fn stats_shares_a_low_rank_block_and_reads_updates_alone() {
    let v = vector("c_block_dc_lowrank");
    let o = nnc(&["stats", "--json", v.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    let rows = json["tensors"].as_array().expect("rows");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {rows:?}"))
    };
    let (w, b) = (row("d.weight"), row("d.bias"));
    assert_eq!(w["shape"], serde_json::json!([24, 8, 3, 3]));
    assert!(w["qp"].is_null());
    // One block: G (24 x 4), H (4 x 72) and the bias (24) share its bytes by their values.
    let (wb, bb) = (
        w["bytes"].as_f64().expect("bytes"),
        b["bytes"].as_f64().expect("bytes"),
    );
    assert!((wb / bb - 384.0 / 24.0).abs() < 1e-9, "{wb} {bb}");
    let total = json["total"]["bytes"].as_f64().expect("total");
    let header = json["total"]["header_bytes"].as_f64().expect("header");
    assert!((wb + bb + header - total).abs() < 1e-6, "{json}");
    assert_eq!(total as u64, std::fs::metadata(&v).expect("file").len());

    for step in ["step_01", "step_02", "step_03"] {
        let update = case("seq_tca_diff").join(step).join("bitstream.nnc");
        let o = nnc(&["stats", "--json", update.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(0), "{step}: {}", stderr(&o));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
        let rows = json["tensors"].as_array().expect("rows");
        assert!(
            !rows.is_empty() && rows.iter().all(|r| r["qp"].is_i64()),
            "{json}"
        );
    }
}

/// An update decoded without the state of the streams before it fails with the decoder's error
/// and says how to decode it; decoded in order with `--state`, it succeeds.
#[test]
fn an_update_without_its_state_says_how_to_decode_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seq = case("seq_tca_diff");
    let step = |n: &str| seq.join(n).join("bitstream.nnc");
    let out = dir.path().join("out.npz");
    let state = dir.path().join("dec.state");
    let (o, s) = (out.to_str().expect("utf-8"), state.to_str().expect("utf-8"));
    let lone = step("step_01");
    let err = assert_clean_failure(
        &nnc(&["decode", lone.to_str().expect("utf-8"), "-o", o]),
        "update without state",
    );
    assert!(err.contains("temporal context"), "{err}");
    assert!(err.contains("(this stream continues a sequence"), "{err}");
    assert!(err.contains("--state FILE"), "{err}");
    // A fresh state file is no better: it lacks the earlier steps.
    let err = assert_clean_failure(
        &nnc(&[
            "decode",
            lone.to_str().expect("utf-8"),
            "-o",
            o,
            "--state",
            s,
        ]),
        "update with an empty state",
    );
    assert!(err.contains("earlier streams, in order"), "{err}");
    for n in ["step_00", "step_01"] {
        let input = step(n);
        let o = nnc(&[
            "decode",
            input.to_str().expect("utf-8"),
            "-o",
            o,
            "--state",
            s,
            "-f",
        ]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", stderr(&o));
    }
}

/// The values of a `.npy` file (version 1 header), for comparing files whose headers are
/// formatted differently.
fn npy_data(bytes: &[u8]) -> &[u8] {
    assert!(
        bytes.starts_with(b"\x93NUMPY\x01"),
        "not a version 1 .npy file"
    );
    let header = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    &bytes[10 + header..]
}

/// The reference's HDSP sequence (NNCodec's HdspTool in encoder and decoder): decoded in order
/// with `--hdsp --state`, every step gives the reference's values bit for bit; without `--hdsp`
/// an update fails and says to try it.
#[test]
fn hdsp_sequences_decode_with_hdsp_and_say_so_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seq = case("seq_hdsp_diff");
    let state = dir.path().join("dec.state");
    let out = dir.path().join("out.npy");
    let (o, st) = (out.to_str().expect("utf-8"), state.to_str().expect("utf-8"));
    let lone = seq.join("step_01/bitstream.nnc");
    let err = assert_clean_failure(
        &nnc(&["decode", lone.to_str().expect("utf-8"), "-o", o]),
        "HDSP update without --hdsp",
    );
    assert!(
        err.contains("coded with history-dependent significance probability"),
        "{err}"
    );
    assert!(err.contains("decode it with --hdsp"), "{err}");
    // With --hdsp but no state, the history of step 0 is missing.
    let err = assert_clean_failure(
        &nnc(&["decode", lone.to_str().expect("utf-8"), "-o", o, "--hdsp"]),
        "HDSP update without its history",
    );
    assert!(err.contains("the history is in the state"), "{err}");
    for step in ["step_00", "step_01", "step_02", "step_03"] {
        let input = seq.join(step).join("bitstream.nnc");
        let args = [
            "decode",
            input.to_str().expect("utf-8"),
            "-o",
            o,
            "-f",
            "--hdsp",
            "--state",
            st,
        ];
        let run = nnc(&args);
        assert_eq!(run.status.code(), Some(0), "{step}: {}", stderr(&run));
        let ours = std::fs::read(&out).expect("decoded");
        let reference = std::fs::read(seq.join(step).join("decoded.npy")).expect("reference");
        assert!(
            npy_data(&ours) == npy_data(&reference),
            "{step}: values differ"
        );
    }
    // A damaged payload of a stream whose NDUs cannot carry the flag gets no such hint.
    let mut damaged = std::fs::read(vector("t_default_2d")).expect("vector");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xFF;
    let plain = dir.path().join("damaged.nnc");
    std::fs::write(&plain, &damaged).expect("write");
    let err = assert_clean_failure(
        &nnc(&["decode", plain.to_str().expect("utf-8"), "-o", o, "-f"]),
        "damaged payload",
    );
    assert!(err.contains("cabac"), "{err}");
    assert!(!err.contains("HDSP") && !err.contains("--hdsp"), "{err}");
    assert!(!err.contains("--hdsp"), "{err}");
}

/// `encode --hdsp` on the reference HDSP case's inputs: each update decodes with `--hdsp` to the
/// values the same update coded without HDSP decodes to (HDSP changes contexts, not levels), and
/// once there is history it codes smaller; `--hdsp` without `--base` and `--state` is refused.
#[test]
fn hdsp_updates_encode_and_decode_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seq = case("seq_hdsp_diff");
    let p = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let input = |step: usize| {
        seq.join(format!("step_{step:02}/input.npy"))
            .to_str()
            .expect("utf-8")
            .to_string()
    };
    let run = |args: &[&str]| {
        let o = nnc(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    };
    let err = assert_clean_failure(
        &nnc(&["encode", &input(1), "--hdsp", "-o", &p("x.nnc")]),
        "--hdsp alone",
    );
    assert!(err.contains("--hdsp needs --base"), "{err}");
    let mut smaller = 0;
    for step in 1..=3 {
        let (prev, now) = (input(step - 1), input(step));
        for (tag, extra) in [("hdsp", &["--hdsp"][..]), ("plain", &[][..])] {
            let stream = p(&format!("{tag}{step}.nnc"));
            let enc_state = p(&format!("{tag}.enc"));
            let mut args = vec!["encode", &now, "--base", &prev, "--state", &enc_state];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["-o", &stream, "-q"]);
            run(&args);
            let out = p(&format!("{tag}{step}.npy"));
            let dec_state = p(&format!("{tag}.dec"));
            let mut args = vec!["decode", &stream, "--state", &dec_state];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["-o", &out, "-q"]);
            run(&args);
        }
        let read = |name: String| std::fs::read(p(&name)).expect("written");
        assert_eq!(
            read(format!("hdsp{step}.npy")),
            read(format!("plain{step}.npy")),
            "step {step}: the same values"
        );
        if read(format!("hdsp{step}.nnc")).len() < read(format!("plain{step}.nnc")).len() {
            smaller += 1;
        }
    }
    assert!(smaller > 0, "HDSP never coded an update smaller");
}

/// A reader that stops early (`nnc info x.nnc | head`) ends the command quietly with status 0,
/// as for any filter: no "Broken pipe" message, no panic. The pipe's read end is closed before
/// `nnc` starts, so its first write fails.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let vector = vector("t_default_2d");
    let v = vector.to_str().expect("utf-8");
    for args in [
        vec!["info", v],
        vec!["info", "--json", v],
        vec!["stats", v],
        vec!["stats", "--json", v],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(&args)
            .stdout(writer)
            .output()
            .expect("nnc runs");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    }
}

/// `nnc info` on an empty file fails like `nnc stats` and `nnc decode` instead of printing
/// nothing with status 0.
#[test]
fn info_refuses_an_empty_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.nnc");
    std::fs::write(&empty, b"").expect("write");
    let e = empty.to_str().expect("utf-8");
    for args in [vec!["info", e], vec!["info", "--json", e]] {
        let err = assert_clean_failure(&nnc(&args), "empty file");
        assert!(err.contains("empty file"), "{err}");
    }
}

#[test]
fn help_snapshot() {
    let o = nnc(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!("help", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn apply_scaling_gives_the_reference_reconstruct_lsa_model() {
    // Blocks with a local scaling, decoded by NNCodec with `reconstruct_lsa=True`: each weight
    // comes out multiplied row by row by its scaling, which is left out.
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/lsa");
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["lsa_two_blocks", "lsa_bn", "lsa_conv_nodq"] {
        let case = set.join(name);
        let stream = case.join("bitstream.nnc");
        let out = |file: &str| dir.path().join(format!("{name}.{file}"));
        let o = nnc(&[
            "decode",
            stream.to_str().expect("utf-8"),
            "--apply-scaling",
            "-o",
            out("scaled.safetensors").to_str().expect("utf-8"),
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        let ours = nnc_nn::io::read_tensors(&out("scaled.safetensors"), "0").expect("ours");
        let theirs = nnc_nn::io::read_tensors(&case.join("decoded.npz"), "0").expect("reference");
        let sorted = |mut v: Vec<nnc_tensor::Tensor>| {
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        assert_eq!(sorted(ours), sorted(theirs), "{name}");

        // Without the option the scaling is a tensor of its own and the weight as coded.
        let o = nnc(&[
            "decode",
            stream.to_str().expect("utf-8"),
            "-o",
            out("coded.safetensors").to_str().expect("utf-8"),
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        let coded = nnc_nn::io::read_tensors(&out("coded.safetensors"), "0").expect("coded");
        assert!(
            coded.iter().any(|t| t.name.ends_with("weight_scaling")),
            "{name}"
        );
    }
    // An update's scaling is a difference: not applied onto a base.
    let case = set.join("lsa_fc_bias");
    let o = nnc(&[
        "decode",
        case.join("bitstream.nnc").to_str().expect("utf-8"),
        "--apply-scaling",
        "--base",
        case.join("input.npz").to_str().expect("utf-8"),
        "-o",
        dir.path().join("x.npz").to_str().expect("utf-8"),
    ]);
    assert!(assert_clean_failure(&o, "--apply-scaling --base").contains("difference"));
}
