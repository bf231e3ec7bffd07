//! `bench-vs-ref --tools`: the coding tools beyond the defaults, one at a time, through the
//! reference's `nncodec.nnc.compress` (the one entry point that takes every encoder argument;
//! `tensor.encode` and `nn.encode` drop `scan_order`, `lambda_scale` and
//! `cabac_unary_length_minus1`) and through our model pipeline with the same setting.
//!
//! Every tool codes `randn(256, 64, 64)` on top of `nnc.compress`'s defaults (qp −38, row
//! skipping off), which the first row times alone. The codebook search runs one trial encode
//! per codebook entry, so it gets the first 64 Ki of those values at qp −20 (a few hundred
//! entries) and one run per side: at qp −38 the reference takes minutes.

use serde_json::{json, Value};

use nnc_tensor::{CodebookMode, EncodeOptions, Tensor, TensorData};

/// One setting of the encoder, as both sides spell it.
pub(super) struct Tool {
    pub name: &'static str,
    pub label: &'static str,
    /// Keyword arguments of `nnc.compress` besides its defaults.
    pub kwargs: Value,
    /// The same setting on [`EncodeOptions::compress_defaults`].
    pub options: EncodeOptions,
    /// Codes the 64 × 1024 tensor of [`codebook_input`], one run per side unless `--reps`.
    pub codebook_input: bool,
}

/// The tools, the defaults first.
pub(super) fn tools() -> Vec<Tool> {
    let tool = |name, label, kwargs, set: fn(&mut EncodeOptions)| {
        let mut options = EncodeOptions::compress_defaults();
        set(&mut options);
        Tool {
            name,
            label,
            kwargs,
            options,
            codebook_input: false,
        }
    };
    vec![
        tool("compress_defaults", "defaults (qp -38)", json!({}), |_| {}),
        tool("no_dq", "no DQ", json!({"use_dq": false}), |o| {
            o.use_dq = false
        }),
        tool(
            "no_param_opt",
            "no param_opt",
            json!({"param_opt": false}),
            |o| o.param_opt = false,
        ),
        tool(
            "lambda",
            "lambda_scale 1",
            json!({"lambda_scale": 1.0}),
            |o| o.lambda_scale = 1.0,
        ),
        tool(
            "lambda_no_dq",
            "lambda_scale 1, no DQ",
            json!({"lambda_scale": 1.0, "use_dq": false}),
            |o| {
                o.lambda_scale = 1.0;
                o.use_dq = false;
            },
        ),
        tool(
            "scan_order_2",
            "scan_order 2",
            json!({"scan_order": 2}),
            |o| o.scan_order = 2,
        ),
        tool(
            "unary_4",
            "cabac_unary_length_minus1 4",
            json!({"cabac_unary_length_minus1": 4}),
            |o| o.cabac_unary_length_minus1 = 4,
        ),
        tool("opt_qp", "opt_qp", json!({"opt_qp": true}), |o| {
            o.opt_qp = true
        }),
        tool(
            "bitdepth_8",
            "int_quant_bw 8",
            json!({"int_quant_bw": 8}),
            |o| o.int_quant_bw = Some(8),
        ),
        tool(
            "row_skipping",
            "row_skipping",
            json!({"row_skipping": true}),
            |o| o.row_skipping = true,
        ),
        Tool {
            codebook_input: true,
            ..tool(
                "codebook",
                "codebook_mode 2, qp -20",
                json!({"codebook_mode": 2, "qp": -20}),
                |o| {
                    o.codebook_mode = CodebookMode::Auto;
                    o.qp = -20;
                },
            )
        },
    ]
}

/// The codebook row's input: the first 64 × 1024 values of `randn`, under its name.
pub(super) fn codebook_input(randn: &Tensor) -> Option<Tensor> {
    let TensorData::F32(v) = &randn.data else {
        return None;
    };
    let shape = vec![64usize, 1024];
    let values = v.get(..shape.iter().product())?.to_vec();
    Tensor::try_new(randn.name.clone(), shape, TensorData::F32(values)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `nnc.compress` arguments a tool can set, read off our options.
    fn as_kwargs(o: &EncodeOptions) -> Value {
        let codebook_mode = match o.codebook_mode {
            CodebookMode::Off => 0,
            CodebookMode::Always => 1,
            CodebookMode::Auto => 2,
        };
        json!({
            "qp": o.qp,
            "use_dq": o.use_dq,
            "param_opt": o.param_opt,
            "lambda_scale": o.lambda_scale,
            "scan_order": o.scan_order,
            "cabac_unary_length_minus1": o.cabac_unary_length_minus1,
            "opt_qp": o.opt_qp,
            "int_quant_bw": o.int_quant_bw,
            "row_skipping": o.row_skipping,
            "codebook_mode": codebook_mode,
        })
    }

    #[test]
    fn each_tool_sets_on_our_side_what_it_passes_to_the_reference() {
        let defaults = as_kwargs(&EncodeOptions::compress_defaults());
        assert_eq!(defaults["qp"], -38);
        assert_eq!(defaults["row_skipping"], false);
        let list = tools();
        assert!(list[0].kwargs.as_object().is_some_and(|m| m.is_empty()));
        let mut names: Vec<_> = list.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), list.len(), "tool names are file names: unique");
        for t in &list {
            let mut expected = defaults.clone();
            for (k, v) in t.kwargs.as_object().expect("keyword arguments") {
                assert!(
                    expected.get(k).is_some(),
                    "{}: unknown argument {k}",
                    t.name
                );
                expected[k] = v.clone();
            }
            assert_eq!(as_kwargs(&t.options), expected, "{}", t.name);
            assert!(
                t.options.threads.is_none(),
                "{}: threads set per run",
                t.name
            );
        }
    }

    #[test]
    fn codebook_input_is_the_head_of_randn() {
        let randn = Tensor::try_new(
            "0",
            vec![2, 64, 1024],
            TensorData::F32((0..2 * 65_536).map(|i| i as f32).collect()),
        )
        .expect("shape");
        let head = codebook_input(&randn).expect("enough values");
        assert_eq!(head.shape, [64, 1024]);
        assert_eq!(head.name, "0");
        let TensorData::F32(v) = &head.data else {
            panic!("float32 expected")
        };
        assert_eq!(v.len(), 65_536);
        assert_eq!(v[65_535], 65_535.0);
        let short = Tensor::try_new("0", vec![8], TensorData::F32(vec![0.0; 8])).expect("shape");
        assert!(codebook_input(&short).is_none());
    }
}
