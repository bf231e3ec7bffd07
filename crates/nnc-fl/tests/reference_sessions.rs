//! Federated sessions recorded from the reference (`conformance/gen_fl.py`): every message our
//! client and server codecs write must be the reference's bytes, and every global model a client
//! receives must be the reference's, bit for bit.
//!
//! The committed sessions are in `conformance/fl`; `NNC_FL_VECTORS=DIR` runs another set (for
//! example a held-out seed from `gen_fl.py DIR --seed N --random K`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::path::{Path, PathBuf};

use nnc_fl::{ClientCodec, ClientMessage, FlOptions, Layout, ServerCodec, TensorSpec};
use serde_json::Value;

fn sessions_dir() -> PathBuf {
    match std::env::var_os("NNC_FL_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/fl"),
    }
}

/// The model in `path` (an `.npz` of float32 arrays, in the layout's order) as one vector.
fn read_model(layout: &Layout, path: &Path) -> Vec<f32> {
    let tensors = nnc_nn::io::read_npz(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    layout
        .from_tensors(&tensors)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The session's options, on one thread. The generator writes every field but `threads` and
/// `verify_messages` (and `bnf`, `approx_method` and `param_opt` where they have their
/// defaults); serde would quietly default a missing one, so the written names must be exactly
/// those.
fn options(config: &Value) -> FlOptions {
    let written = &config["options"];
    let opts: FlOptions = serde_json::from_value(written.clone()).expect("options");
    let mut fields = serde_json::to_value(&opts).unwrap();
    // Local to each side, not session settings.
    fields.as_object_mut().unwrap().remove("threads");
    fields.as_object_mut().unwrap().remove("verify_messages");
    if !opts.bnf {
        fields.as_object_mut().unwrap().remove("bnf");
    }
    if opts.approx_method == nnc_fl::ApproxMethod::Uniform {
        fields.as_object_mut().unwrap().remove("approx_method");
    }
    if opts.param_opt {
        fields.as_object_mut().unwrap().remove("param_opt");
    }
    let names = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(names(written), names(&fields), "option names");
    FlOptions {
        threads: Some(1),
        ..opts
    }
}

/// Runs one recorded session through our codecs; the first difference, if any.
fn replay(dir: &Path) -> Result<(), String> {
    let config: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap())
        .expect("config.json");
    let specs = config["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .map(|t| {
            let shape = t[1].as_array().unwrap().iter();
            TensorSpec::new(
                t[0].as_str().unwrap(),
                shape.map(|d| d.as_u64().unwrap() as usize).collect(),
            )
        })
        .collect();
    let layout = Layout::new(specs).map_err(|e| e.to_string())?;
    let opts = options(&config);
    let clients = config["clients"].as_u64().unwrap();
    let rounds = config["rounds"].as_u64().unwrap();
    let weights: Vec<u64> = config["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap())
        .collect();

    let initial = read_model(&layout, &dir.join("initial.npz"));
    let mut server = ServerCodec::new(layout.clone(), opts.clone(), initial)
        .map_err(|e| format!("server: {e}"))?;
    let mut codecs: Vec<ClientCodec> = (1..=clients)
        .map(|id| ClientCodec::new(layout.clone(), opts.clone(), id).unwrap())
        .collect();
    let mut down = server.initial_message();
    for round in 1..=rounds {
        let rdir = dir.join(format!("round_{round:02}"));
        let mut ups = Vec::new();
        for (i, client) in codecs.iter_mut().enumerate() {
            let id = i + 1;
            let at = format!("round {round}, client {id}");
            let global = client
                .receive(&down)
                .map_err(|e| format!("{at}: receive: {e}"))?;
            // FedBNF clients blend the batch norms with their own, so each holds its own model.
            let own = rdir.join(format!("client_{id}_received.npz"));
            let expected_global = match own.is_file() {
                true => read_model(&layout, &own),
                false => read_model(&layout, &rdir.join("global.npz")),
            };
            if let Some(p) =
                (0..global.len()).find(|&p| global[p].to_bits() != expected_global[p].to_bits())
            {
                return Err(format!(
                    "{at}: global model differs at value {p}: {} vs reference {}",
                    global[p], expected_global[p]
                ));
            }
            let local = read_model(&layout, &rdir.join(format!("client_{id}_local.npz")));
            let up = client
                .send(&local)
                .map_err(|e| format!("{at}: send: {e}"))?;
            if opts.compress_upstream {
                let expected = std::fs::read(rdir.join(format!("client_{id}.nnc"))).unwrap();
                compare_bytes(&at, &up, &expected)?;
            }
            ups.push(up);
        }
        let messages: Vec<ClientMessage<'_>> = ups
            .iter()
            .enumerate()
            .map(|(i, bytes)| ClientMessage {
                device_id: i as u64 + 1,
                weight: weights[i],
                bytes,
            })
            .collect();
        down = server
            .aggregate(&messages)
            .map_err(|e| format!("round {round}, server: {e}"))?;
        if opts.compress_downstream {
            let expected = std::fs::read(rdir.join("server.nnc")).unwrap();
            compare_bytes(&format!("round {round}, server"), &down, &expected)?;
        }
    }
    Ok(())
}

fn compare_bytes(at: &str, ours: &[u8], expected: &[u8]) -> Result<(), String> {
    if ours == expected {
        return Ok(());
    }
    let first = ours
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(expected.len()));
    Err(format!(
        "{at}: {} B vs reference {} B, first difference at byte {first}",
        ours.len(),
        expected.len()
    ))
}

#[test]
fn our_fl_messages_are_the_references() {
    let dir = sessions_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no sessions in {}", dir.display());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let name = c.file_name().unwrap().to_string_lossy().into_owned();
            replay(c).err().map(|e| format!("{name}: {e}"))
        })
        .collect();
    println!(
        "{} of {} sessions match the reference",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
