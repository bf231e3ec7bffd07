//! Performance maps of the MPS / LPS (hls.md §2.6.1–2.6.4). Never written by the reference;
//! parsed with its loop bounds.
//!
//! Reference quirk (all four maps): the loops run `count − 1` times, so `entries.len()` must be
//! `count − 1`; a count of 0 makes the reference fail (negative array size) and is rejected.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::json::{f32_value, u64_values};
use crate::{BitReader, BitWriter};

/// Reads the leading `u(8)` count of a map and checks that it is at least 1.
fn read_count(r: &mut BitReader<'_>, element: &'static str) -> Result<u8> {
    let count = r.u8_bits(8, element)?;
    if count == 0 {
        return Err(Error::InvalidValue {
            element,
            value: 0,
            bit_offset: r.bit_offset(),
        });
    }
    Ok(count)
}

fn check_count(count: u8, entries: usize, element: &'static str) -> Result<()> {
    if count == 0 || entries != usize::from(count) - 1 {
        return Err(Error::InvalidArgument {
            element,
            reason: "must be at least 1 and equal entries.len() + 1 (reference loop bound)",
        });
    }
    Ok(())
}

fn check_len(len: usize, expected: u64, element: &'static str) -> Result<()> {
    if len as u64 != expected {
        return Err(Error::InvalidArgument {
            element,
            reason: "list length does not match its count element",
        });
    }
    Ok(())
}

fn read_floats(r: &mut BitReader<'_>, n: u64, element: &'static str) -> Result<Vec<f32>> {
    r.ensure_fits(u128::from(n), 32, element)?;
    (0..n).map(|_| r.flt32(element)).collect()
}

/// A 2-D float array as the reference stores it: rows padded with zeros to a common width of
/// at least 1.
fn padded_f32_rows<'e, I: Iterator<Item = &'e [f32]> + Clone>(rows: I, min_width: usize) -> Value {
    let width = rows
        .clone()
        .map(<[f32]>::len)
        .max()
        .unwrap_or(0)
        .max(min_width)
        .max(1);
    Value::Array(
        rows.map(|row| {
            Value::Array(
                (0..width)
                    .map(|j| f32_value(row.get(j).copied().unwrap_or(0.0)))
                    .collect(),
            )
        })
        .collect(),
    )
}

fn padded_u64_rows(rows: &[Vec<u64>], min_width: usize) -> Value {
    let width = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(min_width)
        .max(1);
    Value::Array(
        rows.iter()
            .map(|row| {
                Value::Array(
                    (0..width)
                        .map(|j| Value::from(row.get(j).copied().unwrap_or(0)))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn floats<'e, T: 'e>(entries: &'e [T], f: impl Fn(&T) -> f32) -> Value {
    Value::Array(entries.iter().map(|e| f32_value(f(e))).collect())
}

fn ints<'e, T: 'e>(entries: &'e [T], f: impl Fn(&T) -> u64) -> Value {
    u64_values(entries.iter().map(f))
}

/// One threshold of a sparsification performance map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpmEntry {
    /// `sparsification_threshold[i]` flt(32).
    pub sparsification_threshold: f32,
    /// `non_zero_ratio[i]` flt(32).
    pub non_zero_ratio: f32,
    /// `spm_nn_accuracy[i]` flt(32).
    pub spm_nn_accuracy: f32,
    /// `spm_count_classes[i]` u(8) = `spm_nn_class_accuracy.len()`.
    pub spm_count_classes: u8,
    /// `spm_class_bitmask[i]` ue(7).
    pub spm_class_bitmask: u64,
    /// `spm_nn_class_accuracy[i][j]` flt(32).
    pub spm_nn_class_accuracy: Vec<f32>,
}

// sparsification_performance_map( ) {
//   spm_count_thresholds                               u(8)
//   for( i = 0; i < spm_count_thresholds − 1; i++ ) {  (reference loop bound)
//     sparsification_threshold[ i ]                    flt(32)
//     non_zero_ratio[ i ]                              flt(32)
//     spm_nn_accuracy[ i ]                             flt(32)
//     spm_count_classes[ i ]                           u(8)
//     spm_class_bitmask[ i ]                           ue(7)
//     for( j = 0; j < spm_count_classes[ i ]; j++ )
//       spm_nn_class_accuracy[ i ][ j ]                flt(32)
//   }
// }
/// `sparsification_performance_map()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparsificationPerformanceMap {
    /// `spm_count_thresholds` u(8) = `entries.len() + 1`.
    pub spm_count_thresholds: u8,
    /// The `spm_count_thresholds − 1` entries.
    pub entries: Vec<SpmEntry>,
}

impl SparsificationPerformanceMap {
    /// Reads the map.
    pub fn read(r: &mut BitReader<'_>) -> Result<Self> {
        let spm_count_thresholds = read_count(r, "spm_count_thresholds")?;
        let mut entries = Vec::with_capacity(usize::from(spm_count_thresholds) - 1);
        for _ in 1..spm_count_thresholds {
            let sparsification_threshold = r.flt32("sparsification_threshold")?;
            let non_zero_ratio = r.flt32("non_zero_ratio")?;
            let spm_nn_accuracy = r.flt32("spm_nn_accuracy")?;
            let spm_count_classes = r.u8_bits(8, "spm_count_classes")?;
            let spm_class_bitmask = r.ue(7, "spm_class_bitmask")?;
            let spm_nn_class_accuracy =
                read_floats(r, u64::from(spm_count_classes), "spm_nn_class_accuracy")?;
            entries.push(SpmEntry {
                sparsification_threshold,
                non_zero_ratio,
                spm_nn_accuracy,
                spm_count_classes,
                spm_class_bitmask,
                spm_nn_class_accuracy,
            });
        }
        Ok(Self {
            spm_count_thresholds,
            entries,
        })
    }

    /// Writes the map.
    pub fn write(&self, w: &mut BitWriter) -> Result<()> {
        check_count(
            self.spm_count_thresholds,
            self.entries.len(),
            "spm_count_thresholds",
        )?;
        for e in &self.entries {
            check_len(
                e.spm_nn_class_accuracy.len(),
                u64::from(e.spm_count_classes),
                "spm_nn_class_accuracy",
            )?;
        }
        w.write_u(8, u64::from(self.spm_count_thresholds));
        for e in &self.entries {
            w.write_flt32(e.sparsification_threshold);
            w.write_flt32(e.non_zero_ratio);
            w.write_flt32(e.spm_nn_accuracy);
            w.write_u(8, u64::from(e.spm_count_classes));
            w.write_ue(7, e.spm_class_bitmask);
            for &a in &e.spm_nn_class_accuracy {
                w.write_flt32(a);
            }
        }
        Ok(())
    }

    pub(crate) fn append_json(&self, m: &mut Map<String, Value>) {
        let e = &self.entries;
        m.insert(
            "spm_count_thresholds".into(),
            self.spm_count_thresholds.into(),
        );
        m.insert(
            "sparsification_threshold".into(),
            floats(e, |x| x.sparsification_threshold),
        );
        m.insert("non_zero_ratio".into(), floats(e, |x| x.non_zero_ratio));
        m.insert("spm_nn_accuracy".into(), floats(e, |x| x.spm_nn_accuracy));
        m.insert(
            "spm_count_classes".into(),
            ints(e, |x| u64::from(x.spm_count_classes)),
        );
        m.insert("spm_class_bitmask".into(), ints(e, |x| x.spm_class_bitmask));
        m.insert(
            "spm_nn_class_accuracy".into(),
            padded_f32_rows(e.iter().map(|x| x.spm_nn_class_accuracy.as_slice()), 1),
        );
    }
}

/// One pruning ratio of a pruning performance map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PpmEntry {
    /// `pruning_ratio[i]` flt(32).
    pub pruning_ratio: f32,
    /// `ppm_nn_accuracy[i]` flt(32).
    pub ppm_nn_accuracy: f32,
    /// `ppm_count_classes[i]` u(8) = `ppm_nn_class_accuracy.len()`.
    pub ppm_count_classes: u8,
    /// `ppm_class_bitmask[i]` ue(7).
    pub ppm_class_bitmask: u64,
    /// `ppm_nn_class_accuracy[i][j]` flt(32).
    pub ppm_nn_class_accuracy: Vec<f32>,
}

// pruning_performance_map( ) {
//   ppm_count_pruning_ratios                           u(8)
//   for( i = 0; i < ppm_count_pruning_ratios − 1; i++ ) {   (reference loop bound)
//     pruning_ratio[ i ]                               flt(32)
//     ppm_nn_accuracy[ i ]                             flt(32)
//     ppm_count_classes[ i ]                           u(8)
//     ppm_class_bitmask[ i ]                           ue(7)
//     for( j = 0; j < ppm_count_classes[ i ]; j++ )
//       ppm_nn_class_accuracy[ i ][ j ]                flt(32)
//   }
// }
/// `pruning_performance_map()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PruningPerformanceMap {
    /// `ppm_count_pruning_ratios` u(8) = `entries.len() + 1`.
    pub ppm_count_pruning_ratios: u8,
    /// The `ppm_count_pruning_ratios − 1` entries.
    pub entries: Vec<PpmEntry>,
}

impl PruningPerformanceMap {
    /// Reads the map.
    pub fn read(r: &mut BitReader<'_>) -> Result<Self> {
        let ppm_count_pruning_ratios = read_count(r, "ppm_count_pruning_ratios")?;
        let mut entries = Vec::with_capacity(usize::from(ppm_count_pruning_ratios) - 1);
        for _ in 1..ppm_count_pruning_ratios {
            let pruning_ratio = r.flt32("pruning_ratio")?;
            let ppm_nn_accuracy = r.flt32("ppm_nn_accuracy")?;
            let ppm_count_classes = r.u8_bits(8, "ppm_count_classes")?;
            let ppm_class_bitmask = r.ue(7, "ppm_class_bitmask")?;
            let ppm_nn_class_accuracy =
                read_floats(r, u64::from(ppm_count_classes), "ppm_nn_class_accuracy")?;
            entries.push(PpmEntry {
                pruning_ratio,
                ppm_nn_accuracy,
                ppm_count_classes,
                ppm_class_bitmask,
                ppm_nn_class_accuracy,
            });
        }
        Ok(Self {
            ppm_count_pruning_ratios,
            entries,
        })
    }

    /// Writes the map.
    pub fn write(&self, w: &mut BitWriter) -> Result<()> {
        check_count(
            self.ppm_count_pruning_ratios,
            self.entries.len(),
            "ppm_count_pruning_ratios",
        )?;
        for e in &self.entries {
            check_len(
                e.ppm_nn_class_accuracy.len(),
                u64::from(e.ppm_count_classes),
                "ppm_nn_class_accuracy",
            )?;
        }
        w.write_u(8, u64::from(self.ppm_count_pruning_ratios));
        for e in &self.entries {
            w.write_flt32(e.pruning_ratio);
            w.write_flt32(e.ppm_nn_accuracy);
            w.write_u(8, u64::from(e.ppm_count_classes));
            w.write_ue(7, e.ppm_class_bitmask);
            for &a in &e.ppm_nn_class_accuracy {
                w.write_flt32(a);
            }
        }
        Ok(())
    }

    pub(crate) fn append_json(&self, m: &mut Map<String, Value>) {
        let e = &self.entries;
        m.insert(
            "ppm_count_pruning_ratios".into(),
            self.ppm_count_pruning_ratios.into(),
        );
        m.insert("pruning_ratio".into(), floats(e, |x| x.pruning_ratio));
        m.insert("ppm_nn_accuracy".into(), floats(e, |x| x.ppm_nn_accuracy));
        m.insert(
            "ppm_count_classes".into(),
            ints(e, |x| u64::from(x.ppm_count_classes)),
        );
        m.insert("ppm_class_bitmask".into(), ints(e, |x| x.ppm_class_bitmask));
        m.insert(
            "ppm_nn_class_accuracy".into(),
            padded_f32_rows(e.iter().map(|x| x.ppm_nn_class_accuracy.as_slice()), 1),
        );
    }
}

/// One threshold of a unification performance map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpmEntry {
    /// `count_reshaped_tensor_dimension[i]` ue(1).
    pub count_reshaped_tensor_dimension: u64,
    /// `reshaped_tensor_dimensions[i][j]` ue(7), `count_reshaped_tensor_dimension − 1` of them
    /// (none for a count of 0).
    pub reshaped_tensor_dimensions: Vec<u64>,
    /// `count_super_block_dimension[i]` u(8).
    pub count_super_block_dimension: u8,
    /// `super_block_dimensions[i][j]` u(8), `count_super_block_dimension − 1` of them.
    pub super_block_dimensions: Vec<u8>,
    /// `count_block_dimension[i]` u(8).
    pub count_block_dimension: u8,
    /// `block_dimensions[i][j]` u(8), `count_block_dimension − 1` of them.
    pub block_dimensions: Vec<u8>,
    /// `unification_threshold[i]` flt(32).
    pub unification_threshold: f32,
    /// `upm_nn_accuracy[i]` flt(32).
    pub upm_nn_accuracy: f32,
    /// `upm_count_classes[i]` u(8).
    pub upm_count_classes: u8,
    /// `upm_class_bitmask[i]` ue(7); reference quirk: also the number of class accuracies.
    pub upm_class_bitmask: u64,
    /// `upm_nn_class_accuracy[i][j]` flt(32), `upm_class_bitmask` of them.
    pub upm_nn_class_accuracy: Vec<f32>,
}

// unification_performance_map( ) {
//   upm_count_thresholds                               u(8)
//   for( i = 0; i < upm_count_thresholds − 1; i++ ) {  (reference loop bound)
//     count_reshaped_tensor_dimension[ i ]             ue(1)
//     for( j = 0; j < count_reshaped_tensor_dimension[ i ] − 1; j++ )
//       reshaped_tensor_dimensions[ i ][ j ]           ue(7)
//     byte_alignment( )                                (reference)
//     count_super_block_dimension[ i ]                 u(8)
//     for( j = 0; j < count_super_block_dimension[ i ] − 1; j++ )
//       super_block_dimensions[ i ][ j ]               u(8)
//     count_block_dimension[ i ]                       u(8)
//     for( j = 0; j < count_block_dimension[ i ] − 1; j++ )
//       block_dimensions[ i ][ j ]                     u(8)
//     unification_threshold[ i ]                       flt(32)
//     upm_nn_accuracy[ i ]                             flt(32)
//     upm_count_classes[ i ]                           u(8)
//     upm_class_bitmask[ i ]                           ue(7)
//     for( j = 0; j < upm_class_bitmask[ i ]; j++ )    (reference: bitmask, not count)
//       upm_nn_class_accuracy[ i ][ j ]                flt(32)
//   }
// }
/// `unification_performance_map()`.
///
/// Reference quirk: a `byte_alignment()` follows the reshaped dimensions, and the number of
/// class accuracies is `upm_class_bitmask`, not `upm_count_classes`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnificationPerformanceMap {
    /// `upm_count_thresholds` u(8) = `entries.len() + 1`.
    pub upm_count_thresholds: u8,
    /// The `upm_count_thresholds − 1` entries.
    pub entries: Vec<UpmEntry>,
}

impl UnificationPerformanceMap {
    /// Reads the map.
    pub fn read(r: &mut BitReader<'_>) -> Result<Self> {
        let upm_count_thresholds = read_count(r, "upm_count_thresholds")?;
        let mut entries = Vec::with_capacity(usize::from(upm_count_thresholds) - 1);
        for _ in 1..upm_count_thresholds {
            let count_reshaped_tensor_dimension = r.ue(1, "count_reshaped_tensor_dimension")?;
            let n = count_reshaped_tensor_dimension.saturating_sub(1);
            r.ensure_fits(u128::from(n), 8, "count_reshaped_tensor_dimension")?;
            let reshaped_tensor_dimensions = (0..n)
                .map(|_| r.ue(7, "reshaped_tensor_dimensions"))
                .collect::<Result<Vec<_>>>()?;
            r.byte_alignment()?;
            let count_super_block_dimension = r.u8_bits(8, "count_super_block_dimension")?;
            let super_block_dimensions = (1..count_super_block_dimension)
                .map(|_| r.u8_bits(8, "super_block_dimensions"))
                .collect::<Result<Vec<_>>>()?;
            let count_block_dimension = r.u8_bits(8, "count_block_dimension")?;
            let block_dimensions = (1..count_block_dimension)
                .map(|_| r.u8_bits(8, "block_dimensions"))
                .collect::<Result<Vec<_>>>()?;
            let unification_threshold = r.flt32("unification_threshold")?;
            let upm_nn_accuracy = r.flt32("upm_nn_accuracy")?;
            let upm_count_classes = r.u8_bits(8, "upm_count_classes")?;
            let upm_class_bitmask = r.ue(7, "upm_class_bitmask")?;
            let upm_nn_class_accuracy = read_floats(r, upm_class_bitmask, "upm_nn_class_accuracy")?;
            entries.push(UpmEntry {
                count_reshaped_tensor_dimension,
                reshaped_tensor_dimensions,
                count_super_block_dimension,
                super_block_dimensions,
                count_block_dimension,
                block_dimensions,
                unification_threshold,
                upm_nn_accuracy,
                upm_count_classes,
                upm_class_bitmask,
                upm_nn_class_accuracy,
            });
        }
        Ok(Self {
            upm_count_thresholds,
            entries,
        })
    }

    /// Writes the map.
    pub fn write(&self, w: &mut BitWriter) -> Result<()> {
        check_count(
            self.upm_count_thresholds,
            self.entries.len(),
            "upm_count_thresholds",
        )?;
        for e in &self.entries {
            check_len(
                e.reshaped_tensor_dimensions.len(),
                e.count_reshaped_tensor_dimension.saturating_sub(1),
                "reshaped_tensor_dimensions",
            )?;
            check_len(
                e.super_block_dimensions.len(),
                u64::from(e.count_super_block_dimension.saturating_sub(1)),
                "super_block_dimensions",
            )?;
            check_len(
                e.block_dimensions.len(),
                u64::from(e.count_block_dimension.saturating_sub(1)),
                "block_dimensions",
            )?;
            check_len(
                e.upm_nn_class_accuracy.len(),
                e.upm_class_bitmask,
                "upm_nn_class_accuracy",
            )?;
        }
        w.write_u(8, u64::from(self.upm_count_thresholds));
        for e in &self.entries {
            w.write_ue(1, e.count_reshaped_tensor_dimension);
            for &d in &e.reshaped_tensor_dimensions {
                w.write_ue(7, d);
            }
            w.byte_alignment();
            w.write_u(8, u64::from(e.count_super_block_dimension));
            for &d in &e.super_block_dimensions {
                w.write_u(8, u64::from(d));
            }
            w.write_u(8, u64::from(e.count_block_dimension));
            for &d in &e.block_dimensions {
                w.write_u(8, u64::from(d));
            }
            w.write_flt32(e.unification_threshold);
            w.write_flt32(e.upm_nn_accuracy);
            w.write_u(8, u64::from(e.upm_count_classes));
            w.write_ue(7, e.upm_class_bitmask);
            for &a in &e.upm_nn_class_accuracy {
                w.write_flt32(a);
            }
        }
        Ok(())
    }

    pub(crate) fn append_json(&self, m: &mut Map<String, Value>) {
        let e = &self.entries;
        let max_of = |f: &dyn Fn(&UpmEntry) -> u64| e.iter().map(f).max().unwrap_or(0) as usize;
        m.insert(
            "upm_count_thresholds".into(),
            self.upm_count_thresholds.into(),
        );
        m.insert(
            "count_reshaped_tensor_dimension".into(),
            ints(e, |x| x.count_reshaped_tensor_dimension),
        );
        let rows: Vec<Vec<u64>> = e
            .iter()
            .map(|x| x.reshaped_tensor_dimensions.clone())
            .collect();
        m.insert(
            "reshaped_tensor_dimensions".into(),
            padded_u64_rows(&rows, max_of(&|x| x.count_reshaped_tensor_dimension)),
        );
        m.insert(
            "count_super_block_dimension".into(),
            ints(e, |x| u64::from(x.count_super_block_dimension)),
        );
        let rows: Vec<Vec<u64>> = e
            .iter()
            .map(|x| {
                x.super_block_dimensions
                    .iter()
                    .map(|&d| u64::from(d))
                    .collect()
            })
            .collect();
        m.insert(
            "super_block_dimensions".into(),
            padded_u64_rows(&rows, max_of(&|x| u64::from(x.count_super_block_dimension))),
        );
        m.insert(
            "count_block_dimension".into(),
            ints(e, |x| u64::from(x.count_block_dimension)),
        );
        let rows: Vec<Vec<u64>> = e
            .iter()
            .map(|x| x.block_dimensions.iter().map(|&d| u64::from(d)).collect())
            .collect();
        m.insert(
            "block_dimensions".into(),
            padded_u64_rows(&rows, max_of(&|x| u64::from(x.count_block_dimension))),
        );
        m.insert(
            "unification_threshold".into(),
            floats(e, |x| x.unification_threshold),
        );
        m.insert("upm_nn_accuracy".into(), floats(e, |x| x.upm_nn_accuracy));
        m.insert(
            "upm_count_classes".into(),
            ints(e, |x| u64::from(x.upm_count_classes)),
        );
        m.insert("upm_class_bitmask".into(), ints(e, |x| x.upm_class_bitmask));
        m.insert(
            "upm_nn_class_accuracy".into(),
            padded_f32_rows(
                e.iter().map(|x| x.upm_nn_class_accuracy.as_slice()),
                max_of(&|x| u64::from(x.upm_count_classes)),
            ),
        );
    }
}

/// One threshold of a decomposition performance map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DpmEntry {
    /// `mse_threshold[i]` flt(32).
    pub mse_threshold: f32,
    /// `dpm_nn_accuracy[i]` flt(32).
    pub dpm_nn_accuracy: f32,
    /// `nn_reduction_ratio[i]` flt(32).
    pub nn_reduction_ratio: f32,
    /// `dpm_count_classes[i]` u(16) = `dpm_nn_class_accuracy.len()`.
    pub dpm_count_classes: u16,
    /// `dpm_nn_class_accuracy[i][j]` flt(32).
    pub dpm_nn_class_accuracy: Vec<f32>,
}

// decomposition_performance_map( ) {
//   dpm_count_thresholds                               u(8)
//   for( i = 0; i < dpm_count_thresholds − 1; i++ ) {  (reference loop bound)
//     mse_threshold[ i ]                               flt(32)
//     dpm_nn_accuracy[ i ]                             flt(32)
//     nn_reduction_ratio[ i ]                          flt(32)
//     dpm_count_classes[ i ]                           u(16)
//     for( j = 0; j < dpm_count_classes[ i ]; j++ )
//       dpm_nn_class_accuracy[ i ][ j ]                flt(32)
//   }
// }
/// `decomposition_performance_map()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecompositionPerformanceMap {
    /// `dpm_count_thresholds` u(8) = `entries.len() + 1`.
    pub dpm_count_thresholds: u8,
    /// The `dpm_count_thresholds − 1` entries.
    pub entries: Vec<DpmEntry>,
}

impl DecompositionPerformanceMap {
    /// Reads the map.
    pub fn read(r: &mut BitReader<'_>) -> Result<Self> {
        let dpm_count_thresholds = read_count(r, "dpm_count_thresholds")?;
        let mut entries = Vec::with_capacity(usize::from(dpm_count_thresholds) - 1);
        for _ in 1..dpm_count_thresholds {
            let mse_threshold = r.flt32("mse_threshold")?;
            let dpm_nn_accuracy = r.flt32("dpm_nn_accuracy")?;
            let nn_reduction_ratio = r.flt32("nn_reduction_ratio")?;
            let dpm_count_classes = r.u(16, "dpm_count_classes")? as u16;
            let dpm_nn_class_accuracy =
                read_floats(r, u64::from(dpm_count_classes), "dpm_nn_class_accuracy")?;
            entries.push(DpmEntry {
                mse_threshold,
                dpm_nn_accuracy,
                nn_reduction_ratio,
                dpm_count_classes,
                dpm_nn_class_accuracy,
            });
        }
        Ok(Self {
            dpm_count_thresholds,
            entries,
        })
    }

    /// Writes the map.
    pub fn write(&self, w: &mut BitWriter) -> Result<()> {
        check_count(
            self.dpm_count_thresholds,
            self.entries.len(),
            "dpm_count_thresholds",
        )?;
        for e in &self.entries {
            check_len(
                e.dpm_nn_class_accuracy.len(),
                u64::from(e.dpm_count_classes),
                "dpm_nn_class_accuracy",
            )?;
        }
        w.write_u(8, u64::from(self.dpm_count_thresholds));
        for e in &self.entries {
            w.write_flt32(e.mse_threshold);
            w.write_flt32(e.dpm_nn_accuracy);
            w.write_flt32(e.nn_reduction_ratio);
            w.write_u(16, u64::from(e.dpm_count_classes));
            for &a in &e.dpm_nn_class_accuracy {
                w.write_flt32(a);
            }
        }
        Ok(())
    }

    pub(crate) fn append_json(&self, m: &mut Map<String, Value>) {
        let e = &self.entries;
        m.insert(
            "dpm_count_thresholds".into(),
            self.dpm_count_thresholds.into(),
        );
        m.insert("mse_threshold".into(), floats(e, |x| x.mse_threshold));
        m.insert("dpm_nn_accuracy".into(), floats(e, |x| x.dpm_nn_accuracy));
        m.insert(
            "nn_reduction_ratio".into(),
            floats(e, |x| x.nn_reduction_ratio),
        );
        m.insert(
            "dpm_count_classes".into(),
            ints(e, |x| u64::from(x.dpm_count_classes)),
        );
        m.insert(
            "dpm_nn_class_accuracy".into(),
            padded_f32_rows(e.iter().map(|x| x.dpm_nn_class_accuracy.as_slice()), 1),
        );
    }
}
