//! Checkpoints written by `write_pytorch` and by the streaming `TensorWriter` read back as the
//! tensors given: any names (any Unicode, newlines and dots included), every dtype, any shape
//! (0-d and empty too), tensors streamed in any order.

use nnc_nn::io::{read_tensors, write_pytorch, TensorWriter};
use nnc_tensor::{Tensor, TensorData, TensorSpec};
use proptest::prelude::*;

/// Deterministic values of dtype number `kind` (0..13), `n` of them.
fn data(kind: u8, n: usize, seed: u64) -> TensorData {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v = |n| (0..n).map(|_| next()).collect::<Vec<u64>>();
    let w = v(n);
    match kind {
        0 => TensorData::F64(w.iter().map(|&b| f64::from_bits(b)).collect()),
        1 => TensorData::F32(w.iter().map(|&b| f32::from_bits(b as u32)).collect()),
        2 => TensorData::F16(w.iter().map(|&b| b as u16).collect()),
        3 => TensorData::BF16(w.iter().map(|&b| b as u16).collect()),
        4 => TensorData::I64(w.iter().map(|&b| b as i64).collect()),
        5 => TensorData::I32(w.iter().map(|&b| b as i32).collect()),
        6 => TensorData::I16(w.iter().map(|&b| b as i16).collect()),
        7 => TensorData::I8(w.iter().map(|&b| b as i8).collect()),
        8 => TensorData::U64(w),
        9 => TensorData::U32(w.iter().map(|&b| b as u32).collect()),
        10 => TensorData::U16(w.iter().map(|&b| b as u16).collect()),
        11 => TensorData::U8(w.iter().map(|&b| b as u8).collect()),
        _ => TensorData::Bool(w.iter().map(|&b| b & 1 == 1).collect()),
    }
}

fn model() -> impl Strategy<Value = Vec<Tensor>> {
    let tensor = (
        "\\PC{0,10}",
        0u8..13,
        prop::collection::vec(0usize..4, 0..4),
        any::<u64>(),
    );
    prop::collection::vec(tensor, 0..6).prop_map(|specs| {
        let mut seen = std::collections::HashSet::new();
        specs
            .into_iter()
            .filter(|(name, ..)| seen.insert(name.clone()))
            .map(|(name, kind, shape, seed)| {
                let n = shape.iter().product();
                Tensor::try_new(name, shape, data(kind, n, seed)).expect("consistent tensor")
            })
            .collect()
    })
}

/// Bit patterns: NaNs compare unequal as floats.
fn bits(t: &[Tensor]) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    t.iter()
        .map(|t| {
            let mut raw = Vec::new();
            match &t.data {
                TensorData::F64(v) => v.iter().for_each(|x| raw.extend(x.to_le_bytes())),
                TensorData::F32(v) => v.iter().for_each(|x| raw.extend(x.to_le_bytes())),
                other => raw.extend(format!("{other:?}").into_bytes()),
            }
            raw.extend(t.dtype().numpy_name().as_bytes());
            (t.name.clone(), t.shape.clone(), raw)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn written_checkpoints_read_back(tensors in model(), rotate in 0usize..6) {
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = dir.path().join("whole.pt");
        write_pytorch(&whole, &tensors).expect("write");
        let back = read_tensors(&whole, "x").expect("read");
        prop_assert_eq!(bits(&back), bits(&tensors));

        let plan: Vec<TensorSpec> = tensors
            .iter()
            .map(TensorSpec::from)
            .collect();
        let streamed = dir.path().join("streamed.pth");
        let mut w = TensorWriter::create(&streamed, &plan).expect("create");
        let mut order: Vec<&Tensor> = tensors.iter().collect();
        if !order.is_empty() {
            let k = rotate % order.len();
            order.rotate_left(k);
        }
        for t in order {
            w.write(t).expect("write tensor");
        }
        w.finish().expect("finish");
        let back = read_tensors(&streamed, "x").expect("read streamed");
        prop_assert_eq!(bits(&back), bits(&tensors));
    }
}
