//! `nnc encode`/`decode`/`stats` on model files: dtypes round-trip through safetensors, the
//! report and `nnc stats` agree with the file, `--no-metadata` gives the reference's stream, and
//! nothing but the summary reaches stderr when it is not a terminal.

use std::path::Path;
use std::process::{Command, Output};

use nnc_nn::io::{
    pytorch_format_metadata, read_safetensors_with_metadata, read_tensors, write_tensors,
    write_tensors_with_metadata, SafetensorsMetadata,
};
use nnc_tensor::{DType, Tensor, TensorData};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .output()
        .expect("nnc runs")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    err
}

/// `nnc ARGS -o OUT` fails with exit status 1 and `message` on stderr, and writes nothing.
fn refused(args: &[&str], out: &Path, message: &str) {
    let o = nnc(&[args, &["-o", s(out)]].concat());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(message), "{err}");
    assert!(!out.exists(), "{} was written", out.display());
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// `n` weight-like values, a different pattern for each `seed`.
fn wave(n: usize, seed: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) * scale)
        .collect()
}

/// A small state dict with every kind of tensor a real checkpoint has.
fn mixed_model() -> Vec<Tensor> {
    let wave = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * scale)
            .collect()
    };
    let f16 = |v: Vec<f32>| {
        v.iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect()
    };
    let bf16 = |v: Vec<f32>| {
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect()
    };
    let t = |name: &str, shape: Vec<usize>, data| Tensor::try_new(name, shape, data).expect("t");
    vec![
        t(
            "embeddings.position_ids",
            vec![1, 16],
            TensorData::I64((0..16).collect()),
        ),
        t("fc1.weight", vec![16, 8], TensorData::F32(wave(128, 1e-2))),
        t("fc1.bias", vec![16], TensorData::F16(f16(wave(16, 1e-2)))),
        t(
            "fc2.weight",
            vec![4, 16],
            TensorData::BF16(bf16(wave(64, 2e-3))),
        ),
        t(
            "norm.weight",
            vec![4],
            TensorData::F32(vec![1.0, 0.5, 2.0, 1.5]),
        ),
        t("bn.num_batches_tracked", vec![], TensorData::I64(vec![42])),
        t("temperature", vec![], TensorData::F32(vec![0.07])),
    ]
}

#[test]
fn safetensors_round_trip_keeps_names_shapes_and_dtypes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.safetensors");
    let tensors = mixed_model();
    write_tensors(&model, &tensors).expect("write model");
    let nncf = dir.path().join("m.nnc");
    let back = dir.path().join("back.safetensors");
    ok(&nnc(&["encode", s(&model), "-o", s(&nncf), "--qp", "-38"]));
    ok(&nnc(&["decode", s(&nncf), "-o", s(&back)]));
    let decoded = read_tensors(&back, "0").expect("read back");
    let key = |v: &[Tensor]| {
        let mut k: Vec<(String, Vec<usize>, &str)> = v
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.dtype().numpy_name()))
            .collect();
        k.sort();
        k
    };
    assert_eq!(key(&decoded), key(&tensors));
    for name in ["embeddings.position_ids", "bn.num_batches_tracked"] {
        let find = |v: &[Tensor]| v.iter().find(|t| t.name == name).cloned();
        assert_eq!(find(&decoded), find(&tensors), "{name} is not exact");
    }
}

/// A safetensors or PyTorch model with nothing to subtract or sparsify is read in place
/// (memory maps, no copy): given to the encoder, or lent to it when `--report` reads the
/// tensors again. Both give the same stream, with or without a prefix to strip, and decode to
/// every tensor. (`nnc-nn`'s tests check that the in-place readers code as the copying ones.)
#[test]
fn models_read_in_place_code_alike_with_and_without_a_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n);
    let mut tensors = mixed_model();
    for t in &mut tensors {
        t.name = format!("module.{}", t.name);
    }
    for model in ["m.safetensors", "m.pt"] {
        write_tensors(&path(model), &tensors).expect("write the model");
        let stream = |out: &str, extra: &[&str]| {
            let (input, out) = (path(model), path(out));
            let args = [&["encode", s(&input), "-o", s(&out)], extra].concat();
            ok(&nnc(&args));
            std::fs::read(&out).expect("stream")
        };
        for strip in [&[][..], &["--strip-prefix", "module."]] {
            let given = stream("a.nnc", strip);
            let lent = stream("b.nnc", &[strip, &["--report"]].concat());
            assert_eq!(given, lent, "{model}, strip {strip:?}");
            ok(&nnc(&[
                "decode",
                s(&path("a.nnc")),
                "-o",
                s(&path("a.safetensors")),
            ]));
            let back = read_tensors(&path("a.safetensors"), "0").expect("decoded");
            assert_eq!(back.len(), tensors.len());
            let prefixed = back
                .iter()
                .filter(|t| t.name.starts_with("module."))
                .count();
            assert_eq!(prefixed, if strip.is_empty() { back.len() } else { 0 });
            for f in ["a.nnc", "b.nnc", "a.safetensors"] {
                std::fs::remove_file(path(f)).expect("remove");
            }
        }
    }
}

/// A checkpoint whose state dict sits under a key beside other entries (torch-made fixture):
/// read in place with and without a report, it codes alike and the notes name what was left
/// out.
#[test]
fn checkpoint_entries_read_in_place_code_alike_and_name_what_is_left_out() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nnc-nn/tests/fixtures/nested.pth");
    let dir = tempfile::tempdir().expect("tempdir");
    for key in [&[][..], &["--checkpoint-key", "state_dict"]] {
        let mut runs = Vec::new();
        for (out, extra) in [("a.nnc", None), ("b.nnc", Some("--report"))] {
            let out = dir.path().join(out);
            let args = [
                &["encode", s(&fixture), "-o", s(&out), "--force"],
                key,
                extra.as_slice(),
            ]
            .concat();
            let err = ok(&nnc(&args));
            let notes: Vec<String> = err
                .lines()
                .filter(|l| l.starts_with("note:"))
                .map(str::to_string)
                .collect();
            runs.push((std::fs::read(&out).expect("stream"), notes));
        }
        assert_eq!(runs[0].0, runs[1].0, "{key:?}");
        assert_eq!(runs[0].1, runs[1].1, "{key:?}");
        assert!(
            runs[0]
                .1
                .iter()
                .any(|n| n.contains("left out") && n.contains("optimizer")),
            "{:?}",
            runs[0].1
        );
    }
}

/// `.npy` and `.npz` files are read in place too, and code alike with and without a report.
#[test]
fn numpy_files_read_in_place_code_alike_with_and_without_a_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n);
    let t = |name: &str, seed| {
        Tensor::try_new(name, vec![24, 40], TensorData::F32(wave(960, seed, 1e-2))).expect("t")
    };
    write_tensors(&path("w.npy"), &[t("0", 3)]).expect("write npy");
    let several = [
        t("a.weight", 1),
        t("bb.weight", 2),
        t("ccc.weight", 3),
        t("dddd.weight", 4),
    ];
    write_tensors(&path("m.npz"), &several).expect("write npz");
    for model in ["w.npy", "m.npz"] {
        let mut streams = Vec::new();
        for (out, extra) in [("a.nnc", None), ("b.nnc", Some("--report"))] {
            let (input, out) = (path(model), path(out));
            let args = [s(&input), "-o", s(&out), "--force"];
            ok(&nnc(&[&["encode"][..], &args, extra.as_slice()].concat()));
            streams.push(std::fs::read(&out).expect("stream"));
        }
        assert_eq!(streams[0], streams[1], "{model}");
    }
}

/// With `--sparsity` the report measures the coding error against the model in the file (read
/// in place for it), not against the sparsified copy the encoder was given; the stream is the
/// same with and without the report.
#[test]
fn a_sparsified_models_report_compares_with_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.safetensors");
    write_tensors(&model, &mixed_model()).expect("write model");
    let plain = dir.path().join("a.nnc");
    let reported = dir.path().join("b.nnc");
    let sparse = ["--sparsity", "0.5"];
    ok(&nnc(&[
        &["encode", s(&model), "-o", s(&plain)],
        &sparse[..],
    ]
    .concat()));
    let o = nnc(&[
        &[
            "encode",
            s(&model),
            "-o",
            s(&reported),
            "--report",
            "--json",
        ],
        &sparse[..],
    ]
    .concat());
    ok(&o);
    assert_eq!(
        std::fs::read(&plain).expect("a"),
        std::fs::read(&reported).expect("b")
    );
    let report = json(&o);
    let rows = report["tensors"].as_array().expect("rows");
    let w = rows
        .iter()
        .find(|r| r["name"] == "fc1.weight")
        .expect("fc1.weight");
    // Half the weights zeroed: far more than the 0.7 % of quantization alone.
    let rel = w["rel_error"].as_f64().expect("rel_error");
    assert!(rel > 0.1, "{rel}");
    // The bfloat16 weight was sparsified too, and comes back as bfloat16.
    let back = dir.path().join("back.safetensors");
    ok(&nnc(&["decode", s(&reported), "-o", s(&back)]));
    let decoded = read_tensors(&back, "0").expect("read back");
    let fc2 = decoded
        .iter()
        .find(|t| t.name == "fc2.weight")
        .expect("fc2.weight");
    let TensorData::BF16(bits) = &fc2.data else {
        panic!("fc2.weight is {:?}", fc2.dtype());
    };
    let zeros = bits
        .iter()
        .filter(|&&b| half::bf16::from_bits(b).to_f32() == 0.0)
        .count();
    assert!(zeros >= 32, "{zeros} of 64 zero");
}

#[test]
fn report_and_stats_agree_with_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.safetensors");
    write_tensors(&model, &mixed_model()).expect("write model");
    let nncf = dir.path().join("m.nnc");
    let o = nnc(&["encode", s(&model), "-o", s(&nncf), "--report", "--json"]);
    ok(&o);
    let report = json(&o);
    let file_len = std::fs::metadata(&nncf).expect("written").len();
    assert_eq!(report["total"]["bytes"], file_len);
    let rows = report["tensors"].as_array().expect("rows");
    assert_eq!(rows.len(), 7);
    let w = rows
        .iter()
        .find(|r| r["name"] == "fc1.weight")
        .expect("fc1.weight");
    assert_eq!(w["qp"], -32);
    let rel = w["rel_error"].as_f64().expect("rel_error");
    // Values of rms 0.29, step 1/256 at qp -32: DQ errs by about half a step, 0.7 %.
    assert!(rel > 0.0 && rel < 0.02, "{rel}");
    assert!(report["total"]["mean_rel_error"].as_f64().is_some());

    let o = nnc(&["stats", s(&nncf), "--json"]);
    ok(&o);
    let stats = json(&o);
    assert_eq!(stats["total"]["bytes"], file_len);
    assert_eq!(
        stats["total"]["header_bytes"],
        report["total"]["header_bytes"]
    );
    for r in stats["tensors"].as_array().expect("rows") {
        let twin = rows.iter().find(|x| x["name"] == r["name"]).expect("same");
        assert_eq!(r["bytes"], twin["bytes"], "{}", r["name"]);
        assert_eq!(r["shape"], twin["shape"], "{}", r["name"]);
        assert_eq!(r["dtype"], twin["dtype"], "{}", r["name"]);
        assert!(r.get("rel_error").is_none());
    }

    // The table form has a header, one line per tensor, the header bytes and the total.
    let o = nnc(&["stats", s(&nncf)]);
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(table.lines().count(), 1 + 7 + 2, "{table}");
    assert!(table.lines().last().expect("total").starts_with("total"));
}

#[test]
fn no_metadata_drops_only_what_the_reference_cannot_carry() {
    let dir = tempfile::tempdir().expect("tempdir");
    // float32 and int32 only: the metadata would be empty, so the flag changes nothing.
    let plain: Vec<Tensor> = mixed_model()
        .into_iter()
        .filter(|t| t.dtype() == DType::F32 && !t.shape.is_empty())
        .collect();
    let model = dir.path().join("plain.safetensors");
    write_tensors(&model, &plain).expect("write");
    let (a, b) = (dir.path().join("a.nnc"), dir.path().join("b.nnc"));
    ok(&nnc(&["encode", s(&model), "-o", s(&a), "-q"]));
    ok(&nnc(&[
        "encode",
        s(&model),
        "-o",
        s(&b),
        "-q",
        "--no-metadata",
    ]));
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));

    // Mixed dtypes: without metadata the stream is shorter and decodes to float32/int32.
    let model = dir.path().join("mixed.safetensors");
    write_tensors(&model, &mixed_model()).expect("write");
    ok(&nnc(&["encode", s(&model), "-o", s(&a), "-q", "-f"]));
    ok(&nnc(&[
        "encode",
        s(&model),
        "-o",
        s(&b),
        "-q",
        "-f",
        "--no-metadata",
    ]));
    let (la, lb) = (
        std::fs::metadata(&a).expect("a").len(),
        std::fs::metadata(&b).expect("b").len(),
    );
    assert!(lb < la, "{lb} !< {la}");
    let back = dir.path().join("back.npz");
    ok(&nnc(&["decode", s(&b), "-o", s(&back)]));
    let decoded = read_tensors(&back, "0").expect("read back");
    assert!(decoded
        .iter()
        .all(|t| matches!(t.dtype(), DType::F32 | DType::I32)));
    assert!(!decoded.iter().any(|t| t.name == "bn.num_batches_tracked"));
}

/// A qp the NDU cannot signal is refused by name: here the bias, asked for at qp −75 with
/// qp_density 1 (a field holding [−64, 63]), is coded at −66. `--mask-unsignalable-qp` writes
/// it masked to 7 bits, as NNCodec does, and the stream then carries qp −66 + 128 = 62
/// (docs/quirks.md#qp-offset-range).
#[test]
fn an_unsignalable_qp_is_refused_unless_masking_is_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = |n: usize, period: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i % period) as f32 - (period / 2) as f32) * 0.1)
            .collect()
    };
    let weight = Tensor::try_new("fc.weight", vec![16, 8], TensorData::F32(values(128, 7)));
    let bias = Tensor::try_new("fc.bias", vec![16], TensorData::F32(values(16, 5)));
    let model = dir.path().join("m.safetensors");
    write_tensors(&model, &[weight.expect("weight"), bias.expect("bias")]).expect("write");
    let out = dir.path().join("m.nnc");
    let args = [
        "encode",
        s(&model),
        "-q",
        "--qp-density",
        "1",
        "--nonweight-qp",
        "-75",
        "--no-dq",
    ];
    refused(&args, &out, "\"fc.bias\": qp -66 is outside [-64, 63]");
    let mut masked = args.to_vec();
    masked.extend(["-o", s(&out), "--mask-unsignalable-qp"]);
    ok(&nnc(&masked));
    // Read back with qp 62 instead of −66, the bias's step is 2^64 times too large.
    let back = dir.path().join("back.npz");
    ok(&nnc(&["decode", s(&out), "-o", s(&back)]));
    let decoded = read_tensors(&back, "0").expect("read back");
    let peak = |name: &str| {
        let t = decoded.iter().find(|t| t.name == name).expect(name);
        let TensorData::F32(v) = &t.data else {
            panic!("{name}: float32 expected")
        };
        v.iter().fold(0f32, |m, x| m.max(x.abs()))
    };
    assert!(peak("fc.bias") > 1e15, "{}", peak("fc.bias"));
    assert!(peak("fc.weight") < 0.5, "{}", peak("fc.weight"));
}

/// Tensors with a dimension of 0 come back in their place with their dtype and shape, through
/// every output format, in memory and streamed. Those with no rows are coded as the reference
/// codes them; those whose rows have no width only the metadata can carry, so `--no-metadata`
/// refuses them; a model of nothing but those is refused by name.
#[test]
fn empty_tensors_round_trip_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = |name: &str, shape: Vec<usize>, data: TensorData| {
        Tensor::try_new(name, shape, data).expect("tensor")
    };
    let model = vec![
        t("fc.weight", vec![8, 8], TensorData::F32(wave(64, 1, 0.01))),
        t("attn.masked_bias", vec![0, 4], TensorData::F16(vec![])),
        t("fc.bias", vec![8], TensorData::F32(wave(8, 2, 0.01))),
        t("no_width", vec![4, 0], TensorData::F32(vec![])),
        t("ids", vec![0], TensorData::I64(vec![])),
        t("conv.weight", vec![0, 3, 3], TensorData::F32(vec![])),
    ];
    // npz keeps the order it is given.
    let input = dir.path().join("model.npz");
    write_tensors(&input, &model).expect("write");
    let nncf = dir.path().join("m.nnc");
    let err = ok(&nnc(&["encode", s(&input), "-o", s(&nncf)]));
    assert!(err.contains("5 tensors, 72 parameters"), "{err}");
    for (out, j) in [("b.safetensors", "1"), ("b.npz", "1"), ("c.npz", "2")] {
        let back = dir.path().join(out);
        ok(&nnc(&["decode", s(&nncf), "-o", s(&back), "-j", j, "-f"]));
        let decoded = read_tensors(&back, "0").expect("read back");
        let key = |v: &[Tensor]| -> Vec<(String, Vec<usize>, &str)> {
            v.iter()
                .map(|t| (t.name.clone(), t.shape.clone(), t.dtype().numpy_name()))
                .collect()
        };
        // safetensors lists tensors by name, npz in the written order.
        let (mut got, mut want) = (key(&decoded), key(&model));
        if out.ends_with(".safetensors") {
            got.sort();
            want.sort();
        }
        assert_eq!(got, want, "{out}");
    }
    let o = nnc(&["stats", s(&nncf), "--json"]);
    let stats = json(&o);
    let row = |name: &str| {
        stats["tensors"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {stats}"))
    };
    assert!(row("attn.masked_bias")["bits_per_param"].is_null());
    assert!(row("fc.weight")["bits_per_param"].as_f64().is_some());
    refused(
        &["encode", s(&input), "--no-metadata"],
        &dir.path().join("n.nnc"),
        "\"no_width\" (shape [4, 0]) is empty with rows of no width",
    );
    let only_no_width = dir.path().join("no_width.npz");
    write_tensors(&only_no_width, &model[3..4]).expect("write");
    refused(
        &["encode", s(&only_no_width)],
        &dir.path().join("e.nnc"),
        "every tensor is empty or carried verbatim (such as \"no_width\")",
    );
    // Nothing but a tensor without rows: a stream of one empty NDU, as the reference writes.
    let only_no_rows = dir.path().join("no_rows.npy");
    write_tensors(&only_no_rows, &model[1..2]).expect("write");
    let e = dir.path().join("e.nnc");
    let err = ok(&nnc(&["encode", s(&only_no_rows), "-o", s(&e)]));
    assert!(
        err.contains("0 parameters") && !err.contains("bits/param"),
        "{err}"
    );
    let back = dir.path().join("e.npy");
    ok(&nnc(&["decode", s(&e), "-o", s(&back)]));
    let decoded = read_tensors(&back, "0").expect("read back");
    assert_eq!(decoded[0].shape, vec![0, 4]);
    assert_eq!(decoded[0].dtype(), DType::F16);
}

#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.safetensors");
    // Enough tensors that a terminal would get a progress display.
    let many: Vec<Tensor> = (0..20)
        .map(|i| {
            let data = (0..64).map(|j| ((i * 64 + j) % 13) as f32 * 0.01).collect();
            Tensor::try_new(format!("l{i}.weight"), vec![8, 8], TensorData::F32(data))
                .expect("tensor")
        })
        .collect();
    write_tensors(&model, &many).expect("write");
    let nncf = dir.path().join("m.nnc");
    let err = ok(&nnc(&["encode", s(&model), "-o", s(&nncf)]));
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.contains("20 tensors") && err.contains("bits/param"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "escape codes on a pipe: {err:?}");
    let err = ok(&nnc(&[
        "decode",
        s(&nncf),
        "-o",
        s(&dir.path().join("b.npz")),
    ]));
    assert!(err.is_empty(), "{err:?}");
    let err = ok(&nnc(&["encode", s(&model), "-o", s(&nncf), "-f", "-q"]));
    assert!(err.is_empty(), "{err:?}");
}

/// `-j`/`--threads` changes nothing in the output; the streamed decode writes the same files as
/// decoding in memory and writing the whole model.
#[test]
fn threads_give_identical_files_and_streaming_equals_the_whole_model_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.safetensors");
    write_tensors(&model, &mixed_model()).expect("write model");
    let (one, two) = (dir.path().join("one.nnc"), dir.path().join("two.nnc"));
    ok(&nnc(&["encode", s(&model), "-o", s(&one), "-j", "1"]));
    ok(&nnc(&[
        "encode",
        s(&model),
        "-o",
        s(&two),
        "--threads",
        "2",
    ]));
    let bytes = std::fs::read(&one).expect("read");
    assert_eq!(bytes, std::fs::read(&two).expect("read"));

    let mut state = nnc_tensor::DecoderState::default();
    let whole: Vec<Tensor> =
        nnc_tensor::decode_stream(&bytes, &mut state, &nnc_tensor::DecodeOptions::new())
            .expect("decode")
            .tensors
            .into_iter()
            .map(|t| t.tensor)
            .collect();
    // bfloat16 has no NumPy type: the .npz gets the model without it.
    for ext in ["safetensors", "npz"] {
        let expected = dir.path().join(format!("expected.{ext}"));
        let keep: Vec<Tensor> = whole
            .iter()
            .filter(|t| ext == "safetensors" || t.dtype() != DType::BF16)
            .cloned()
            .collect();
        // A stream that carries no safetensors metadata decodes with `{"format": "pt"}`.
        write_tensors_with_metadata(&expected, &keep, &pytorch_format_metadata())
            .expect("write expected");
        let expected = std::fs::read(&expected).expect("read");
        if ext == "npz" {
            let o = nnc(&["decode", s(&one), "-o", s(&dir.path().join("x.npz"))]);
            assert_eq!(o.status.code(), Some(1), "bf16 cannot go to .npz");
            continue;
        }
        for threads in ["1", "2"] {
            let out = dir.path().join(format!("out{threads}.{ext}"));
            ok(&nnc(&["decode", s(&one), "-o", s(&out), "-j", threads]));
            assert_eq!(
                std::fs::read(&out).expect("read"),
                expected,
                "{ext} -j {threads}"
            );
        }
    }
}

/// Metadata recording an integer dtype that cannot hold the decoded values (foreign or corrupt):
/// the tensor keeps its decoded int32, unlike the plan, so `nnc decode` falls back to decoding in
/// memory and still writes the file.
#[test]
fn decode_falls_back_when_a_tensor_is_not_as_planned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Tensor::try_new(
        "counts",
        vec![2, 3],
        TensorData::I32(vec![-3, 1, 2, -7, 0, 5]),
    )
    .expect("tensor");
    let w = Tensor::try_new("w", vec![4, 4], TensorData::F32(vec![0.25; 16])).expect("tensor");
    let mut input = nnc_tensor::EncodeInput::from_tensors_owned(vec![w, t.clone()]).expect("input");
    for p in &mut input.parameters {
        if p.name == "counts" {
            p.original_dtype = DType::U8;
        }
    }
    let bytes = nnc_tensor::encode(&input, &nnc_tensor::EncodeOptions::default())
        .expect("encode")
        .bytes;
    let plan = nnc_tensor::plan_stream(&bytes, &nnc_tensor::DecodeOptions::new()).expect("plan");
    let planned = plan
        .tensors
        .iter()
        .find(|s| s.name == "counts")
        .expect("planned");
    assert_eq!(planned.dtype, DType::U8);
    let nncf = dir.path().join("m.nnc");
    std::fs::write(&nncf, &bytes).expect("write");
    let out = dir.path().join("out.safetensors");
    ok(&nnc(&["decode", s(&nncf), "-o", s(&out)]));
    let back = read_tensors(&out, "0").expect("read");
    assert_eq!(back.iter().find(|x| x.name == "counts"), Some(&t));
}

/// `nnc encode --base` codes a model as an update of a base; `nnc decode --base` adds the update
/// back, streaming: the output is the base's tensors in the base's order, each carried tensor
/// exactly base + decoded update (f32 addition, as in memory), an integer counter replaced by
/// its new value, the others untouched, also when the update codes its tensors in another order
/// than the base holds them.
/// A model coded against itself: every update is zero, so no NDU is written and only the
/// carried counter is in the stream; decoding onto the base gives the model back (it failed
/// with "output tensor ... was never decoded" before session 19).
#[test]
fn an_unchanged_model_decodes_onto_its_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let t = |name: &str, shape: Vec<usize>, data| Tensor::try_new(name, shape, data).expect("t");
    let model = vec![
        t("a.weight", vec![4, 6], TensorData::F32(wave(24, 0, 1e-2))),
        t("bn.num_batches_tracked", vec![], TensorData::I64(vec![7])),
    ];
    write_tensors(&path("m.npz"), &model).expect("write");
    let m = path("m.npz");
    ok(&nnc(&[
        "encode",
        s(&m),
        "--base",
        s(&m),
        "-o",
        s(&path("u.nnc")),
    ]));
    ok(&nnc(&[
        "decode",
        s(&path("u.nnc")),
        "--base",
        s(&m),
        "-o",
        s(&path("back.npz")),
    ]));
    let back = read_tensors(&path("back.npz"), "0").expect("read back");
    assert_eq!(back, model);
}

/// A safetensors file's `__metadata__` comes back from the stream; `{"format": "pt"}`, which
/// every Hugging Face file holds, is not carried (the float32 stream stays the reference's) and
/// is written back all the same; an update decoded onto its base keeps the base's map.
#[test]
fn safetensors_metadata_round_trips_and_the_pytorch_default_costs_no_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let t = |name: &str, data| Tensor::try_new(name, vec![6, 4], data).expect("t");
    let model = vec![
        t("a.weight", TensorData::F32(wave(24, 0, 1e-2))),
        t("b.weight", TensorData::F32(wave(24, 5, 3e-2))),
    ];
    let meta = |pairs: &[(&str, &str)]| -> SafetensorsMetadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let custom = meta(&[
        ("format", "pt"),
        ("model_type", "bert"),
        ("note", "ünï \"q\""),
    ]);
    write_tensors(&path("none.safetensors"), &model).expect("write");
    write_tensors_with_metadata(&path("pt.safetensors"), &model, &pytorch_format_metadata())
        .expect("write");
    write_tensors_with_metadata(&path("custom.safetensors"), &model, &custom).expect("write");
    for name in ["none", "pt", "custom"] {
        let input = path(&format!("{name}.safetensors"));
        ok(&nnc(&[
            "encode",
            s(&input),
            "-o",
            s(&path(&format!("{name}.nnc"))),
        ]));
        let out = path(&format!("{name}_out.safetensors"));
        ok(&nnc(&[
            "decode",
            s(&path(&format!("{name}.nnc"))),
            "-o",
            s(&out),
        ]));
        let (tensors, back) = read_safetensors_with_metadata(&out).expect("read back");
        let want = if name == "custom" {
            custom.clone()
        } else {
            pytorch_format_metadata()
        };
        assert_eq!(back, want, "{name}");
        assert_eq!(tensors.len(), 2);
    }
    let stream = |name: &str| std::fs::read(path(&format!("{name}.nnc"))).expect("read");
    assert_eq!(stream("pt"), stream("none"));
    assert!(stream("custom").len() > stream("none").len());
    ok(&nnc(&[
        "encode",
        s(&path("custom.safetensors")),
        "--no-metadata",
        "-o",
        s(&path("custom_nm.nnc")),
    ]));
    assert_eq!(stream("custom_nm"), stream("none"));

    // Other outputs have no place for the map: a note says it is left out.
    let err = ok(&nnc(&[
        "decode",
        s(&path("custom.nnc")),
        "-o",
        s(&path("c.npz")),
    ]));
    assert!(
        err.contains(r#"safetensors metadata ("format", "model_type", "note") is left out"#),
        "{err}"
    );
    let err = ok(&nnc(&[
        "decode",
        s(&path("none.nnc")),
        "-o",
        s(&path("n.npz")),
    ]));
    assert!(!err.contains("metadata"), "{err}");

    // An update (from a file without metadata) onto a base with its own map: the base's map.
    write_tensors(&path("new.npz"), &model).expect("write");
    ok(&nnc(&[
        "encode",
        s(&path("new.npz")),
        "--base",
        s(&path("custom.safetensors")),
        "-o",
        s(&path("u.nnc")),
    ]));
    ok(&nnc(&[
        "decode",
        s(&path("u.nnc")),
        "--base",
        s(&path("custom.safetensors")),
        "-o",
        s(&path("u_out.safetensors")),
    ]));
    let (_, back) = read_safetensors_with_metadata(&path("u_out.safetensors")).expect("read");
    assert_eq!(back, custom);
}

/// A model whose dtypes differ from its base's (a float16 fine-tune of a float32 base, a float64
/// tensor, an int32 counter where the base has int64) decodes onto the base in the model's
/// dtypes, streamed or not; before session 20 the base's dtypes were written.
#[test]
fn an_update_decodes_onto_its_base_in_the_models_dtypes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let t = |name: &str, shape: Vec<usize>, data| Tensor::try_new(name, shape, data).expect("t");
    let w = wave(96, 0, 1e-2);
    let b = wave(8, 1, 1e-2);
    let base = vec![
        t("a.weight", vec![8, 12], TensorData::F32(w.clone())),
        t("a.bias", vec![8], TensorData::F32(b.clone())),
        t("bn.num_batches_tracked", vec![], TensorData::I64(vec![7])),
    ];
    let moved = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| x + 3e-3).collect() };
    let model = vec![
        t(
            "a.weight",
            vec![8, 12],
            TensorData::from_f32_cast(DType::F16, &moved(&w)).expect("f16"),
        ),
        t(
            "a.bias",
            vec![8],
            TensorData::F64(moved(&b).iter().map(|&x| f64::from(x)).collect()),
        ),
        t("bn.num_batches_tracked", vec![], TensorData::I32(vec![9])),
    ];
    write_tensors(&path("base.npz"), &base).expect("write base");
    write_tensors(&path("model.npz"), &model).expect("write model");
    ok(&nnc(&[
        "encode",
        "-q",
        s(&path("model.npz")),
        "--qp",
        "-40",
        "--base",
        s(&path("base.npz")),
        "-o",
        s(&path("u.nnc")),
    ]));
    for (out, threads) in [("back.npz", "1"), ("back.safetensors", "2")] {
        ok(&nnc(&[
            "decode",
            "-q",
            s(&path("u.nnc")),
            "--base",
            s(&path("base.npz")),
            "-j",
            threads,
            "-o",
            s(&path(out)),
        ]));
        let back = read_tensors(&path(out), "0").expect("read back");
        let by_name = |name: &str| back.iter().find(|x| x.name == name).expect(name);
        for m in &model {
            let got = by_name(&m.name);
            assert_eq!((got.dtype(), &got.shape), (m.dtype(), &m.shape), "{out}");
        }
        assert_eq!(by_name("bn.num_batches_tracked"), &model[2]);
        let values = |d: &TensorData| -> Vec<f64> {
            match d {
                TensorData::F64(v) => v.clone(),
                d => d
                    .as_f32_lossless()
                    .expect("floats")
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect(),
            }
        };
        let err = |name: &str| {
            let m = model.iter().find(|m| m.name == name).expect(name);
            let (x, y) = (values(&by_name(name).data), values(&m.data));
            x.iter()
                .zip(&y)
                .fold(0f64, |m, (p, q)| m.max((p - q).abs()))
        };
        assert!(err("a.weight") < 2e-3 && err("a.bias") < 2e-3, "{out}");
    }
}

/// An update against a base is the same whether both models are read in place (safetensors:
/// float32 differences taken where the elements lie, other dtypes read first) or copied
/// (`.npz`): the same stream with and without a report, and the same tensors decoded onto the
/// base (safetensors orders tensors by dtype and name, so the two streams' orders differ).
#[test]
fn updates_of_models_read_in_place_code_as_when_copied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let t = |name: &str, shape: Vec<usize>, data| Tensor::try_new(name, shape, data).expect("t");
    let w = wave(96, 0, 1e-2);
    let base = vec![
        t("a.weight", vec![8, 12], TensorData::F32(w.clone())),
        t("a.bias", vec![8], TensorData::F32(wave(8, 1, 1e-2))),
        t("bn.num_batches_tracked", vec![], TensorData::I64(vec![7])),
    ];
    let model = vec![
        t(
            "a.weight",
            vec![8, 12],
            TensorData::F32(w.iter().map(|x| x + 3e-3).collect()),
        ),
        t(
            "a.bias",
            vec![8],
            TensorData::from_f32_cast(DType::F16, &wave(8, 2, 1e-2)).expect("f16"),
        ),
        t("bn.num_batches_tracked", vec![], TensorData::I64(vec![9])),
    ];
    let mut decoded = Vec::new();
    for ext in ["safetensors", "npz"] {
        let (m, b) = (path(&format!("model.{ext}")), path(&format!("base.{ext}")));
        write_tensors(&m, &model).expect("write model");
        write_tensors(&b, &base).expect("write base");
        let mut streams = Vec::new();
        for extra in [None, Some("--report")] {
            let out = path(&format!("u-{ext}-{}.nnc", extra.is_some()));
            let args = [s(&m), "--base", s(&b), "-o", s(&out)];
            ok(&nnc(
                &[&["encode", "-q"][..], &args, extra.as_slice()].concat()
            ));
            streams.push(std::fs::read(&out).expect("stream"));
        }
        assert_eq!(streams[0], streams[1], "{ext}");
        let back = path(&format!("back-{ext}.safetensors"));
        let update = path(&format!("u-{ext}-false.nnc"));
        let args = [s(&update), "--base", s(&b)];
        ok(&nnc(
            &[&["decode", "-q"][..], &args, &["-o", s(&back)]].concat()
        ));
        let mut tensors = read_tensors(&back, "0").expect("decoded");
        tensors.sort_by(|x, y| x.name.cmp(&y.name));
        decoded.push(tensors);
    }
    assert_eq!(decoded[0], decoded[1]);
    assert_eq!(decoded[0].len(), model.len());
}

#[test]
fn update_onto_base_streams_base_plus_update_in_base_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let t = |name: &str, shape: Vec<usize>, data| Tensor::try_new(name, shape, data).expect("t");
    let base = vec![
        t(
            "a.weight",
            vec![16, 24],
            TensorData::F32(wave(384, 0, 1e-2)),
        ),
        t("a.bias", vec![16], TensorData::F32(wave(16, 1, 1e-2))),
        t(
            "only_in_base.weight",
            vec![4, 4],
            TensorData::F32(wave(16, 2, 1e-2)),
        ),
        t("bn.num_batches_tracked", vec![], TensorData::I64(vec![7])),
        t("b.weight", vec![8, 16], TensorData::F32(wave(128, 3, 1e-2))),
    ];
    write_tensors(&path("base.safetensors"), &base).expect("write base");
    // Safetensors lists tensors by name: that order is the base's order.
    let base = read_tensors(&path("base.safetensors"), "0").expect("base");
    // The fine-tuned model: the float tensors moved a little, the batch counter advanced, in
    // another order (.npz keeps it).
    let counter = t("bn.num_batches_tracked", vec![], TensorData::I64(vec![9]));
    let tuned: Vec<Tensor> = ["b.weight", "a.bias", "a.weight"]
        .iter()
        .map(|name| {
            let b = base.iter().find(|b| b.name == *name).expect("in base");
            let TensorData::F32(v) = &b.data else {
                unreachable!("float tensors")
            };
            let moved = v
                .iter()
                .enumerate()
                .map(|(i, x)| x + ((i * 13 % 7) as f32 - 3.0) * 4e-3)
                .collect();
            t(name, b.shape.clone(), TensorData::F32(moved))
        })
        .chain([counter.clone()])
        .collect();
    write_tensors(&path("tuned.npz"), &tuned).expect("write tuned");
    ok(&nnc(&[
        "encode",
        "-q",
        s(&path("tuned.npz")),
        "--qp",
        "-40",
        "--base",
        s(&path("base.safetensors")),
        "--state",
        s(&path("enc_state.json")),
        "-o",
        s(&path("update.nnc")),
    ]));
    ok(&nnc(&[
        "decode",
        "-q",
        s(&path("update.nnc")),
        "-o",
        s(&path("update.npz")),
    ]));
    let update = read_tensors(&path("update.npz"), "0").expect("update");
    assert_eq!(
        update.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["b.weight", "a.bias", "a.weight", "bn.num_batches_tracked"],
        "the update codes its tensors in the tuned model's order"
    );
    for out in ["out.safetensors", "out.npz"] {
        for threads in ["1", "2"] {
            ok(&nnc(&[
                "decode",
                "-q",
                "-f",
                "-j",
                threads,
                s(&path("update.nnc")),
                "--base",
                s(&path("base.safetensors")),
                "-o",
                s(&path(out)),
            ]));
            let got = read_tensors(&path(out), "0").expect("decoded");
            let names: Vec<&str> = got.iter().map(|g| g.name.as_str()).collect();
            let base_names: Vec<&str> = base.iter().map(|b| b.name.as_str()).collect();
            assert_eq!(names, base_names, "{out}: the base's tensors in its order");
            for (g, b) in got.iter().zip(&base) {
                assert_eq!((&g.shape, g.dtype()), (&b.shape, b.dtype()), "{}", g.name);
                let Some(u) = update.iter().find(|u| u.name == b.name) else {
                    assert_eq!(g.data, b.data, "{} keeps its base values", b.name);
                    continue;
                };
                if u.dtype().is_integer() {
                    assert_eq!(g.data, counter.data, "{}: the update's new value", b.name);
                    continue;
                }
                let (TensorData::F32(gv), TensorData::F32(bv), TensorData::F32(uv)) =
                    (&g.data, &b.data, &u.data)
                else {
                    panic!("{}: float32 expected", b.name);
                };
                let sum: Vec<f32> = bv.iter().zip(uv).map(|(x, y)| x + y).collect();
                assert_eq!(gv, &sum, "{out} -j {threads}: {} is base + update", b.name);
                let tuned_v = match &tuned.iter().find(|x| x.name == b.name).expect("t").data {
                    TensorData::F32(v) => v.clone(),
                    _ => unreachable!("float tensors"),
                };
                let worst = gv
                    .iter()
                    .zip(&tuned_v)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 2e-3, "{}: {worst} from the tuned values", b.name);
            }
        }
    }
    // A base without one of the update's tensors is refused before anything is written.
    let partial: Vec<Tensor> = base.into_iter().filter(|b| b.name != "a.weight").collect();
    write_tensors(&path("partial.safetensors"), &partial).expect("write partial base");
    refused(
        &[
            "decode",
            s(&path("update.nnc")),
            "--base",
            s(&path("partial.safetensors")),
        ],
        &path("refused.safetensors"),
        "\"a.weight\", which the base model lacks",
    );

    // An integer tensor whose shape differs from the base's is refused at encode time too (the
    // decode would refuse the update), and nothing is written.
    let reshaped: Vec<Tensor> = tuned
        .iter()
        .map(|u| match u.name.as_str() {
            "bn.num_batches_tracked" => t(&u.name, vec![1], u.data.clone()),
            _ => u.clone(),
        })
        .collect();
    write_tensors(&path("reshaped.npz"), &reshaped).expect("write reshaped");
    refused(
        &[
            "encode",
            s(&path("reshaped.npz")),
            "--base",
            s(&path("base.safetensors")),
        ],
        &path("reshaped.nnc"),
        "\"bn.num_batches_tracked\": shape [1] differs from []",
    );
}

/// A sequence of TCA updates coded and decoded with `--state`: a binary state file (any name
/// but `.json`) and a JSON one give the same bitstreams and the same decoded updates, either
/// form is read whatever the file is called, and a damaged or newer state file is refused.
#[test]
fn state_files_binary_and_json_give_the_same_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let model = |seed: usize, scale: f32| {
        vec![
            Tensor::try_new(
                "a.weight",
                vec![24, 32],
                TensorData::F32(wave(768, seed, scale)),
            )
            .expect("t"),
            Tensor::try_new(
                "a.bias",
                vec![24],
                TensorData::F32(wave(24, seed + 1, scale)),
            )
            .expect("t"),
        ]
    };
    write_tensors(&path("base.safetensors"), &model(0, 1e-2)).expect("write base");
    for step in 1..=3 {
        let tuned = path(&format!("tuned{step}.safetensors"));
        write_tensors(&tuned, &model(step, 1e-2 + step as f32 * 1e-4)).expect("write tuned");
        if step == 3 {
            // The decoder's JSON state before the last update, under another name and its own.
            std::fs::copy(path("dec_state.json"), path("renamed.state")).expect("copy");
            std::fs::copy(path("dec_state.json"), path("again.json")).expect("copy");
        }
        for form in ["json", "bin"] {
            let update = path(&format!("update{step}.{form}.nnc"));
            ok(&nnc(&[
                "encode",
                "-q",
                s(&tuned),
                "--qp",
                "-38",
                "--base",
                s(&path("base.safetensors")),
                "--tca",
                "--state",
                s(&path(&format!("enc_state.{form}"))),
                "-o",
                s(&update),
            ]));
            ok(&nnc(&[
                "decode",
                "-q",
                s(&update),
                "--state",
                s(&path(&format!("dec_state.{form}"))),
                "-o",
                s(&path(&format!("decoded{step}.{form}.safetensors"))),
            ]));
        }
        let read = |name: String| std::fs::read(path(&name)).expect("written");
        assert_eq!(
            read(format!("update{step}.json.nnc")),
            read(format!("update{step}.bin.nnc")),
            "step {step}: the same bitstream from either state file"
        );
        assert_eq!(
            read(format!("decoded{step}.json.safetensors")),
            read(format!("decoded{step}.bin.safetensors")),
            "step {step}: the same decoded update"
        );
    }
    let dec_json = std::fs::read(path("dec_state.json")).expect("json state");
    let dec_bin = std::fs::read(path("dec_state.bin")).expect("binary state");
    assert!(dec_json.starts_with(b"{\""));
    assert!(dec_bin.starts_with(b"nnc-state\x02"));
    assert!(dec_bin.len() < dec_json.len());

    // Read by content, not by name: the JSON state under another name decodes the last update
    // as it does under its own.
    for (state, out) in [("renamed.state", "via_renamed"), ("again.json", "via_json")] {
        ok(&nnc(&[
            "decode",
            "-q",
            s(&path("update3.json.nnc")),
            "--state",
            s(&path(state)),
            "-o",
            s(&path(&format!("{out}.safetensors"))),
        ]));
    }
    let decoded3 = std::fs::read(path("decoded3.json.safetensors")).expect("decoded");
    for out in ["via_renamed", "via_json"] {
        let got = std::fs::read(path(&format!("{out}.safetensors"))).expect("decoded");
        assert_eq!(got, decoded3, "{out}");
    }

    // A cut binary state, and one of a later format version, are refused with a message.
    std::fs::write(path("cut.bin"), &dec_bin[..dec_bin.len() / 2]).expect("write");
    let mut newer = dec_bin.clone();
    newer[9] = 3;
    std::fs::write(path("newer.bin"), &newer).expect("write");
    for (state, message) in [
        ("cut.bin", "not a valid nnc state"),
        (
            "newer.bin",
            "an nnc state of another version (3; this nnc reads version 2)",
        ),
    ] {
        refused(
            &[
                "decode",
                s(&path("update1.bin.nnc")),
                "--state",
                s(&path(state)),
            ],
            &path("refused.safetensors"),
            message,
        );
    }
}

/// Sparsification targets that are not below 1 or not a number are refused, not applied (1.5
/// zeroed every weight, and NaN was skipped as if sparsification were off).
#[test]
fn sparsity_targets_outside_the_range_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.safetensors");
    let weight = Tensor::try_new(
        "fc.weight",
        vec![16, 32],
        TensorData::F32(wave(512, 1, 0.01)),
    )
    .expect("tensor");
    write_tensors(&model, &[weight]).expect("write model");
    let out = dir.path().join("m.nnc");
    for (args, message) in [
        (&["--sparsity", "1.5"][..], "sparsity 1.5 is not below 1"),
        (&["--sparsity", "NaN"][..], "sparsity NaN is not below 1"),
        (
            &["--sparsity", "0.5", "--struct-spars-factor", "inf"][..],
            "struct_spars_factor inf is not finite",
        ),
    ] {
        refused(&[&["encode", s(&model)][..], args].concat(), &out, message);
    }
    ok(&nnc(&[
        "encode",
        s(&model),
        "-o",
        s(&out),
        "--sparsity",
        "0.5",
    ]));
}

/// A PyTorch model is sparsified as `nncodec.nn.encode` sparsifies a torch model: its
/// `num_batches_tracked` counters neither change nor count towards the sparsity reached. The
/// public model-pipeline case comes out byte for byte; on a model whose counters outweigh its
/// weights, counting them would go on zeroing weights well past the target.
#[test]
fn a_pytorch_models_counters_take_no_part_in_sparsification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/vectors/nn_tiny_sparsity_epoch1");
    let out = dir.path().join("tiny.nnc");
    ok(&nnc(&[
        "encode",
        s(&case.join("input.npz")),
        "-o",
        s(&out),
        "--sparsity",
        "0.5",
        "--struct-spars-factor",
        "0.9",
        "--no-metadata",
        "-q",
    ]));
    assert_eq!(
        std::fs::read(&out).expect("read"),
        std::fs::read(case.join("bitstream.nnc")).expect("read reference")
    );

    let weights: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 64) as f32 - 31.5) * 0.01)
        .collect();
    let model = dir.path().join("model.safetensors");
    write_tensors(
        &model,
        &[
            Tensor::try_new("c.weight", vec![8, 8], TensorData::F32(weights)).expect("tensor"),
            Tensor::try_new(
                "bn.num_batches_tracked",
                vec![64],
                TensorData::I64(vec![7; 64]),
            )
            .expect("tensor"),
        ],
    )
    .expect("write model");
    let (out, back) = (
        dir.path().join("m.nnc"),
        dir.path().join("back.safetensors"),
    );
    ok(&nnc(&[
        "encode",
        s(&model),
        "-o",
        s(&out),
        "--sparsity",
        "0.4",
        "--struct-spars-factor",
        "0",
        "--no-dq",
        "-q",
    ]));
    ok(&nnc(&["decode", s(&out), "-o", s(&back), "-q"]));
    let decoded = read_tensors(&back, "0").expect("read back");
    let zeros = match &decoded
        .iter()
        .find(|t| t.name == "c.weight")
        .expect("c.weight")
        .data
    {
        TensorData::F32(v) => v.iter().filter(|&&x| x == 0.0).count(),
        other => panic!("{other:?}"),
    };
    // 40 % of 64 weights; counting the 64 counters too would zero about twice as many.
    assert!((26..40).contains(&zeros), "{zeros} zeros");
    let counters = decoded
        .iter()
        .find(|t| t.name == "bn.num_batches_tracked")
        .expect("counters");
    assert_eq!(counters.data, TensorData::I64(vec![7; 64]));
}

/// Outputs are checked before any work: a format nnc writes, an existing directory, and never
/// one of the inputs, even with `--force` (an encode onto its own input, or onto its state
/// file, used to replace it).
#[test]
fn outputs_that_cannot_or_must_not_be_written_are_refused_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n);
    let weight = Tensor::try_new(
        "fc.weight",
        vec![16, 32],
        TensorData::F32(wave(512, 2, 0.01)),
    )
    .expect("tensor");
    write_tensors(&path("model.safetensors"), &[weight]).expect("write model");
    let model = path("model.safetensors");
    let original = std::fs::read(&model).expect("read model");
    ok(&nnc(&["encode", s(&model), "-o", s(&path("m.nnc"))]));

    let stream = path("m.nnc");
    for (name, message) in [
        ("out.txt", "unknown output format"),
        ("no/such/dir/out.npz", "does not exist"),
    ] {
        let out = path(name);
        let o = nnc(&["decode", s(&stream), "-o", s(&out)]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(message),
            "{name}"
        );
        assert!(!out.exists());
    }
    // A PyTorch state dict holds what the safetensors file holds, in stream order.
    ok(&nnc(&["decode", s(&stream), "-o", s(&path("out.pt"))]));
    ok(&nnc(&[
        "decode",
        s(&stream),
        "-o",
        s(&path("out.safetensors")),
    ]));
    let as_pt = nnc_nn::io::read_tensors(&path("out.pt"), "0").expect("read .pt");
    assert_eq!(as_pt.len(), 1);
    assert_eq!(
        as_pt,
        nnc_nn::io::read_tensors(&path("out.safetensors"), "0").expect("read .safetensors")
    );
    let state = path("state.bin");
    for args in [
        vec!["encode", s(&model), "-o", s(&model), "--force"],
        vec![
            "decode",
            s(&path("m.nnc")),
            "-o",
            s(&path("m.nnc")),
            "--force",
        ],
        vec![
            "encode",
            s(&model),
            "-o",
            s(&state),
            "--base",
            s(&model),
            "--state",
            s(&state),
        ],
    ] {
        let o = nnc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(!state.exists(), "{args:?}");
    }
    assert_eq!(std::fs::read(&model).expect("read model"), original);
    let o = nnc(&["encode", s(&model), "-o", s(&model), "--force"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is also an input"));
}

#[test]
fn pytorch_checkpoints_say_what_is_not_coded() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nnc-nn/tests/fixtures");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.nnc");
    // A training checkpoint: the state dict is one entry among others.
    let nested = fixtures.join("nested.pth");
    let err = ok(&nnc(&["encode", s(&nested), "-o", s(&out)]));
    assert!(
        err.contains("the state dict is entry \"state_dict\"; left out: \"epoch\", \"optimizer\""),
        "{err}"
    );
    // A state dict of tensors only (torch's, and ours): nothing to say.
    let views = fixtures.join("views.pt");
    let err = ok(&nnc(&["encode", s(&views), "-o", s(&out), "--force"]));
    assert!(!err.contains("note:"), "{err}");
    let path = dir.path().join("ours.pt");
    let t = Tensor::try_new("w", vec![2], TensorData::F32(vec![0.5, -0.25])).expect("tensor");
    write_tensors(&path, &[t]).expect("write .pt");
    assert!(!ok(&nnc(&["encode", s(&path), "-o", s(&out), "--force"])).contains("note:"));
    // dtypes.pt holds "note" (a string) and "step" (an int) beside its tensors; -q keeps quiet.
    let dtypes = fixtures.join("dtypes.pt");
    let o = nnc(&["encode", s(&dtypes), "-o", s(&out), "--force"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not tensors, left out: \"note\", \"step\""),
        "{err}"
    );
    let o = nnc(&["-q", "encode", s(&nested), "-o", s(&out), "--force"]);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn checkpoint_key_and_strip_prefix_apply_to_input_and_base() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nnc-nn/tests/fixtures");
    let nested = fixtures.join("nested.pth"); // a Lightning-style "model." prefix
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n);
    let names = |p: &Path| -> Vec<String> {
        read_tensors(p, "0")
            .expect("read")
            .into_iter()
            .map(|t| t.name)
            .collect()
    };

    ok(&nnc(&[
        "encode",
        s(&nested),
        "-o",
        s(&path("m.nnc")),
        "--strip-prefix",
        "model.",
    ]));
    ok(&nnc(&["decode", s(&path("m.nnc")), "-o", s(&path("m.pt"))]));
    let stripped = names(&path("m.pt"));
    assert!(stripped.contains(&"0.weight".to_string()), "{stripped:?}");
    assert!(
        stripped.iter().all(|n| !n.starts_with("model.")),
        "{stripped:?}"
    );

    // An update of the stripped model against the same checkpoint as base: both are read the
    // same way, and decoding onto the base needs the same flag to match the names.
    let model = path("model.safetensors");
    let mut tensors = read_tensors(&path("m.pt"), "0").expect("read");
    for t in &mut tensors {
        if let TensorData::F32(v) = &mut t.data {
            v.iter_mut().for_each(|x| *x += 0.125);
        }
    }
    write_tensors(&model, &tensors).expect("write model");
    let upd = path("u.nnc");
    ok(&nnc(&[
        "encode",
        s(&model),
        "--base",
        s(&nested),
        "--strip-prefix",
        "model.",
        "-o",
        s(&upd),
    ]));
    let o = nnc(&[
        "decode",
        s(&upd),
        "--base",
        s(&nested),
        "-o",
        s(&path("x.pt")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("which the base model lacks"));
    ok(&nnc(&[
        "decode",
        s(&upd),
        "--base",
        s(&nested),
        "--strip-prefix",
        "model.",
        "-o",
        s(&path("new.pt")),
    ]));
    assert_eq!(names(&path("new.pt")), stripped);

    // Another entry of the checkpoint: the optimizer's momentum buffers.
    ok(&nnc(&[
        "encode",
        s(&nested),
        "--checkpoint-key",
        "optimizer",
        "-o",
        s(&path("o.nnc")),
    ]));
    ok(&nnc(&[
        "decode",
        s(&path("o.nnc")),
        "-o",
        s(&path("o.npz")),
    ]));
    assert!(names(&path("o.npz"))
        .iter()
        .all(|n| n.starts_with("state.")));

    // Mistakes are named.
    for (args, message) in [
        (vec!["--checkpoint-key", "nope"], "has no key \"nope\""),
        (vec!["--strip-prefix", "model.0."], ""),
    ] {
        let o = nnc(&[
            &["encode", s(&nested), "-o", s(&path("e.nnc")), "--force"][..],
            &args,
        ]
        .concat());
        let err = String::from_utf8_lossy(&o.stderr);
        if message.is_empty() {
            assert_eq!(o.status.code(), Some(0), "{err}");
        } else {
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(err.contains(message), "{err}");
        }
    }
    let o = nnc(&[
        "encode",
        s(&model),
        "--checkpoint-key",
        "x",
        "-o",
        s(&path("f.nnc")),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("applies to PyTorch checkpoints"));
    let clash = path("clash.safetensors");
    let a = Tensor::try_new("m.w", vec![1], TensorData::F32(vec![1.0])).expect("tensor");
    let b = Tensor::try_new("w", vec![1], TensorData::F32(vec![2.0])).expect("tensor");
    write_tensors(&clash, &[a, b]).expect("write");
    let o = nnc(&[
        "encode",
        s(&clash),
        "--strip-prefix",
        "m.",
        "-o",
        s(&path("g.nnc")),
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("two tensors are named \"w\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sharded_checkpoints_and_model_directories_encode_like_one_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n);
    let model = mixed_model();
    let (first, second) = model.split_at(model.len() / 2);
    std::fs::create_dir(path("hf")).expect("mkdir");
    write_tensors(&path("hf/model-00001-of-00002.safetensors"), first).expect("shard 1");
    write_tensors(&path("hf/model-00002-of-00002.safetensors"), second).expect("shard 2");
    let map: Vec<String> = model
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let shard = if i < first.len() { 1 } else { 2 };
            format!("{:?}: \"model-0000{shard}-of-00002.safetensors\"", t.name)
        })
        .collect();
    let index = path("hf/model.safetensors.index.json");
    std::fs::write(
        &index,
        format!(
            "{{\"metadata\": {{}}, \"weight_map\": {{{}}}}}",
            map.join(", ")
        ),
    )
    .expect("index");
    // The same tensors in the order the shards give them, as one file.
    let mut merged = read_tensors(&path("hf/model-00001-of-00002.safetensors"), "0").expect("1");
    merged.extend(read_tensors(&path("hf/model-00002-of-00002.safetensors"), "0").expect("2"));
    write_tensors(&path("merged.pt"), &merged).expect("merged");

    let encode = |input: &Path, out: &str| {
        ok(&nnc(&[
            "encode",
            s(input),
            "-o",
            s(&path(out)),
            "--types",
            "pytorch",
        ]))
    };
    encode(&path("merged.pt"), "one.nnc");
    encode(&index, "index.nnc");
    let err = encode(&path("hf"), "dir.nnc");
    assert!(err.contains("note: reading"), "{err}");
    let one = std::fs::read(path("one.nnc")).expect("read");
    assert_eq!(std::fs::read(path("index.nnc")).expect("read"), one);
    assert_eq!(std::fs::read(path("dir.nnc")).expect("read"), one);

    let o = nnc(&["encode", s(dir.path()), "-o", s(&path("x.nnc"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a directory without a model file"));

    // Shards with their own `__metadata__`: the first shard's is carried, with a note when the
    // others differ.
    let meta = |v: &str| -> SafetensorsMetadata {
        [("format", "pt"), ("shard", v)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let shard1 = path("hf/model-00001-of-00002.safetensors");
    let shard2 = path("hf/model-00002-of-00002.safetensors");
    write_tensors_with_metadata(&shard1, first, &meta("one")).expect("shard 1");
    write_tensors_with_metadata(&shard2, second, &meta("two")).expect("shard 2");
    let err = encode(&index, "meta.nnc");
    assert!(
        err.contains("the shards' safetensors metadata differ"),
        "{err}"
    );
    ok(&nnc(&[
        "decode",
        s(&path("meta.nnc")),
        "-o",
        s(&path("meta.safetensors")),
    ]));
    let (_, back) = read_safetensors_with_metadata(&path("meta.safetensors")).expect("read");
    assert_eq!(back, meta("one"));
    write_tensors_with_metadata(&shard2, second, &meta("one")).expect("shard 2");
    let err = encode(&index, "meta_same.nnc");
    assert!(!err.contains("differ"), "{err}");
}

/// `nnc decode -o DIR` writes what `save_pretrained` would: `model.safetensors`, or shards and
/// their index past `--max-shard-size`; an existing model there is replaced only with `--force`
/// (stale shards of another layout removed), and never one of the inputs.
#[test]
fn decode_into_a_directory_writes_hugging_face_shards() {
    use nnc_nn::io::{read_sharded, shard_writer::INDEX_FILE};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n);
    let model = mixed_model();
    write_tensors(&path("m.safetensors"), &model).expect("write");
    let stream = path("m.nnc");
    ok(&nnc(&[
        "encode",
        s(&path("m.safetensors")),
        "-o",
        s(&path("m.nnc")),
    ]));
    ok(&nnc(&[
        "decode",
        s(&path("m.nnc")),
        "-o",
        s(&path("one.safetensors")),
    ]));
    let mut expected = read_tensors(&path("one.safetensors"), "0").expect("read");
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let files = |d: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let sorted = |mut v: Vec<Tensor>| {
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };

    // A path ending in "/" is a directory, created if need be.
    let out = path("hf");
    let slash = format!("{}/", s(&out));
    ok(&nnc(&["decode", s(&path("m.nnc")), "-o", &slash]));
    assert_eq!(files(&out), ["model.safetensors"]);
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).expect("read"),
        std::fs::read(path("one.safetensors")).expect("read")
    );
    let err = String::from_utf8_lossy(&nnc(&["decode", s(&path("m.nnc")), "-o", s(&out)]).stderr)
        .into_owned();
    assert!(err.contains("already holds a model"), "{err}");

    // Shards of at most 100 bytes, replacing the single file.
    let args = [
        "decode",
        s(&stream),
        "-o",
        s(&out),
        "--max-shard-size",
        "100B",
    ];
    ok(&nnc(&[&args[..], &["--force"]].concat()));
    let names = files(&out);
    assert!(names.len() > 3, "{names:?}");
    assert!(
        !names.contains(&"model.safetensors".to_string()),
        "{names:?}"
    );
    assert_eq!(
        sorted(read_sharded(&out.join(INDEX_FILE)).expect("read shards")),
        expected
    );
    // The directory encodes like the single file it replaced (same tensors, maybe reordered).
    ok(&nnc(&["encode", s(&out), "-o", s(&path("again.nnc"))]));
    ok(&nnc(&[
        "decode",
        s(&path("again.nnc")),
        "-o",
        s(&path("again.safetensors")),
    ]));
    assert_eq!(
        sorted(read_tensors(&path("again.safetensors"), "0").expect("read")),
        expected
    );

    // Fewer, larger shards: the stale ones go.
    ok(&nnc(&[
        "decode",
        s(&path("m.nnc")),
        "-o",
        s(&out),
        "--max-shard-size",
        "600B",
        "--force",
    ]));
    let fewer = files(&out);
    assert!(fewer.len() < names.len(), "{fewer:?}");
    assert_eq!(
        sorted(read_sharded(&out.join(INDEX_FILE)).expect("read shards")),
        expected
    );

    // Refused: a shard size for a file, a bad size, a base inside the directory.
    let o = nnc(&[
        "decode",
        s(&path("m.nnc")),
        "-o",
        s(&path("x.safetensors")),
        "--max-shard-size",
        "1GB",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs a directory"));
    let o = nnc(&[
        "decode",
        s(&path("m.nnc")),
        "-o",
        s(&out),
        "--max-shard-size",
        "5XB",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let base = out.join(&fewer[0]);
    let o = nnc(&[
        "decode",
        s(&path("m.nnc")),
        "--base",
        s(&base),
        "-o",
        s(&out),
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is also an input"));
    assert_eq!(files(&out), fewer);
}

/// A model directory's other files (config, tokenizer) are attached to the stream and written
/// back by a decode into a directory, byte for byte; `--no-files` gives the stream of the model
/// file alone; names a stream attaches cannot write outside the directory.
#[test]
fn model_directories_go_through_whole_with_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n);
    let hf = path("hf");
    std::fs::create_dir(&hf).expect("mkdir");
    write_tensors(&hf.join("model.safetensors"), &mixed_model()).expect("write");
    let config = br#"{"model_type": "bert", "hidden_size": 384}"#;
    let tokenizer: Vec<u8> = (0..20_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    std::fs::write(hf.join("config.json"), config).expect("write");
    std::fs::write(hf.join("tokenizer.model"), &tokenizer).expect("write");
    std::fs::write(hf.join(".gitattributes"), b"*.bin lfs").expect("write");
    std::fs::write(hf.join("pytorch_model.bin"), b"not attached").expect("write");
    std::fs::create_dir(hf.join("1_Pooling")).expect("mkdir");

    let err = ok(&nnc(&["encode", s(&hf), "-o", s(&path("dir.nnc"))]));
    assert!(
        err.contains(r#"attaching "config.json", "tokenizer.model""#),
        "{err}"
    );
    assert!(
        err.contains("not attached: 1_Pooling/ (a directory)"),
        "{err}"
    );
    ok(&nnc(&[
        "encode",
        s(&hf),
        "--no-files",
        "-o",
        s(&path("nofiles.nnc")),
    ]));
    ok(&nnc(&[
        "encode",
        s(&hf.join("model.safetensors")),
        "-o",
        s(&path("file.nnc")),
    ]));
    let read = |n: &str| std::fs::read(path(n)).expect("read");
    assert_eq!(read("nofiles.nnc"), read("file.nnc"));
    // An update carries no files.
    let err = ok(&nnc(&[
        "encode",
        s(&hf),
        "--base",
        s(&hf),
        "-o",
        s(&path("update.nnc")),
    ]));
    assert!(!err.contains("attaching"), "{err}");
    let plan = nnc_tensor::plan_stream(&read("update.nnc"), &nnc_tensor::DecodeOptions::new())
        .expect("plan");
    assert!(plan.files.is_empty());
    assert!(read("dir.nnc").len() > read("file.nnc").len());

    let out = path("out");
    ok(&nnc(&[
        "decode",
        s(&path("dir.nnc")),
        "-o",
        &format!("{}/", s(&out)),
    ]));
    assert_eq!(
        std::fs::read(out.join("config.json")).expect("read"),
        config
    );
    assert_eq!(
        std::fs::read(out.join("tokenizer.model")).expect("read"),
        tokenizer
    );
    assert!(!out.join(".gitattributes").exists() && !out.join("pytorch_model.bin").exists());
    // An existing file is replaced only with --force (and the model with it).
    std::fs::remove_file(out.join("model.safetensors")).expect("rm");
    let o = nnc(&["decode", s(&path("dir.nnc")), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json exists"));
    assert!(!out.join("model.safetensors").exists(), "nothing written");
    std::fs::write(out.join("config.json"), b"old").expect("write");
    ok(&nnc(&[
        "decode",
        s(&path("dir.nnc")),
        "-o",
        s(&out),
        "--force",
    ]));
    assert_eq!(
        std::fs::read(out.join("config.json")).expect("read"),
        config
    );
    // To a file: a note says what is left behind.
    let err = ok(&nnc(&[
        "decode",
        s(&path("dir.nnc")),
        "-o",
        s(&path("m.pt")),
    ]));
    assert!(err.contains("the stream attaches"), "{err}");

    // A stream attaching a path outside the directory is refused before anything is written.
    let model =
        vec![Tensor::try_new("w", vec![4, 4], TensorData::F32(wave(16, 1, 0.1))).expect("tensor")];
    let input = nnc_tensor::encode::EncodeInput::from_tensors(&model)
        .expect("input")
        .with_files([("../evil.txt".to_string(), b"x".to_vec())].into());
    let bytes = nnc_tensor::encode(&input, &nnc_tensor::EncodeOptions::default())
        .expect("encode")
        .bytes;
    std::fs::write(path("evil.nnc"), bytes).expect("write");
    let target = path("target");
    std::fs::create_dir(&target).expect("mkdir");
    let o = nnc(&["decode", s(&path("evil.nnc")), "-o", s(&target), "--force"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a plain file name"));
    assert!(!path("evil.txt").exists());
    assert_eq!(std::fs::read_dir(&target).expect("dir").count(), 0);
}

/// A stream coded with its dimensions signalled beforehand (the reference's pre-signalling)
/// cannot be read without them: `decode`, `stats` and `info` say which tensor needs
/// `--tensor-dims`, and with it the decode gives the reference's values bit for bit.
#[test]
fn tensor_dims_decode_a_stream_that_leaves_them_out() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/vectors/c_block_pre_signalling_side_info");
    let stream = case.join("bitstream.nnc");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.npz");
    for args in [
        vec!["decode", s(&stream), "-o", s(&out)],
        vec!["stats", s(&stream)],
        vec!["info", s(&stream)],
    ] {
        let o = nnc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--tensor-dims l.weight=D1xD2x"),
            "{args:?}: {err}"
        );
    }
    let dims = ["--tensor-dims", "l.weight=16x8x3x3"];
    ok(&nnc(
        &[&["decode", s(&stream), "-o", s(&out)][..], &dims].concat()
    ));
    let ours = read_tensors(&out, "0").expect("decoded");
    let reference = read_tensors(&case.join("decoded.npz"), "0").expect("reference");
    assert_eq!(ours.len(), reference.len());
    for want in &reference {
        let got = ours
            .iter()
            .find(|t| t.name == want.name)
            .expect("same names");
        assert_eq!(got.shape, want.shape, "{}", want.name);
        let bits = |t: &Tensor| match &t.data {
            TensorData::F32(v) => v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            other => panic!("{}: {:?}", t.name, other.dtype()),
        };
        assert_eq!(bits(got), bits(want), "{}", want.name);
    }
    let o = nnc(&[&["stats", s(&stream), "--json"][..], &dims].concat());
    ok(&o);
    let stats = String::from_utf8_lossy(&o.stdout);
    assert!(stats.contains("\"l.weight\""), "{stats}");
    ok(&nnc(&[&["info", s(&stream)][..], &dims].concat()));
    // A malformed value is a usage error.
    let o = nnc(&["stats", s(&stream), "--tensor-dims", "l.weight=16xa"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `--tensor-qp NAME=QP` sets one tensor's qp (a weight finer, a bias coarser), the others keep
/// the defaults; a name the model lacks is refused, a malformed value is a usage error.
#[test]
fn tensor_qp_overrides_one_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model.safetensors");
    write_tensors(&model, &mixed_model()).expect("write model");
    let out = dir.path().join("m.nnc");
    let encode =
        |extra: &[&str]| nnc(&[&["encode", s(&model), "-o", s(&out), "-f"][..], extra].concat());
    ok(&encode(&[
        "--tensor-qp",
        "fc1.weight=-40",
        "--tensor-qp",
        "fc1.bias=-50",
    ]));
    let o = nnc(&["stats", s(&out), "--json"]);
    ok(&o);
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let qp = |name: &str| {
        stats["tensors"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))["qp"]
            .clone()
    };
    assert_eq!(qp("fc1.weight"), -40);
    assert_eq!(qp("fc1.bias"), -50);
    assert_eq!(qp("fc2.weight"), -32);
    let o = encode(&["--tensor-qp", "fc9.weight=-40"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"fc9.weight\""));
    assert_eq!(
        encode(&["--tensor-qp", "fc1.weight"]).status.code(),
        Some(2)
    );
}

/// A conformance case's folder.
/// Each tensor's name, shape and dtype in a model file, in file order.
fn layout(path: &Path) -> Vec<(String, Vec<usize>, DType)> {
    read_tensors(path, "0")
        .expect("tensors")
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.dtype()))
        .collect()
}

fn conformance_case(set: &str, name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance")
        .join(set)
        .join(name)
}

/// `--bnf` folds batch norm into blocks guessed from the state dict's names: on the reference's
/// `nncodec.nn.encode(torch_model)` cases with `bnf` the stream is the reference's, byte for
/// byte, and differs from the one without `--bnf` (which `--bnf` once silently was).
#[test]
fn bnf_folds_batch_norm_as_the_reference_model_pipeline_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.nnc");
    for (set, name, extra) in [
        ("vectors", "nn_tiny_bnf", &[][..]),
        (
            "combo",
            "combo_nn_035",
            &["--qp", "-43", "--nonweight-qp", "-78"][..],
        ),
        (
            "combo",
            "combo_nn_016",
            &["--qp", "-46", "--nonweight-qp", "-46"][..],
        ),
        // torchvision's ResNet naming with a downsample branch (`layer2.0.downsample.1` is a
        // batch norm), made by conformance/block_guess/gen_tiny_resnet.py.
        ("block_guess", "tiny_resnet", &[][..]),
    ] {
        let case = conformance_case(set, name);
        let input = case.join("input.npz");
        let encode = |bnf: bool| {
            let mut args = vec!["encode", s(&input), "-o", s(&out), "-f", "--no-metadata"];
            args.extend_from_slice(extra);
            if bnf {
                args.push("--bnf");
            }
            ok(&nnc(&args));
            std::fs::read(&out).expect("stream")
        };
        let reference = std::fs::read(case.join("bitstream.nnc")).expect("reference stream");
        assert!(
            encode(true) == reference,
            "{name}: --bnf differs from the reference"
        );
        assert!(encode(false) != reference, "{name}: the same without --bnf");
        // With the metadata the decoded model has the input's names, shapes, dtypes and order.
        let mut args = vec!["encode", s(&input), "-o", s(&out), "-f", "--bnf"];
        args.extend_from_slice(extra);
        ok(&nnc(&args));
        let back = dir.path().join("back.npz");
        ok(&nnc(&["decode", s(&out), "-o", s(&back), "-f"]));
        assert_eq!(layout(&back), layout(&input), "{name}");
        // `nnc stats` reads the same plan: the same names in the same order.
        let stats = nnc(&["stats", s(&out), "--json"]);
        ok(&stats);
        let listed: Vec<String> = json(&stats)["tensors"]
            .as_array()
            .expect("tensors")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_string())
            .collect();
        let decoded: Vec<String> = layout(&back).into_iter().map(|t| t.0).collect();
        assert_eq!(listed, decoded, "{name}");
    }
    // A stream nnc wrote with this metadata (session 51) keeps decoding to the model's layout
    // whatever the encoder writes later.
    let kept = conformance_case("block_guess", "tiny_resnet");
    let back = dir.path().join("kept.npz");
    ok(&nnc(&[
        "decode",
        s(&kept.join("nnc_bnf_metadata.nnc")),
        "-o",
        s(&back),
    ]));
    let names = |path: &Path| -> Vec<(String, Vec<usize>)> {
        read_tensors(path, "0")
            .expect("tensors")
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect()
    };
    assert_eq!(names(&back), names(&kept.join("input.npz")));
    // Without metadata the decoder hands out what is coded: the blocks' scaling and bias in
    // place of the batch norms, as the reference's decoder does.
    let input = conformance_case("vectors", "nn_tiny_bnf").join("input.npz");
    ok(&nnc(&[
        "encode",
        s(&input),
        "-o",
        s(&out),
        "-f",
        "--bnf",
        "--no-metadata",
    ]));
    let folded = dir.path().join("folded.npz");
    ok(&nnc(&["decode", s(&out), "-o", s(&folded)]));
    let folded = read_tensors(&folded, "0").expect("decoded");
    let names: Vec<&str> = folded.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"conv1.weight_scaling"), "{names:?}");
    assert!(!names.contains(&"bn1.weight"), "{names:?}");
    // With it (the default), the model comes back with its own names, shapes, dtypes and
    // order: each batch norm with the coded scaling as weight, the coded bias as bias, mean 0
    // and variance 1 − eps, the convolution's own bias 0. It computes what the folded block
    // computes: gamma·(x + b − mean)/√(var + eps) + beta = scaling·x + bias.
    ok(&nnc(&["encode", s(&input), "-o", s(&out), "-f", "--bnf"]));
    let decoded = dir.path().join("d.npz");
    ok(&nnc(&["decode", s(&out), "-o", s(&decoded)]));
    let decoded = read_tensors(&decoded, "0").expect("decoded");
    let original = read_tensors(&input, "0").expect("input");
    let layout = |ts: &[Tensor]| -> Vec<(String, Vec<usize>, DType)> {
        ts.iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.dtype()))
            .collect()
    };
    assert_eq!(layout(&decoded), layout(&original));
    // A scaling that carries a folded batch norm is unfolded, not applied.
    let scaled = dir.path().join("scaled.npz");
    ok(&nnc(&[
        "decode",
        s(&out),
        "--apply-scaling",
        "-o",
        s(&scaled),
    ]));
    assert_eq!(read_tensors(&scaled, "0").expect("scaled"), decoded);
    let f32s = |ts: &[Tensor], name: &str| -> Vec<f32> {
        match &ts.iter().find(|t| t.name == name).expect(name).data {
            TensorData::F32(v) => v.clone(),
            other => panic!("{name}: {:?}", other.dtype()),
        }
    };
    assert_eq!(
        f32s(&decoded, "bn1.weight"),
        f32s(&folded, "conv1.weight_scaling")
    );
    assert_eq!(
        f32s(&decoded, "bn1.bias"),
        f32s(&folded, "conv1.weight.bias")
    );
    assert_eq!(f32s(&decoded, "bn2.bias"), f32s(&folded, "conv2.bias"));
    assert!(f32s(&decoded, "conv2.bias").iter().all(|&b| b == 0.0));
    assert!(f32s(&decoded, "bn1.running_mean").iter().all(|&m| m == 0.0));
    assert!(f32s(&decoded, "bn2.running_var")
        .iter()
        .all(|&v| v == 1.0 - 1e-5));
    let eps = 1e-5f64;
    for (conv, bn) in [("conv1", "bn1"), ("conv2", "bn2")] {
        let layer = |ts: &[Tensor], i: usize, x: f64| {
            let get = |n: &str| f64::from(f32s(ts, &format!("{bn}.{n}"))[i]);
            let own_bias = if ts.iter().any(|t| t.name == format!("{conv}.bias")) {
                f64::from(f32s(ts, &format!("{conv}.bias"))[i])
            } else {
                0.0
            };
            get("weight") * (x + own_bias - get("running_mean")) / (get("running_var") + eps).sqrt()
                + get("bias")
        };
        for i in 0..f32s(&original, &format!("{bn}.weight")).len() {
            for x in [-2.0, 0.0, 1.5] {
                let (want, got) = (layer(&original, i, x), layer(&decoded, i, x));
                assert!(
                    (want - got).abs() < 1e-3,
                    "{bn}[{i}] at {x}: {want} vs {got}"
                );
            }
        }
    }
    // The report does not compare the replaced tensors with the originals; the batch norms'
    // rows carry the bytes of the scaling and bias that stand for them.
    let o = nnc(&["encode", s(&input), "-o", s(&out), "-f", "--bnf", "--json"]);
    ok(&o);
    let report = json(&o);
    let row = |name: &str| {
        report["tensors"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .expect(name)
    };
    assert!(row("conv2.bias")["rel_error"].is_null());
    assert!(row("bn1.weight")["bytes"].as_f64().expect("bytes") > 0.0);
    assert!(row("conv1.weight")["rel_error"].as_f64().expect("error") < 0.05);
}

/// `--bnf` where no folding can be done is refused, not ignored: a plain dictionary, and a
/// BatchNorm that comes before its convolution (the guess pairs it with a weight of another
/// output size, which fails NNCodec's check).
#[test]
fn bnf_refuses_models_it_cannot_fold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = |name: &str, shape: Vec<usize>, v: Vec<f32>| {
        Tensor::try_new(name, shape, TensorData::F32(v)).expect("tensor")
    };
    let plain = dir.path().join("plain.safetensors");
    write_tensors(&plain, &[f("w", vec![4, 4], wave(16, 0, 0.01))]).expect("write");
    refused(
        &["encode", s(&plain), "--bnf", "--types", "dict"],
        &dir.path().join("a.nnc"),
        "--bnf: guessing layer blocks needs a PyTorch state dict",
    );
    let pre = dir.path().join("pre.safetensors");
    write_tensors(
        &pre,
        &[
            f("norm0.weight", vec![4], vec![1.0; 4]),
            f("norm0.bias", vec![4], vec![0.0; 4]),
            f("norm0.running_mean", vec![4], vec![0.0; 4]),
            f("norm0.running_var", vec![4], vec![1.0; 4]),
            f("conv0.weight", vec![8, 4, 3, 3], wave(288, 1, 0.01)),
        ],
    )
    .expect("write");
    refused(
        &["encode", s(&pre), "--bnf"],
        &dir.path().join("b.nnc"),
        "--bnf: batch norm cannot be folded: the blocks guessed from the names fail",
    );
    ok(&nnc(&[
        "encode",
        s(&pre),
        "-o",
        s(&dir.path().join("c.nnc")),
    ]));
    // A model without batch norm is coded in its layers' blocks, as NNCodec codes it, and the
    // user is told that nothing was folded.
    let linear = dir.path().join("linear.safetensors");
    write_tensors(
        &linear,
        &[
            f("fc.weight", vec![4, 4], wave(16, 2, 0.01)),
            f("fc.bias", vec![4], vec![0.1; 4]),
        ],
    )
    .expect("write");
    let err = ok(&nnc(&[
        "encode",
        s(&linear),
        "-o",
        s(&dir.path().join("e.nnc")),
        "--bnf",
    ]));
    assert!(err.contains("nothing was folded"), "{err}");
    // An update holds differences, which cannot be folded.
    let model = conformance_case("vectors", "nn_tiny_bnf").join("input.npz");
    refused(
        &["encode", s(&model), "--base", s(&model), "--bnf"],
        &dir.path().join("d.nnc"),
        "an update of differences cannot be folded",
    );
}

/// `--pre-signalling` leaves a block's weight dimensions out of the stream: decoding needs them
/// as `--tensor-dims`, and then gives the values of the stream that carries them.
#[test]
fn pre_signalling_leaves_block_weight_dimensions_to_the_decoder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = conformance_case("vectors", "nn_tiny_bnf").join("input.npz");
    let p = |name: &str| dir.path().join(name);
    ok(&nnc(&[
        "encode",
        s(&input),
        "-o",
        s(&p("plain.nnc")),
        "--bnf",
    ]));
    ok(&nnc(&[
        "encode",
        s(&input),
        "-o",
        s(&p("pre.nnc")),
        "--bnf",
        "--pre-signalling",
    ]));
    let o = nnc(&["decode", s(&p("pre.nnc")), "-o", s(&p("pre.npz"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tensor-dims conv1.weight="));
    ok(&nnc(&[
        "decode",
        s(&p("pre.nnc")),
        "-o",
        s(&p("pre.npz")),
        "--tensor-dims",
        "conv1.weight=8x3x3x3",
        "--tensor-dims",
        "conv2.weight=16x8x3x3",
        "--tensor-dims",
        "fc.weight=10x16",
    ]));
    ok(&nnc(&[
        "decode",
        s(&p("plain.nnc")),
        "-o",
        s(&p("plain.npz")),
    ]));
    let pre = read_tensors(&p("pre.npz"), "0").expect("pre");
    let plain = read_tensors(&p("plain.npz"), "0").expect("plain");
    assert_eq!(pre, plain);
}

/// `--device-id` is written in every NDU; a state that recorded another device's updates
/// refuses the next update before coding it, and is left as it was.
#[test]
fn device_id_is_signalled_and_a_state_keeps_to_one_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name);
    let model = |seed: usize| {
        vec![
            Tensor::try_new(
                "fc.weight",
                vec![8, 8],
                TensorData::F32(wave(64, seed, 0.01)),
            )
            .expect("tensor"),
            Tensor::try_new("fc.bias", vec![8], TensorData::F32(wave(8, seed, 0.001)))
                .expect("tensor"),
        ]
    };
    for (i, name) in ["m0.safetensors", "m1.safetensors", "m2.safetensors"]
        .iter()
        .enumerate()
    {
        write_tensors(&p(name), &model(i)).expect("write");
    }
    let state = p("state.bin");
    let update = |now: &str, base: &str, device: &str, out: &str| {
        nnc(&[
            "encode",
            s(&p(now)),
            "--base",
            s(&p(base)),
            "--state",
            s(&state),
            "--device-id",
            device,
            "-o",
            s(&p(out)),
        ])
    };
    ok(&update("m1.safetensors", "m0.safetensors", "7", "u1.nnc"));
    let info = nnc(&["info", s(&p("u1.nnc"))]);
    ok(&info);
    let headers = String::from_utf8_lossy(&info.stdout);
    assert_eq!(headers.matches("  device_id: 7").count(), 2, "{headers}");
    let before = std::fs::read(&state).expect("state");
    let o = update("m2.safetensors", "m1.safetensors", "8", "u2.nnc");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds updates of device_id 7"), "{err}");
    assert!(
        err.contains("give the --device-id of its earlier updates"),
        "{err}"
    );
    assert!(!p("u2.nnc").exists());
    assert_eq!(std::fs::read(&state).expect("state"), before);
    ok(&update("m2.safetensors", "m1.safetensors", "7", "u2.nnc"));
}

/// A model with NNCodec's LSA layers (`ScaledConv2d` / `ScaledLinear`: each layer's
/// `weight_scaling` is `[out, 1, 1, 1]` or `[out, 1]`), coded by the reference's model pipeline
/// (`conformance/lsa_model/gen_lsa_model.py`): nnc writes its bytes with `--lsa` (the scalings
/// in their layers' blocks, as `compress_model(lsa=True)` codes the trained ones), without it
/// (each scaling flattened in an NDU of its own) and with `--bnf`; `--apply-scaling` decodes as
/// `decompress(reconstruct_lsa=True)`, and with the metadata the LSA model comes back.
#[test]
fn lsa_models_code_and_decode_as_the_reference_does() {
    let case = conformance_case("lsa_model", "");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = case.join("model.pt");
    let out = dir.path().join("out.nnc");
    for (flags, reference) in [
        (&["--lsa"][..], "lsa.nnc"),
        (&[][..], "plain.nnc"),
        (&["--bnf"][..], "bnf.nnc"),
    ] {
        let mut args = vec!["encode", s(&model), "-o", s(&out), "-f", "--no-metadata"];
        args.extend_from_slice(flags);
        ok(&nnc(&args));
        assert!(
            std::fs::read(&out).expect("ours") == std::fs::read(case.join(reference)).expect("ref"),
            "{flags:?}: not the bytes of {reference}"
        );
    }
    let scaled = dir.path().join("scaled.npz");
    ok(&nnc(&[
        "decode",
        s(&case.join("lsa.nnc")),
        "--apply-scaling",
        "-o",
        s(&scaled),
    ]));
    let sorted = |mut v: Vec<Tensor>| {
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    assert_eq!(
        sorted(read_tensors(&scaled, "0").expect("ours")),
        sorted(read_tensors(&case.join("lsa_decoded.npz"), "0").expect("reference"))
    );
    // With nnc's metadata the scalings come back in their layers' shapes, so the model loads
    // into its LSA layers again.
    ok(&nnc(&["encode", s(&model), "-o", s(&out), "-f", "--lsa"]));
    let back = dir.path().join("back.pt");
    ok(&nnc(&["decode", s(&out), "-o", s(&back)]));
    assert_eq!(layout(&back), layout(&model));
    assert!(layout(&back).contains(&("conv1.weight_scaling".into(), vec![8, 1, 1, 1], DType::F32)));
    // A model without scalings has nothing for --lsa to code.
    let plain = conformance_case("vectors", "nn_tiny_default").join("input.npz");
    let o = nnc(&["encode", s(&plain), "-o", s(&out), "-f", "--lsa"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no local scalings"));
}
