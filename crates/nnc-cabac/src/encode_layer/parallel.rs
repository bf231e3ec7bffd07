//! The real pass of a block-scanned tensor on several threads.
//!
//! Every block row starts from the same state: contexts at their init sets, the neighbour at
//! zero, the range at 256. Only the DQ state and the encoder's `low` run on from the row before.
//! The DQ state follows from the levels alone, so a scan gives it at every block row. And `low`
//! only accumulates: a group of block rows coded by an encoder of its own, from `low = 0`, adds
//! its codeword to the stream at the bit offset where the group starts (see
//! [`crate::stream_bits`]). So groups of block rows are coded side by side, then their
//! codewords are added into the tensor's encoder, whose state becomes exactly the one a serial
//! pass leaves: the same bytes for any number of threads.

use std::ops::Range;

use rayon::prelude::*;

use super::LevelPass;
use crate::binarization::Neighbourhood;
use crate::context::ContextModel;
use crate::dq;
use crate::encoder::ArithEncoder;
use crate::entry_point::{EntryMarks, RestartMark};
use crate::stream_bits::StreamBits;
use crate::Error;

/// Below this many positions a tensor is coded on one thread.
const MIN_POSITIONS: usize = if cfg!(test) { 64 } else { 1 << 17 };

/// Groups per thread, so that uneven block rows still keep every thread busy.
const GROUPS_PER_THREAD: usize = 4;

/// Whether the tensor's block rows are worth coding on several threads.
pub(super) fn worthwhile(p: &crate::layer::Prepared<'_>) -> bool {
    p.geo.has_block_row_restarts()
        && p.geo.n >= MIN_POSITIONS
        && crate::threads::worker_threads() > 1
}

/// One group's codeword, coded from `low = 0` at range 256.
struct GroupCode {
    bits: StreamBits,
    shifts: u64,
    range: u32,
    /// Restarts inside the group and at its end (when another block row follows), with bit
    /// offsets and `low` of the group's own encoder.
    marks: Vec<RestartMark>,
}

/// Codes every block row of the tensor, in groups on the thread pool, into `e`, which has just
/// been reset for block row 0; adds the restarts to `marks`.
pub(super) fn code_block_rows(
    e: &mut ArithEncoder,
    models: &[ContextModel],
    pass: &LevelPass<'_>,
    marks: &mut EntryMarks,
) -> Result<(), Error> {
    let rows = pass.p.geo.num_block_rows;
    let starts = dq_states_at_block_rows(pass);
    let count = (crate::threads::worker_threads() * GROUPS_PER_THREAD).clamp(1, rows);
    let groups: Vec<Range<usize>> = (0..count)
        .map(|g| rows * g / count..rows * (g + 1) / count)
        .collect();
    let codes = groups
        .into_par_iter()
        .with_max_len(1)
        .map(|group| {
            let dq_state = starts[group.start];
            code_group(pass, models, group, dq_state)
        })
        .collect::<Vec<_>>()
        // The first error in scan order, as the serial pass reports it.
        .into_iter()
        .collect::<Result<Vec<_>, Error>>()?;

    let start = e.bit_offset();
    let end = start + codes.iter().map(|c| c.shifts).sum::<u64>();
    let mut stream = e.exact_bits();
    stream.extend_to(end + 9);
    let mut at = start;
    for code in &codes {
        for m in &code.marks {
            let bit_offset = at + m.bit_offset;
            // `low` of a serial encoder here also holds what came before the group (reaching at
            // most 8 bits into it): the bits of its window that are already in the stream.
            let before = stream.read(bit_offset + 1, 8) as u8;
            marks.marks.push(RestartMark {
                bit_offset,
                low8: m.low8.wrapping_add(before),
                dq_state: m.dq_state,
            });
        }
        stream.add_at(&code.bits, at);
        at += code.shifts;
    }
    let range = codes.last().map_or(e.range(), |c| c.range);
    e.load_exact_bits(&stream, end, range);
    Ok(())
}

/// The DQ state where each block row starts (all 0 without DQ).
fn dq_states_at_block_rows(pass: &LevelPass<'_>) -> Vec<u8> {
    let p = pass.p;
    let mut starts = Vec::with_capacity(p.geo.num_block_rows);
    let mut state = 0u8;
    for br in 0..p.geo.num_block_rows {
        starts.push(state);
        if !p.dq {
            continue;
        }
        for seg in p.geo.block_row_segments(br) {
            if pass.skipped(&seg) {
                state = dq::advance_zeros(state, p.geo.w);
            } else if let Some(slice) = pass.levels.get(seg.start..seg.start + seg.len) {
                state = dq::advance_over(state, slice);
            }
        }
    }
    starts
}

/// Codes the block rows `rows` with an encoder and contexts of their own.
fn code_group(
    pass: &LevelPass<'_>,
    models: &[ContextModel],
    rows: Range<usize>,
    mut dq_state: u8,
) -> Result<GroupCode, Error> {
    let last_row = pass.p.geo.num_block_rows - 1;
    let mut e = ArithEncoder::new();
    e.reset_range();
    let mut models = models.to_vec();
    let mut marks = Vec::new();
    for br in rows {
        let mut nbh = Neighbourhood::default();
        for seg in pass.p.geo.block_row_segments(br) {
            pass.code_segment(&mut e, &mut models, &seg, &mut nbh, &mut dq_state)?;
        }
        if br < last_row {
            for m in &mut models {
                m.reset();
            }
            e.reset_range();
            marks.push(e.restart_mark(dq_state));
        }
    }
    Ok(GroupCode {
        bits: e.exact_bits(),
        shifts: e.bit_offset(),
        range: e.range(),
        marks,
    })
}

#[cfg(test)]
mod tests {
    use crate::{encode_layer_marking_entry_points, ArithEncoder, EncodeLayerOptions};
    use crate::{LayerConfig, LayerHistory};
    use proptest::prelude::*;

    /// Levels with zero runs, small values of both signs and now and then a large one.
    fn levels(n: usize, seed: u64) -> Vec<i32> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 16 {
                    0..=6 => 0,
                    7..=13 => ((x >> 8) % 4) as i32,
                    14 => -(((x >> 8) % 4) as i32),
                    _ => ((x >> 8) % 3001) as i32 - 1500,
                }
            })
            .collect()
    }

    /// `f` run on a pool of `threads` threads.
    fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    /// One NDU: a tensor before and after the block-scanned one, so the parallel tensor starts
    /// and ends inside a codeword. Returns the payload and the middle tensor's entry points.
    fn ndu(
        threads: usize,
        cfg: &LayerConfig,
        opts: &EncodeLayerOptions,
        lv: &[i32],
        base: Option<&[i32]>,
    ) -> (Vec<u8>, Vec<u64>) {
        on_threads(threads, || {
            let mut e = ArithEncoder::new();
            let small = LayerConfig::new(vec![3, 5]);
            let hist = LayerHistory::default();
            let edge = levels(15, 99);
            e.iae_v(8, -20);
            encode_layer_marking_entry_points(&mut e, &small, &hist, opts, &edge).unwrap();
            e.iae_v(8, -21);
            let hist = LayerHistory {
                base_levels: base,
                ..LayerHistory::default()
            };
            let marks = encode_layer_marking_entry_points(&mut e, cfg, &hist, opts, lv).unwrap();
            e.iae_v(8, -22);
            encode_layer_marking_entry_points(
                &mut e,
                &small,
                &LayerHistory::default(),
                opts,
                &edge,
            )
            .unwrap();
            let bytes = e.finish();
            let eps = marks.resolve(&bytes);
            (bytes, eps)
        })
    }

    /// A level the codebook cannot code fails the same way on any number of threads: the first
    /// one in scan order is named.
    #[test]
    fn the_first_uncodable_level_is_reported() {
        // The first error ends block row 0, the other starts the last block row: coded apart,
        // the later one is found first.
        let (h, w) = (64, 8192);
        let cfg = LayerConfig {
            scan_order: 1,
            general_profile_idc: 1,
            codebook_size: 9,
            codebook_zero_offset: 4,
            ..LayerConfig::new(vec![h, w])
        };
        let mut lv: Vec<i32> = (0..h * w).map(|i| (i % 9) as i32 - 4).collect();
        lv[56 * w] = 7;
        lv[7 * w + w - 1] = -6;
        let errors: Vec<_> = [1, 3]
            .into_iter()
            .map(|threads| {
                on_threads(threads, || {
                    let mut e = ArithEncoder::new();
                    let opts = EncodeLayerOptions::default();
                    encode_layer_marking_entry_points(
                        &mut e,
                        &cfg,
                        &LayerHistory::default(),
                        &opts,
                        &lv,
                    )
                    .unwrap_err()
                })
            })
            .collect();
        assert_eq!(
            errors[0],
            crate::Error::LevelNotCodable {
                pos: 8 * w - 1,
                level: -6
            }
        );
        assert_eq!(errors[1], errors[0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// The block rows coded in groups on three threads give the bytes and entry points of
        /// the serial pass, over scan orders, DQ, row skipping, param_opt, codebook bounds (the
        /// general level loop) and TCA bases.
        #[test]
        fn groups_on_threads_give_the_serial_bytes(
            h in 9usize..140,
            w in 1usize..40,
            scan_order in 1u8..=4,
            dq in any::<bool>(),
            row_skip in any::<bool>(),
            param_opt in any::<bool>(),
            codebook in any::<bool>(),
            tca in any::<bool>(),
            zero_rows in any::<u64>(),
            seed in any::<u64>(),
        ) {
            let w = w + 1;
            let mut lv = levels(h * w, seed);
            for r in 0..h {
                if (zero_rows >> (r % 64)) & 1 == 1 {
                    lv[r * w..(r + 1) * w].fill(0);
                }
            }
            let cfg = LayerConfig {
                dq_flag: dq && !codebook,
                scan_order,
                general_profile_idc: 1,
                parent_node_id_present_flag: true,
                codebook_size: if codebook { 3001 } else { 0 },
                codebook_zero_offset: if codebook { 1500 } else { 0 },
                cabac_unary_length: 11,
                ..LayerConfig::new(vec![h, w])
            };
            let opts = EncodeLayerOptions {
                param_opt,
                row_skip_enabled_flag: row_skip,
                ..EncodeLayerOptions::default()
            };
            let base = tca.then(|| levels(h * w, seed ^ 0x55));
            let serial = ndu(1, &cfg, &opts, &lv, base.as_deref());
            let parallel = ndu(3, &cfg, &opts, &lv, base.as_deref());
            prop_assert_eq!(&parallel.0, &serial.0);
            prop_assert_eq!(&parallel.1, &serial.1);
        }
    }
}
