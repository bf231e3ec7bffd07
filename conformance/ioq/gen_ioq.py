#!/usr/bin/env python3
"""Inference-optimised quantization (IOQ) cases: the reference's `nnc.compress(..., ioq=True)` with a
model executer whose `eval_model` is a deterministic function of the reconstructed parameters.

Run with the reference's venv (nncodec 2.1.3) from any folder:

    /opt/nncodec-ref/bin/python gen_ioq.py OUTDIR [--seed N]

The "accuracy" each trial gets is the share of all float elements whose reconstruction lies within
`tolerance` of the original value (computed in float64): an integer count over an integer total,
which any implementation computes to the same float64, so the search's choices depend on the
reconstructions alone. Per case OUTDIR/<case>/ holds input.npz (the parameters, in order),
bitstream.nnc (the reference's stream) and config.json (the `nnc.compress` arguments, the
tolerance, the QPs the search settled on and the number of evaluations).
"""
import argparse
import copy
import json
import os
import zlib

import numpy as np

from nncodec import nnc, nnc_core
import nncodec.nnc_core.approximator as approximator


class WithinTolerance(nnc_core.nnr_model.ModelExecute):
    def __init__(self, original, tolerance):
        self.original = {k: np.asarray(v) for k, v in original.items()}
        self.tolerance = tolerance
        self.calls = 0

    def eval_model(self, parameters, verbose=False):
        self.calls += 1
        hits, total = 0, 0
        for name, orig in self.original.items():
            if orig.dtype.kind != "f":
                continue
            rec = np.asarray(parameters[name], dtype=np.float64).reshape(orig.shape)
            hits += int(np.count_nonzero(np.abs(rec - orig.astype(np.float64)) <= self.tolerance))
            total += orig.size
        return {"acc": hits / total}

    def has_eval(self):
        return True

    def has_test(self):
        return False

    def has_tune_ft(self):
        return False

    def has_tune_lsa(self):
        return False


def layers(rng, shapes, scale=0.05):
    params = {}
    for i, shape in enumerate(shapes):
        params[f"l{i}.weight"] = (scale * rng.standard_normal(shape)).astype(np.float32)
        params[f"l{i}.bias"] = (0.1 * rng.standard_normal(shape[0])).astype(np.float32)
    return params


def cases(rng):
    yield "ioq_dq", layers(rng, [(64, 48), (32, 64), (10, 32)]), {"qp": -30, "tolerance": 0.003}
    yield "ioq_nodq_opt_qp", layers(rng, [(48, 16, 3, 3), (24, 48), (24, 24)]), {
        "qp": -28, "use_dq": False, "opt_qp": True, "tolerance": 0.004}
    blocks = layers(rng, [(40, 30), (20, 40), (8, 20)])
    ids = {"block_identifier": {}, "parameter_type": {}}
    for name in blocks:
        ids["block_identifier"][name] = name.split(".")[0]
        ids["parameter_type"][name] = "weight" if name.endswith("weight") else "bias"
    yield "ioq_blocks_rowskip", blocks, {"qp": -31, "row_skipping": True, "block_id_and_param_type": ids,
                                         "tolerance": 0.002}
    yield "ioq_density3_no_param_opt", layers(rng, [(36, 36), (36, 36), (12, 36), (6, 12)]), {
        "qp": -60, "qp_density": 3, "param_opt": False, "tolerance": 0.003}
    yield "ioq_lambda_scan", layers(rng, [(72, 40), (16, 72)], scale=0.08), {
        "qp": -29, "lambda_scale": 1.0, "scan_order": 1, "tolerance": 0.005}
    # A convolution with its batch norm in one block (not folded), a weight-shaped int32 tensor
    # (the largest: the search skips it, and no QP moves it) and two linear layers.
    mixed = {"ids": rng.integers(-50, 50, size=(64, 64)).astype(np.int32),
             "c.weight": (0.05 * rng.standard_normal((16, 8, 3, 3))).astype(np.float32),
             "bn.weight": (1 + 0.1 * rng.standard_normal(16)).astype(np.float32),
             "bn.bias": (0.1 * rng.standard_normal(16)).astype(np.float32),
             "bn.running_mean": (0.2 * rng.standard_normal(16)).astype(np.float32),
             "bn.running_var": rng.uniform(0.5, 1.5, 16).astype(np.float32)}
    mixed.update(layers(rng, [(24, 16), (10, 24)]))
    kinds = {"c.weight": "weight", "bn.weight": "bn.gamma", "bn.bias": "bn.beta", "bn.running_mean": "bn.mean",
             "bn.running_var": "bn.var"}
    ids = {"block_identifier": {k: "c" for k in kinds}, "parameter_type": dict(kinds)}
    yield "ioq_bn_block_int", mixed, {"qp": -31, "block_id_and_param_type": ids, "tolerance": 0.003}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    original_approx = approximator.approx

    for name, params, kw in cases(np.random.default_rng(args.seed)):
        kw = dict(kw)
        tolerance = kw.pop("tolerance")
        executer = WithinTolerance(params, tolerance)
        # The QPs the search settles on are those of the last approximation (the final encode's).
        chosen = {}

        def approx_spy(approx_info, model_info, approx_data, enc_info=None):
            chosen.clear()
            chosen.update({k: int(v) for k, v in approx_info["qp"].items()})
            return original_approx(approx_info, model_info, approx_data, enc_info)
        approximator.approx = approx_spy
        try:
            bs = nnc.compress({k: v.copy() for k, v in params.items()}, bitstream_path=None, return_bitstream=True,
                              verbose=False, ioq=True, model_executer=executer, **copy.deepcopy(kw))
        finally:
            approximator.approx = original_approx
        folder = os.path.join(args.outdir, name)
        os.makedirs(folder, exist_ok=True)
        np.savez(os.path.join(folder, "input.npz"), **params)
        with open(os.path.join(folder, "bitstream.nnc"), "wb") as f:
            f.write(bytes(bs))
        plain = nnc.compress({k: v.copy() for k, v in params.items()}, bitstream_path=None, return_bitstream=True,
                             verbose=False, **copy.deepcopy(kw))
        config = {"name": name, "seed": args.seed, "encoder_args": kw, "tolerance": tolerance,
                  "evaluations": executer.calls, "qp": chosen, "bitstream_bytes": len(bs),
                  "bytes_without_ioq": len(plain), "same_as_without_ioq": bytes(plain) == bytes(bs)}
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        print(name, len(bs), "bytes;", len(plain), "without ioq;", executer.calls, "evaluations; qps", chosen)


if __name__ == "__main__":
    main()
