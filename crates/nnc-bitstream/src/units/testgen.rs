//! Random, syntactically consistent unit values for the round-trip property tests.

use super::consts::*;
use super::*;
use crate::ParseContext;

/// xorshift64*: deterministic, seedable, good enough for test data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn flag(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// Mostly small values, sometimes huge ones.
    pub(crate) fn ue_value(&mut self) -> u64 {
        match self.below(8) {
            0 => self.next(),
            1 => self.next() >> self.below(64),
            _ => self.below(40),
        }
    }
    pub(crate) fn f32(&mut self) -> f32 {
        (self.below(2_000_001) as f32 - 1_000_000.0) / 64.0
    }
    pub(crate) fn name(&mut self) -> String {
        let n = self.below(8);
        (0..n)
            .map(|_| char::from(b"abcxyz._019"[self.below(11) as usize]))
            .collect()
    }
    pub(crate) fn opt<T>(&mut self, present: bool, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        present.then(|| f(self))
    }
}

pub(crate) fn context(rng: &mut Rng) -> ParseContext {
    ParseContext {
        general_profile_idc: [0, 1, 1, 2][rng.below(4) as usize],
        mps_topology_indexed_reference_flag: rng.below(4) == 0,
        mps_parent_signalling_enabled_flag: rng.flag(),
        mps_seen: true,
    }
}

fn floats(rng: &mut Rng, n: u64) -> Vec<f32> {
    (0..n).map(|_| rng.f32()).collect()
}

fn spm(rng: &mut Rng) -> SparsificationPerformanceMap {
    let count = 1 + rng.below(3) as u8;
    let entries = (1..count)
        .map(|_| {
            let classes = rng.below(4) as u8;
            SpmEntry {
                sparsification_threshold: rng.f32(),
                non_zero_ratio: rng.f32(),
                spm_nn_accuracy: rng.f32(),
                spm_count_classes: classes,
                spm_class_bitmask: rng.ue_value(),
                spm_nn_class_accuracy: floats(rng, u64::from(classes)),
            }
        })
        .collect();
    SparsificationPerformanceMap {
        spm_count_thresholds: count,
        entries,
    }
}

fn ppm(rng: &mut Rng) -> PruningPerformanceMap {
    let count = 1 + rng.below(3) as u8;
    let entries = (1..count)
        .map(|_| {
            let classes = rng.below(4) as u8;
            PpmEntry {
                pruning_ratio: rng.f32(),
                ppm_nn_accuracy: rng.f32(),
                ppm_count_classes: classes,
                ppm_class_bitmask: rng.ue_value(),
                ppm_nn_class_accuracy: floats(rng, u64::from(classes)),
            }
        })
        .collect();
    PruningPerformanceMap {
        ppm_count_pruning_ratios: count,
        entries,
    }
}

fn upm(rng: &mut Rng) -> UnificationPerformanceMap {
    let count = 1 + rng.below(3) as u8;
    let entries = (1..count)
        .map(|_| {
            let crd = rng.below(4);
            let csb = rng.below(4) as u8;
            let cb = rng.below(4) as u8;
            let bitmask = rng.below(4);
            UpmEntry {
                count_reshaped_tensor_dimension: crd,
                reshaped_tensor_dimensions: (1..crd).map(|_| rng.ue_value()).collect(),
                count_super_block_dimension: csb,
                super_block_dimensions: (1..csb).map(|_| rng.below(256) as u8).collect(),
                count_block_dimension: cb,
                block_dimensions: (1..cb).map(|_| rng.below(256) as u8).collect(),
                unification_threshold: rng.f32(),
                upm_nn_accuracy: rng.f32(),
                upm_count_classes: rng.below(256) as u8,
                upm_class_bitmask: bitmask,
                upm_nn_class_accuracy: floats(rng, bitmask),
            }
        })
        .collect();
    UnificationPerformanceMap {
        upm_count_thresholds: count,
        entries,
    }
}

fn dpm(rng: &mut Rng) -> DecompositionPerformanceMap {
    let count = 1 + rng.below(3) as u8;
    let entries = (1..count)
        .map(|_| {
            let classes = rng.below(4) as u16;
            DpmEntry {
                mse_threshold: rng.f32(),
                dpm_nn_accuracy: rng.f32(),
                nn_reduction_ratio: rng.f32(),
                dpm_count_classes: classes,
                dpm_nn_class_accuracy: floats(rng, u64::from(classes)),
            }
        })
        .collect();
    DecompositionPerformanceMap {
        dpm_count_thresholds: count,
        entries,
    }
}

pub(crate) fn mps(rng: &mut Rng, ctx: &ParseContext) -> ModelParameterSet {
    let p1 = ctx.is_profile1();
    let qmf = rng.below(8) as u8;
    let has_qp = qmf & (NNR_QSU | NNR_QCB) != 0;
    let (spars, prun, unif, dec) = (rng.flag(), rng.flag(), rng.flag(), rng.flag());
    let base = p1 && rng.flag();
    let vsp = p1 && rng.flag();
    let mtp = p1 && rng.flag();
    let parent = p1 && rng.flag();
    ModelParameterSet {
        topology_carriage_flag: rng.flag(),
        mps_sparsification_flag: spars,
        mps_pruning_flag: prun,
        mps_unification_flag: unif,
        mps_decomposition_performance_map_flag: dec,
        mps_quantization_method_flags: qmf,
        mps_topology_indexed_reference_flag: rng.flag(),
        base_model_id_present_flag: p1.then_some(base),
        validation_set_performance_present_flag: p1.then_some(vsp),
        metric_type_performance_map_valid_flag: p1.then_some(mtp),
        mps_parent_signalling_enabled_flag: p1.then_some(parent),
        nnr_pre_flag: rng.opt(p1 && parent, Rng::flag),
        nnr_reserved_zero_1bit: rng.opt(p1 && !parent, |r| r.below(2) as u8),
        nnr_reserved_zero_2bits: rng.opt(p1, |r| r.below(4) as u8),
        base_model_id: rng.opt(base, Rng::name),
        performance_metric_type: rng.opt(vsp || mtp, Rng::name),
        nnr_reserved_zero_7bits: rng.opt(!p1, |r| r.below(128) as u8),
        mps_qp_density: rng.opt(has_qp, |r| r.below(8) as u8),
        mps_quantization_parameter: rng.opt(has_qp, |r| r.below(8192) as i16 - 4096),
        sparsification_performance_map: rng.opt(spars, spm),
        pruning_performance_map: rng.opt(prun, ppm),
        unification_performance_map: rng.opt(unif, upm),
        decomposition_performance_map: rng.opt(dec, dpm),
        validation_set_performance: rng.opt(vsp, Rng::f32),
    }
}

pub(crate) fn lps(rng: &mut Rng) -> LayerParameterSet {
    let qmf = rng.below(8) as u8;
    let has_qp = qmf & (NNR_QSU | NNR_QCB) != 0;
    let (spars, prun, unif) = (rng.flag(), rng.flag(), rng.flag());
    LayerParameterSet {
        lps_self_contained_flag: rng.flag(),
        nnr_reserved_zero_7bits: rng.below(128) as u8,
        nnr_reserved_zero_1_bits: rng.below(2) as u8,
        lps_sparsification_flag: spars,
        lps_pruning_flag: prun,
        lps_unification_flag: unif,
        lps_quantization_method_flags: qmf,
        nnr_reserved_zero_1bit: rng.below(2) as u8,
        lps_qp_density: rng.opt(has_qp, |r| r.below(8) as u8),
        lps_quantization_parameter: rng.opt(has_qp, |r| r.below(8192) as i16 - 4096),
        sparsification_performance_map: rng.opt(spars, spm),
        pruning_performance_map: rng.opt(prun, ppm),
        unification_performance_map: rng.opt(unif, upm),
    }
}

pub(crate) fn tpl(rng: &mut Rng) -> TopologyUnit {
    let format = [0, 1, 2, 3, 4, 6, 7, 255][rng.below(8) as usize];
    let reflist = format == NNR_TPL_REFLIST;
    TopologyUnit {
        topology_storage_format: format,
        topology_compression_format: rng.below(256) as u8,
        topology_data: rng.opt(!reflist, Rng::name),
        topology_elem_id_list: rng.opt(reflist, |r| {
            let n = 2 + r.below(4);
            (0..n).map(|_| r.name()).collect()
        }),
    }
}

pub(crate) fn qnt(rng: &mut Rng) -> QuantizationUnit {
    QuantizationUnit {
        quantization_storage_format: rng.below(256) as u8,
        quantization_compression_format: rng.below(256) as u8,
        quantization_data: rng.name(),
    }
}

pub(crate) fn codebook(rng: &mut Rng) -> Codebook {
    let size = 1 + rng.below(12);
    let zo = rng.below(size);
    let mut v = match rng.below(3) {
        0 => i64::from(i32::MIN) + rng.below(10) as i64,
        1 => i64::from(i32::MAX) - 1_000_000,
        _ => rng.below(1 << 21) as i64 - (1 << 20),
    };
    let mut values = Vec::new();
    for _ in 0..size {
        values.push(v);
        v += 1 + [0, 1, 3, 100, 70_000][rng.below(5) as usize];
    }
    Codebook {
        codebook_egk: rng.below(16) as u8,
        codebook_size: size,
        codebook_zero_offset: zo,
        values,
    }
}

/// A random NDU header valid in `ctx`; returns it with the side information its dimensions
/// need when they are not transmitted.
pub(crate) fn ndu(rng: &mut Rng, ctx: &ParseContext) -> (NduHeader, crate::SideInfo) {
    let pt = PayloadType::from_raw(rng.below(4) as u8).unwrap_or_default();
    let ipp = rng.below(5) != 0;
    let multi = if ipp {
        pt == PayloadType::Block && rng.flag()
    } else {
        rng.flag()
    };
    let indexed = ctx.mps_topology_indexed_reference_flag;
    let p1 = ctx.is_profile1();
    let mut h = NduHeader {
        nnr_compressed_data_unit_payload_type: pt,
        nnr_multiple_topology_elements_present_flag: multi,
        nnr_decompressed_data_format_present_flag: rng.below(4) == 0,
        input_parameters_present_flag: ipp,
        ..NduHeader::default()
    };
    let n_names = 2 + rng.below(3);
    if multi && !indexed {
        h.topology_elem_id_list = Some((0..n_names).map(|_| rng.name()).collect());
    } else if multi {
        h.topology_elem_id_index_list = Some((0..n_names).map(|_| rng.ue_value()).collect());
    } else if !indexed {
        h.topology_elem_id = Some(rng.name());
    } else {
        h.topology_elem_id_index = Some(rng.ue_value());
    }
    if p1 {
        let node = rng.flag();
        h.node_id_present_flag = Some(node);
        if node {
            h.device_id = Some(rng.ue_value());
            h.parameter_id = Some(rng.ue_value());
            h.put_node_depth = Some(rng.ue_value());
        }
        if ctx.mps_parent_signalling_enabled_flag {
            let parent = rng.flag();
            h.parent_node_id_present_flag = Some(parent);
            if parent {
                let t = rng.below(3) as u8;
                h.parent_node_id_type = Some(t);
                h.temporal_context_modeling_flag = Some(rng.flag());
                match t {
                    ICNN_NDU_ID => {
                        h.parent_device_id = Some(rng.ue_value());
                        if !node {
                            h.parameter_id = Some(rng.ue_value());
                            h.put_node_depth = Some(rng.ue_value());
                        }
                    }
                    ICNN_NDU_PL_SHA256 => {
                        let mut s = [0u8; 32];
                        s.iter_mut().for_each(|b| *b = rng.below(256) as u8);
                        h.parent_node_payload_sha256 = Some(s);
                    }
                    _ => {
                        let mut s = [0u8; 64];
                        s.iter_mut().for_each(|b| *b = rng.below(256) as u8);
                        h.parent_node_payload_sha512 = Some(s);
                    }
                }
            }
        }
    }
    if pt.has_codebook_flag() {
        let cb = rng.flag();
        h.codebook_present_flag = Some(cb);
        h.codebook = rng.opt(cb, codebook);
    }
    if pt.has_dq_flag() {
        h.dq_flag = Some(rng.flag());
    }
    h.nnr_decompressed_data_format = rng.opt(h.nnr_decompressed_data_format_present_flag, |r| {
        r.below(128) as u8
    });
    let ndims = [0, 1, 2, 2, 3, 4][rng.below(6) as usize];
    let dims: Vec<u64> = (0..ndims).map(|_| 1 + rng.below(150)).collect();
    h.tensor_dimensions = dims.clone();
    h.cabac_unary_length_minus1 = DEFAULT_CABAC_UNARY_LENGTH_MINUS1;
    let mut side = crate::SideInfo::default();
    let mut dims_in_band = false;
    if ipp {
        let tdf = rng.below(4) != 0;
        let culf = rng.flag();
        h.tensor_dimensions_flag = Some(tdf);
        h.cabac_unary_length_flag = Some(culf);
        h.compressed_parameter_types = rng.below(16) as u8;
        if h.compressed_parameter_types & NNR_CPT_DC != 0 {
            h.decomposition_rank = Some(1 + rng.below(100));
            h.g_number_of_rows = Some(1 + rng.below(100));
        }
        dims_in_band = tdf;
        if culf {
            h.cabac_unary_length_minus1 = rng.below(256) as u8;
        }
    }
    if !dims_in_band {
        let key = match (&h.topology_elem_id, &h.topology_elem_id_list) {
            (Some(n), _) => n.clone(),
            (None, Some(l)) => l[0].clone(),
            _ => format!(
                "#{}",
                h.topology_elem_id_index
                    .or(h.topology_elem_id_index_list.as_ref().map(|l| l[0]))
                    .unwrap_or(0)
            ),
        };
        side.tensor_dimensions.insert(key, dims.clone());
    }
    let dc = h.compressed_parameter_types & NNR_CPT_DC != 0;
    if pt == PayloadType::Block && dc && h.codebook_present_flag == Some(true) {
        h.codebook_dc = Some(codebook(rng));
    }
    if dims.len() > 1 {
        if p1 {
            h.first_tensor_dimension_shift = Some(rng.ue_value());
        }
        let so = [0, 0, 1, 2, 3, 4, 15][rng.below(7) as usize];
        h.scan_order = Some(so);
        if so > 0 {
            let n = h.expected_entry_points().unwrap_or(0);
            let dq = h.dq_flag == Some(true);
            let mut off = rng.below(1 << 20);
            h.cabac_entry_point_list = Some(
                (0..n)
                    .map(|_| {
                        off = (off + rng.below(5000)).saturating_sub(rng.below(2000));
                        let state = if dq { rng.below(8) } else { 0 };
                        (off << 11) | (rng.below(256) << 3) | state
                    })
                    .collect(),
            );
        }
    }
    (h, side)
}
