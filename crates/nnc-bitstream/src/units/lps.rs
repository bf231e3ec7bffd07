//! `NNR_LPS`: the layer parameter set (hls.md §2.7). Parsed only; never written by the
//! reference (whose decoder fails right after parsing one).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::units::consts::{NNR_QCB, NNR_QSU};
use crate::units::perf_maps::{
    PruningPerformanceMap, SparsificationPerformanceMap, UnificationPerformanceMap,
};
use crate::units::{check_bits, check_presence};
use crate::{BitReader, BitWriter, ParseContext};

// nnr_layer_parameter_set_unit_header( ) {
//   lps_self_contained_flag                            u(1)
//   nnr_reserved_zero_7bits                            u(7)
// }
// nnr_layer_parameter_set_unit_payload( ) {
//   nnr_reserved_zero_1_bits                           u(1)
//   lps_sparsification_flag                            u(1)
//   lps_pruning_flag                                   u(1)
//   lps_unification_flag                               u(1)
//   lps_quantization_method_flags                      u(3)
//   nnr_reserved_zero_1bit                             u(1)
//   if( lps_quantization_method_flags & ( NNR_QCB | NNR_QSU ) ) {
//     lps_qp_density                                   u(3)
//     lps_quantization_parameter                       i(13)
//   }
//   if( lps_sparsification_flag ) sparsification_performance_map( )
//   if( lps_pruning_flag )        pruning_performance_map( )
//   if( lps_unification_flag )    unification_performance_map( )
//   byte_alignment( )
// }
/// Type-specific header and payload of a layer parameter set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerParameterSet {
    /// Header flag.
    pub lps_self_contained_flag: bool,
    /// Header, u(7).
    pub nnr_reserved_zero_7bits: u8,
    /// u(1).
    pub nnr_reserved_zero_1_bits: u8,
    /// Gates `sparsification_performance_map`.
    pub lps_sparsification_flag: bool,
    /// Gates `pruning_performance_map`.
    pub lps_pruning_flag: bool,
    /// Gates `unification_performance_map`.
    pub lps_unification_flag: bool,
    /// u(3) bit set of `NNR_QSU` / `NNR_QCB`.
    pub lps_quantization_method_flags: u8,
    /// u(1).
    pub nnr_reserved_zero_1bit: u8,
    /// u(3), present iff the quantisation method flags have QSU or QCB.
    pub lps_qp_density: Option<u8>,
    /// i(13), present with `lps_qp_density`.
    pub lps_quantization_parameter: Option<i16>,
    /// Present iff `lps_sparsification_flag`.
    pub sparsification_performance_map: Option<SparsificationPerformanceMap>,
    /// Present iff `lps_pruning_flag`.
    pub pruning_performance_map: Option<PruningPerformanceMap>,
    /// Present iff `lps_unification_flag`.
    pub unification_performance_map: Option<UnificationPerformanceMap>,
}

impl LayerParameterSet {
    fn has_qp(&self) -> bool {
        self.lps_quantization_method_flags & (NNR_QSU | NNR_QCB) != 0
    }

    /// Reads the type-specific header and payload.
    pub fn read(r: &mut BitReader<'_>, _ctx: &ParseContext) -> Result<Self> {
        let mut l = Self {
            lps_self_contained_flag: r.flag("lps_self_contained_flag")?,
            nnr_reserved_zero_7bits: r.u8_bits(7, "nnr_reserved_zero_7bits")?,
            nnr_reserved_zero_1_bits: r.u8_bits(1, "nnr_reserved_zero_1_bits")?,
            lps_sparsification_flag: r.flag("lps_sparsification_flag")?,
            lps_pruning_flag: r.flag("lps_pruning_flag")?,
            lps_unification_flag: r.flag("lps_unification_flag")?,
            lps_quantization_method_flags: r.u8_bits(3, "lps_quantization_method_flags")?,
            nnr_reserved_zero_1bit: r.u8_bits(1, "nnr_reserved_zero_1bit")?,
            ..Self::default()
        };
        if l.has_qp() {
            l.lps_qp_density = Some(r.u8_bits(3, "lps_qp_density")?);
            l.lps_quantization_parameter = Some(r.i(13, "lps_quantization_parameter")? as i16);
        }
        if l.lps_sparsification_flag {
            l.sparsification_performance_map = Some(SparsificationPerformanceMap::read(r)?);
        }
        if l.lps_pruning_flag {
            l.pruning_performance_map = Some(PruningPerformanceMap::read(r)?);
        }
        if l.lps_unification_flag {
            l.unification_performance_map = Some(UnificationPerformanceMap::read(r)?);
        }
        r.byte_alignment()?;
        Ok(l)
    }

    /// Writes the type-specific header and payload.
    pub fn write(&self, w: &mut BitWriter, _ctx: &ParseContext) -> Result<()> {
        check_bits(
            u64::from(self.nnr_reserved_zero_7bits),
            7,
            "nnr_reserved_zero_7bits",
        )?;
        check_bits(
            u64::from(self.nnr_reserved_zero_1_bits),
            1,
            "nnr_reserved_zero_1_bits",
        )?;
        check_bits(
            u64::from(self.lps_quantization_method_flags),
            3,
            "lps_quantization_method_flags",
        )?;
        check_bits(
            u64::from(self.nnr_reserved_zero_1bit),
            1,
            "nnr_reserved_zero_1bit",
        )?;
        check_presence(self.has_qp(), &self.lps_qp_density, "lps_qp_density")?;
        check_presence(
            self.has_qp(),
            &self.lps_quantization_parameter,
            "lps_quantization_parameter",
        )?;
        check_presence(
            self.lps_sparsification_flag,
            &self.sparsification_performance_map,
            "sparsification_performance_map",
        )?;
        check_presence(
            self.lps_pruning_flag,
            &self.pruning_performance_map,
            "pruning_performance_map",
        )?;
        check_presence(
            self.lps_unification_flag,
            &self.unification_performance_map,
            "unification_performance_map",
        )?;
        if let Some(d) = self.lps_qp_density {
            check_bits(u64::from(d), 3, "lps_qp_density")?;
        }
        if let Some(q) = self.lps_quantization_parameter {
            if !(-4096..4096).contains(&q) {
                return Err(Error::ValueOutOfRange {
                    element: "lps_quantization_parameter",
                    value: i128::from(q),
                });
            }
        }
        w.write_flag(self.lps_self_contained_flag);
        w.write_u(7, u64::from(self.nnr_reserved_zero_7bits));
        w.write_u(1, u64::from(self.nnr_reserved_zero_1_bits));
        w.write_flag(self.lps_sparsification_flag);
        w.write_flag(self.lps_pruning_flag);
        w.write_flag(self.lps_unification_flag);
        w.write_u(3, u64::from(self.lps_quantization_method_flags));
        w.write_u(1, u64::from(self.nnr_reserved_zero_1bit));
        if let (Some(d), Some(q)) = (self.lps_qp_density, self.lps_quantization_parameter) {
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
        w.byte_alignment();
        Ok(())
    }

    pub(crate) fn append_json(&self, m: &mut Map<String, Value>) {
        let b = |v: bool| Value::from(u8::from(v));
        m.insert(
            "lps_self_contained_flag".into(),
            b(self.lps_self_contained_flag),
        );
        m.insert(
            "nnr_reserved_zero_7bits".into(),
            self.nnr_reserved_zero_7bits.into(),
        );
        m.insert(
            "nnr_reserved_zero_1_bits".into(),
            self.nnr_reserved_zero_1_bits.into(),
        );
        m.insert(
            "lps_sparsification_flag".into(),
            b(self.lps_sparsification_flag),
        );
        m.insert("lps_pruning_flag".into(), b(self.lps_pruning_flag));
        m.insert("lps_unification_flag".into(), b(self.lps_unification_flag));
        m.insert(
            "lps_quantization_method_flags".into(),
            self.lps_quantization_method_flags.into(),
        );
        m.insert(
            "nnr_reserved_zero_1bit".into(),
            self.nnr_reserved_zero_1bit.into(),
        );
        if let Some(v) = self.lps_qp_density {
            m.insert("lps_qp_density".into(), v.into());
        }
        if let Some(v) = self.lps_quantization_parameter {
            m.insert("lps_quantization_parameter".into(), v.into());
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
    }
}
