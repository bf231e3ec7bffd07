//! `NNR_MPS`: the model parameter set (hls.md §2.6).

use serde_json::{Map, Value};

use crate::error::Result;
use crate::json::f32_value;
use crate::units::consts::{NNR_QCB, NNR_QSU};
use crate::units::perf_maps::{
    DecompositionPerformanceMap, PruningPerformanceMap, SparsificationPerformanceMap,
    UnificationPerformanceMap,
};
use crate::units::{check_bits, check_presence, check_st, write_st};
use crate::{BitReader, BitWriter, ParseContext};

// nnr_model_parameter_set_unit_header( ) { }           (empty)
// nnr_model_parameter_set_payload( ) {
//   topology_carriage_flag                             u(1)
//   mps_sparsification_flag                            u(1)
//   mps_pruning_flag                                   u(1)
//   mps_unification_flag                               u(1)
//   mps_decomposition_performance_map_flag             u(1)
//   mps_quantization_method_flags                      u(3)
//   mps_topology_indexed_reference_flag                u(1)
//   if( general_profile_idc == 1 ) {
//     base_model_id_present_flag                       u(1)
//     validation_set_performance_present_flag          u(1)
//     metric_type_performance_map_valid_flag           u(1)
//     mps_parent_signalling_enabled_flag               u(1)
//     if( mps_parent_signalling_enabled_flag )
//       nnr_pre_flag                                   u(1)
//     else
//       nnr_reserved_zero_1bit                         u(1)
//     nnr_reserved_zero_2bits                          u(2)
//     if( base_model_id_present_flag )
//       base_model_id                                  st(v)
//     if( validation_set_performance_present_flag || metric_type_performance_map_valid_flag )
//       performance_metric_type                        st(v)
//   } else
//     nnr_reserved_zero_7bits                          u(7)
//   if( mps_quantization_method_flags & ( NNR_QSU | NNR_QCB ) ) {
//     mps_qp_density                                   u(3)
//     mps_quantization_parameter                       i(13)
//   }
//   if( mps_sparsification_flag )                sparsification_performance_map( )
//   if( mps_pruning_flag )                       pruning_performance_map( )
//   if( mps_unification_flag )                   unification_performance_map( )
//   if( mps_decomposition_performance_map_flag ) decomposition_performance_map( )
//   if( general_profile_idc == 1 && validation_set_performance_present_flag )
//     validation_set_performance                       flt(32)
//   byte_alignment( )
// }
/// Payload of the model parameter set. Profile-1 elements are `Some` iff
/// `general_profile_idc == 1`; the profile-0 `nnr_reserved_zero_7bits` iff it is not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelParameterSet {
    /// Reference: 1.
    pub topology_carriage_flag: bool,
    /// Gates `sparsification_performance_map`.
    pub mps_sparsification_flag: bool,
    /// Gates `pruning_performance_map`.
    pub mps_pruning_flag: bool,
    /// Gates `unification_performance_map`.
    pub mps_unification_flag: bool,
    /// Gates `decomposition_performance_map`.
    pub mps_decomposition_performance_map_flag: bool,
    /// u(3) bit set of `NNR_QSU` (1) / `NNR_QCB` (2); reference: 1.
    pub mps_quantization_method_flags: u8,
    /// Topology elements are referenced by index (never by the reference).
    pub mps_topology_indexed_reference_flag: bool,
    /// Profile 1.
    pub base_model_id_present_flag: Option<bool>,
    /// Profile 1.
    pub validation_set_performance_present_flag: Option<bool>,
    /// Profile 1.
    pub metric_type_performance_map_valid_flag: Option<bool>,
    /// Profile 1: enables the parent fields of NDUs.
    pub mps_parent_signalling_enabled_flag: Option<bool>,
    /// Profile 1 with parent signalling.
    pub nnr_pre_flag: Option<bool>,
    /// Profile 1 without parent signalling.
    pub nnr_reserved_zero_1bit: Option<u8>,
    /// Profile 1, u(2).
    pub nnr_reserved_zero_2bits: Option<u8>,
    /// Profile 1 with `base_model_id_present_flag`.
    pub base_model_id: Option<String>,
    /// Profile 1 with `validation_set_performance_present_flag` or
    /// `metric_type_performance_map_valid_flag`.
    pub performance_metric_type: Option<String>,
    /// Profile 0, u(7).
    pub nnr_reserved_zero_7bits: Option<u8>,
    /// u(3), present iff the quantisation method flags have QSU or QCB.
    pub mps_qp_density: Option<u8>,
    /// i(13), present with `mps_qp_density`; reference: 0.
    pub mps_quantization_parameter: Option<i16>,
    /// Present iff `mps_sparsification_flag`.
    pub sparsification_performance_map: Option<SparsificationPerformanceMap>,
    /// Present iff `mps_pruning_flag`.
    pub pruning_performance_map: Option<PruningPerformanceMap>,
    /// Present iff `mps_unification_flag`.
    pub unification_performance_map: Option<UnificationPerformanceMap>,
    /// Present iff `mps_decomposition_performance_map_flag`.
    pub decomposition_performance_map: Option<DecompositionPerformanceMap>,
    /// Profile 1 with `validation_set_performance_present_flag`.
    pub validation_set_performance: Option<f32>,
}

impl ModelParameterSet {
    /// The MPS the reference API writes (hls.md §2.6): topology carried, uniform quantisation
    /// with the given `qp_density` and base qp 0, profile-1 fields for `general_profile_idc`.
    pub fn reference(
        general_profile_idc: u8,
        qp_density: u8,
        mps_parent_signalling_enabled_flag: bool,
        nnr_pre_flag: bool,
    ) -> Self {
        let p1 = general_profile_idc == 1;
        let some_if = |c: bool, v| if c { Some(v) } else { None };
        Self {
            topology_carriage_flag: true,
            mps_quantization_method_flags: NNR_QSU,
            base_model_id_present_flag: some_if(p1, false),
            validation_set_performance_present_flag: some_if(p1, false),
            metric_type_performance_map_valid_flag: some_if(p1, false),
            mps_parent_signalling_enabled_flag: some_if(p1, mps_parent_signalling_enabled_flag),
            nnr_pre_flag: some_if(p1 && mps_parent_signalling_enabled_flag, nnr_pre_flag),
            nnr_reserved_zero_1bit: if p1 && !mps_parent_signalling_enabled_flag {
                Some(0)
            } else {
                None
            },
            nnr_reserved_zero_2bits: if p1 { Some(0) } else { None },
            nnr_reserved_zero_7bits: if p1 { None } else { Some(0) },
            mps_qp_density: Some(qp_density),
            mps_quantization_parameter: Some(0),
            ..Self::default()
        }
    }

    fn has_qp(&self) -> bool {
        self.mps_quantization_method_flags & (NNR_QSU | NNR_QCB) != 0
    }

    /// Reads the payload (the MPS has no type-specific header).
    pub fn read(r: &mut BitReader<'_>, ctx: &ParseContext) -> Result<Self> {
        let mut m = Self {
            topology_carriage_flag: r.flag("topology_carriage_flag")?,
            mps_sparsification_flag: r.flag("mps_sparsification_flag")?,
            mps_pruning_flag: r.flag("mps_pruning_flag")?,
            mps_unification_flag: r.flag("mps_unification_flag")?,
            mps_decomposition_performance_map_flag: r
                .flag("mps_decomposition_performance_map_flag")?,
            mps_quantization_method_flags: r.u8_bits(3, "mps_quantization_method_flags")?,
            mps_topology_indexed_reference_flag: r.flag("mps_topology_indexed_reference_flag")?,
            ..Self::default()
        };
        if ctx.is_profile1() {
            let base = r.flag("base_model_id_present_flag")?;
            let vsp = r.flag("validation_set_performance_present_flag")?;
            let mtp = r.flag("metric_type_performance_map_valid_flag")?;
            let parent = r.flag("mps_parent_signalling_enabled_flag")?;
            m.base_model_id_present_flag = Some(base);
            m.validation_set_performance_present_flag = Some(vsp);
            m.metric_type_performance_map_valid_flag = Some(mtp);
            m.mps_parent_signalling_enabled_flag = Some(parent);
            if parent {
                m.nnr_pre_flag = Some(r.flag("nnr_pre_flag")?);
            } else {
                m.nnr_reserved_zero_1bit = Some(r.u8_bits(1, "nnr_reserved_zero_1bit")?);
            }
            m.nnr_reserved_zero_2bits = Some(r.u8_bits(2, "nnr_reserved_zero_2bits")?);
            if base {
                m.base_model_id = Some(r.st("base_model_id")?);
            }
            if vsp || mtp {
                m.performance_metric_type = Some(r.st("performance_metric_type")?);
            }
        } else {
            m.nnr_reserved_zero_7bits = Some(r.u8_bits(7, "nnr_reserved_zero_7bits")?);
        }
        if m.has_qp() {
            m.mps_qp_density = Some(r.u8_bits(3, "mps_qp_density")?);
            m.mps_quantization_parameter = Some(r.i(13, "mps_quantization_parameter")? as i16);
        }
        if m.mps_sparsification_flag {
            m.sparsification_performance_map = Some(SparsificationPerformanceMap::read(r)?);
        }
        if m.mps_pruning_flag {
            m.pruning_performance_map = Some(PruningPerformanceMap::read(r)?);
        }
        if m.mps_unification_flag {
            m.unification_performance_map = Some(UnificationPerformanceMap::read(r)?);
        }
        if m.mps_decomposition_performance_map_flag {
            m.decomposition_performance_map = Some(DecompositionPerformanceMap::read(r)?);
        }
        if ctx.is_profile1() && m.validation_set_performance_present_flag == Some(true) {
            m.validation_set_performance = Some(r.flt32("validation_set_performance")?);
        }
        r.byte_alignment()?;
        Ok(m)
    }

    fn validate(&self, ctx: &ParseContext) -> Result<()> {
        let p1 = ctx.is_profile1();
        check_bits(
            u64::from(self.mps_quantization_method_flags),
            3,
            "mps_quantization_method_flags",
        )?;
        check_presence(
            p1,
            &self.base_model_id_present_flag,
            "base_model_id_present_flag",
        )?;
        check_presence(
            p1,
            &self.validation_set_performance_present_flag,
            "validation_set_performance_present_flag",
        )?;
        check_presence(
            p1,
            &self.metric_type_performance_map_valid_flag,
            "metric_type_performance_map_valid_flag",
        )?;
        check_presence(
            p1,
            &self.mps_parent_signalling_enabled_flag,
            "mps_parent_signalling_enabled_flag",
        )?;
        let parent = self.mps_parent_signalling_enabled_flag == Some(true);
        check_presence(p1 && parent, &self.nnr_pre_flag, "nnr_pre_flag")?;
        check_presence(
            p1 && !parent,
            &self.nnr_reserved_zero_1bit,
            "nnr_reserved_zero_1bit",
        )?;
        check_presence(p1, &self.nnr_reserved_zero_2bits, "nnr_reserved_zero_2bits")?;
        let base = self.base_model_id_present_flag == Some(true);
        let vsp = self.validation_set_performance_present_flag == Some(true);
        let mtp = self.metric_type_performance_map_valid_flag == Some(true);
        check_presence(base, &self.base_model_id, "base_model_id")?;
        check_presence(
            vsp || mtp,
            &self.performance_metric_type,
            "performance_metric_type",
        )?;
        check_presence(
            !p1,
            &self.nnr_reserved_zero_7bits,
            "nnr_reserved_zero_7bits",
        )?;
        check_presence(self.has_qp(), &self.mps_qp_density, "mps_qp_density")?;
        check_presence(
            self.has_qp(),
            &self.mps_quantization_parameter,
            "mps_quantization_parameter",
        )?;
        check_presence(
            self.mps_sparsification_flag,
            &self.sparsification_performance_map,
            "sparsification_performance_map",
        )?;
        check_presence(
            self.mps_pruning_flag,
            &self.pruning_performance_map,
            "pruning_performance_map",
        )?;
        check_presence(
            self.mps_unification_flag,
            &self.unification_performance_map,
            "unification_performance_map",
        )?;
        check_presence(
            self.mps_decomposition_performance_map_flag,
            &self.decomposition_performance_map,
            "decomposition_performance_map",
        )?;
        check_presence(
            p1 && vsp,
            &self.validation_set_performance,
            "validation_set_performance",
        )?;
        if let Some(v) = self.nnr_reserved_zero_1bit {
            check_bits(u64::from(v), 1, "nnr_reserved_zero_1bit")?;
        }
        if let Some(v) = self.nnr_reserved_zero_2bits {
            check_bits(u64::from(v), 2, "nnr_reserved_zero_2bits")?;
        }
        if let Some(v) = self.nnr_reserved_zero_7bits {
            check_bits(u64::from(v), 7, "nnr_reserved_zero_7bits")?;
        }
        if let Some(v) = self.mps_qp_density {
            check_bits(u64::from(v), 3, "mps_qp_density")?;
        }
        if let Some(q) = self.mps_quantization_parameter {
            if !(-4096..4096).contains(&q) {
                return Err(crate::Error::ValueOutOfRange {
                    element: "mps_quantization_parameter",
                    value: i128::from(q),
                });
            }
        }
        if let Some(s) = &self.base_model_id {
            check_st(s, "base_model_id")?;
        }
        if let Some(s) = &self.performance_metric_type {
            check_st(s, "performance_metric_type")?;
        }
        Ok(())
    }

    /// Writes the payload.
    pub fn write(&self, w: &mut BitWriter, ctx: &ParseContext) -> Result<()> {
        self.validate(ctx)?;
        w.write_flag(self.topology_carriage_flag);
        w.write_flag(self.mps_sparsification_flag);
        w.write_flag(self.mps_pruning_flag);
        w.write_flag(self.mps_unification_flag);
        w.write_flag(self.mps_decomposition_performance_map_flag);
        w.write_u(3, u64::from(self.mps_quantization_method_flags));
        w.write_flag(self.mps_topology_indexed_reference_flag);
        let flag = |f: Option<bool>| f == Some(true);
        if ctx.is_profile1() {
            w.write_flag(flag(self.base_model_id_present_flag));
            w.write_flag(flag(self.validation_set_performance_present_flag));
            w.write_flag(flag(self.metric_type_performance_map_valid_flag));
            w.write_flag(flag(self.mps_parent_signalling_enabled_flag));
            if let Some(p) = self.nnr_pre_flag {
                w.write_flag(p);
            }
            if let Some(z) = self.nnr_reserved_zero_1bit {
                w.write_u(1, u64::from(z));
            }
            w.write_u(2, u64::from(self.nnr_reserved_zero_2bits.unwrap_or(0)));
            if let Some(s) = &self.base_model_id {
                write_st(w, s, "base_model_id")?;
            }
            if let Some(s) = &self.performance_metric_type {
                write_st(w, s, "performance_metric_type")?;
            }
        } else {
            w.write_u(7, u64::from(self.nnr_reserved_zero_7bits.unwrap_or(0)));
        }
        if let (Some(d), Some(q)) = (self.mps_qp_density, self.mps_quantization_parameter) {
            w.write_u(3, u64::from(d));
            w.write_i(13, i64::from(q));
        }
        if let Some(m) = &self.sparsification_performance_map {
            m.write(w)?;
        }
        if let Some(m) = &self.pruning_performance_map {
            m.write(w)?;
        }
        if let Some(m) = &self.unification_performance_map {
            m.write(w)?;
        }
        if let Some(m) = &self.decomposition_performance_map {
            m.write(w)?;
        }
        if let Some(v) = self.validation_set_performance {
            w.write_flt32(v);
        }
        w.byte_alignment();
        Ok(())
    }

    pub(crate) fn append_json(&self, m: &mut Map<String, Value>) {
        let b = |v: bool| Value::from(u8::from(v));
        m.insert(
            "topology_carriage_flag".into(),
            b(self.topology_carriage_flag),
        );
        m.insert(
            "mps_sparsification_flag".into(),
            b(self.mps_sparsification_flag),
        );
        m.insert("mps_pruning_flag".into(), b(self.mps_pruning_flag));
        m.insert("mps_unification_flag".into(), b(self.mps_unification_flag));
        m.insert(
            "mps_decomposition_performance_map_flag".into(),
            b(self.mps_decomposition_performance_map_flag),
        );
        m.insert(
            "mps_quantization_method_flags".into(),
            self.mps_quantization_method_flags.into(),
        );
        m.insert(
            "mps_topology_indexed_reference_flag".into(),
            b(self.mps_topology_indexed_reference_flag),
        );
        let opt_flags = [
            (
                "base_model_id_present_flag",
                self.base_model_id_present_flag,
            ),
            (
                "validation_set_performance_present_flag",
                self.validation_set_performance_present_flag,
            ),
            (
                "metric_type_performance_map_valid_flag",
                self.metric_type_performance_map_valid_flag,
            ),
            (
                "mps_parent_signalling_enabled_flag",
                self.mps_parent_signalling_enabled_flag,
            ),
            ("nnr_pre_flag", self.nnr_pre_flag),
        ];
        for (k, v) in opt_flags {
            if let Some(v) = v {
                m.insert(k.into(), b(v));
            }
        }
        if let Some(v) = self.nnr_reserved_zero_1bit {
            m.insert("nnr_reserved_zero_1bit".into(), v.into());
        }
        if let Some(v) = self.nnr_reserved_zero_2bits {
            m.insert("nnr_reserved_zero_2bits".into(), v.into());
        }
        if let Some(s) = &self.base_model_id {
            m.insert("base_model_id".into(), s.as_str().into());
        }
        if let Some(s) = &self.performance_metric_type {
            m.insert("performance_metric_type".into(), s.as_str().into());
        }
        if let Some(v) = self.nnr_reserved_zero_7bits {
            m.insert("nnr_reserved_zero_7bits".into(), v.into());
        }
        if let Some(v) = self.mps_qp_density {
            m.insert("mps_qp_density".into(), v.into());
        }
        if let Some(v) = self.mps_quantization_parameter {
            m.insert("mps_quantization_parameter".into(), v.into());
        }
        if let Some(p) = &self.sparsification_performance_map {
            p.append_json(m);
        }
        if let Some(p) = &self.pruning_performance_map {
            p.append_json(m);
        }
        if let Some(p) = &self.unification_performance_map {
            p.append_json(m);
        }
        if let Some(p) = &self.decomposition_performance_map {
            p.append_json(m);
        }
        if let Some(v) = self.validation_set_performance {
            // Reference quirk: its flt reader returns a one-element array.
            m.insert(
                "validation_set_performance".into(),
                Value::Array(vec![f32_value(v)]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_unit, NnrUnit};

    #[test]
    fn reference_mps_bytes() {
        let ctx = ParseContext {
            general_profile_idc: 1,
            ..ParseContext::default()
        };
        // hls.md §2.6: 00 08 06 81 XX 40 00 80
        for (parent, pre, xx) in [
            (false, false, 0x00),
            (true, false, 0x08),
            (true, true, 0x0c),
        ] {
            let m = ModelParameterSet::reference(1, 2, parent, pre);
            let bytes = encode_unit(&NnrUnit::Mps(m.clone()), &ctx).unwrap();
            assert_eq!(bytes, [0x00, 0x08, 0x06, 0x81, xx, 0x40, 0x00, 0x80]);
            let back = ModelParameterSet::read(&mut BitReader::new(&bytes[3..]), &ctx).unwrap();
            assert_eq!(back, m);
        }
        for q in 0..8u8 {
            let bytes = encode_unit(
                &NnrUnit::Mps(ModelParameterSet::reference(1, q, false, false)),
                &ctx,
            )
            .unwrap();
            assert_eq!(bytes[5], q << 5);
        }
    }

    #[test]
    fn profile_0_and_misuse() {
        let ctx0 = ParseContext::default();
        let m = ModelParameterSet::reference(0, 2, false, false);
        let mut w = BitWriter::new();
        m.write(&mut w, &ctx0).unwrap();
        // 1 0000 001 0 | 0000000 + qpd 010 + 13 zero bits + alignment
        assert_eq!(w.as_bytes(), &[0x81, 0x00, 0x40, 0x00, 0x80]);
        // profile-1 fields under a profile-0 context are refused
        let p1 = ModelParameterSet::reference(1, 2, false, false);
        assert!(p1.write(&mut BitWriter::new(), &ctx0).is_err());
        let mut bad = m.clone();
        bad.mps_quantization_parameter = Some(5000);
        assert!(bad.write(&mut BitWriter::new(), &ctx0).is_err());
        let mut bad = m;
        bad.mps_sparsification_flag = true;
        assert!(bad.write(&mut BitWriter::new(), &ctx0).is_err());
    }

    #[test]
    fn performance_maps_follow_the_reference_loops() {
        let ctx = ParseContext {
            general_profile_idc: 1,
            ..ParseContext::default()
        };
        let mut m = ModelParameterSet::reference(1, 2, false, false);
        m.mps_unification_flag = true;
        m.unification_performance_map = Some(UnificationPerformanceMap {
            upm_count_thresholds: 2,
            entries: vec![crate::units::UpmEntry {
                count_reshaped_tensor_dimension: 3,
                reshaped_tensor_dimensions: vec![4, 5],
                count_super_block_dimension: 0,
                super_block_dimensions: vec![],
                count_block_dimension: 2,
                block_dimensions: vec![8],
                unification_threshold: 0.5,
                upm_nn_accuracy: 0.25,
                upm_count_classes: 7,
                upm_class_bitmask: 2,
                upm_nn_class_accuracy: vec![1.0, 2.0],
            }],
        });
        m.validation_set_performance_present_flag = Some(true);
        m.performance_metric_type = Some("top1".into());
        m.validation_set_performance = Some(0.75);
        let mut w = BitWriter::new();
        m.write(&mut w, &ctx).unwrap();
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        assert_eq!(ModelParameterSet::read(&mut r, &ctx).unwrap(), m);
        assert_eq!(r.bits_left(), 0);
        let mut j = Map::new();
        m.append_json(&mut j);
        assert_eq!(j["validation_set_performance"], serde_json::json!([0.75]));
        assert_eq!(
            j["reshaped_tensor_dimensions"],
            serde_json::json!([[4, 5, 0]])
        );
        assert_eq!(
            j["upm_nn_class_accuracy"],
            serde_json::json!([[1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
        );
        // a count of 0 (reference: negative array size) is malformed
        let mut bad = bytes.clone();
        // byte 0: topology 1, spars 0, prun 0, unif 1, dec 0, qmf 001 -> 0x91; the map count
        // is the first byte after the 16 flag bits + 16 qp bits + "top1\0"
        assert_eq!(bad[0], 0x91);
        let count_at = 2 + 5 + 2;
        assert_eq!(bad[count_at], 2);
        bad[count_at] = 0;
        let e = ModelParameterSet::read(&mut BitReader::new(&bad), &ctx).unwrap_err();
        assert!(matches!(
            e,
            crate::Error::InvalidValue {
                element: "upm_count_thresholds",
                ..
            }
        ));
    }
}
