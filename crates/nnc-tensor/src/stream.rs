//! Streaming decode: tensors handed out one by one, in output order, while only a bounded
//! window of NDUs is held in memory.
//!
//! A [`StreamDecoder`] first reads and checks every unit without entropy decoding (cheap: NDU
//! payloads are only sliced). That gives the [`StreamPlan`]: every output tensor's name, shape
//! and dtype in output order, which a file writer needs before the data (a safetensors header).
//! Then NDUs are entropy-decoded in parallel, in stream order within a bound on the elements out
//! at a time, and each finished tensor goes to the caller's callback (on the calling thread,
//! while the workers go on) and is dropped. When the incremental state is updated, NDUs are
//! decoded in windows of consecutive NDUs instead, and the state is updated between windows.
//!
//! What needs more than one NDU is held back only as long as needed: the low-rank factors G and
//! H until both are decoded (W = G·H takes G's place), tensors that the stream's metadata orders
//! after a tensor not yet decoded. The metadata (TPL unit) is read in the first pass, so casts
//! back to the original dtypes and shapes apply tensor by tensor. The incremental state is
//! updated in stream order between windows; NDUs read only their own tensors' entries, and the
//! `device_id` they check against is the one from before the bitstream, so the result equals
//! decoding everything against the state as it was before the bitstream.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::decode::{
    factors_missing, parse_stream, recompose_pair, recomposed_name, run_ndu, DecodeOptions,
    DecodedTensor, NduJob, NduOutput, ParsedStream, Recomposition,
};
use crate::error::{Error, Location, Result};
use crate::metadata::{unfold_into, StreamMetadata};
use crate::state::{DecoderState, StateChanges};
use crate::tensor::{DType, Tensor};
use crate::threads::{map_largest_first, Workers};

mod summary;
pub use summary::{summarise_stream, TensorSummary};

/// What one output tensor will be: name, shape and element type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

impl From<&Tensor> for TensorSpec {
    /// The spec a tensor meets: its name, shape and element type.
    fn from(t: &Tensor) -> Self {
        TensorSpec {
            name: t.name.clone(),
            shape: t.shape.clone(),
            dtype: t.dtype(),
        }
    }
}

/// What a bitstream decodes to, known from its unit headers alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamPlan {
    /// The output tensors in output order (the order of [`crate::DecodedStream::tensors`]).
    /// A tensor whose recorded original integer type cannot hold its decoded values keeps the
    /// decoded type (int32) instead of the dtype given here; only corrupt or foreign metadata
    /// does that.
    pub tensors: Vec<TensorSpec>,
    /// `general_profile_idc` of the stream.
    pub general_profile_idc: u8,
    /// `topology_storage_format` of the TPL unit, if any.
    pub topology_storage_format: Option<u8>,
    /// The model's free-form string attributes carried in the stream's metadata
    /// ([`crate::EncodeInput::attributes`]); empty when none are carried.
    pub attributes: BTreeMap<String, String>,
    /// Files attached to the model ([`crate::EncodeInput::files`]), still packed; empty when
    /// none are carried.
    pub files: BTreeMap<String, crate::metadata::AttachedFile>,
}

/// Where an output tensor comes from.
enum Source {
    /// A decoded NDU member (or the tensor of a raw NDU).
    Member,
    /// The weight W of a low-rank pair.
    Recomposed,
    /// A tensor carried verbatim in the metadata.
    Verbatim(DecodedTensor),
    /// A constant the metadata implies (an unfolded batch norm's statistics), in float32 until
    /// the metadata's dtype is applied.
    Constant(DecodedTensor),
}

struct Slot {
    source: Source,
    spec: TensorSpec,
}

/// What to do with a decoded NDU member.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// It is output tensor `slot` (an index into the output order).
    Slot(usize),
    /// It is factor G (`true`) or H (`false`) of recomposition `index`.
    Factor(usize, bool),
    /// It is not output.
    Drop,
}

/// A bitstream read and checked, ready to be decoded tensor by tensor.
pub struct StreamDecoder<'a> {
    parsed: ParsedStream<'a>,
    opts: &'a DecodeOptions,
    outputs: OutputPlan,
}

impl<'a> StreamDecoder<'a> {
    /// Reads and checks every unit of `bytes` (no entropy decoding) and works out the output.
    /// Fails with the errors [`crate::decode_stream`] gives before decoding any payload.
    pub fn new(bytes: &'a [u8], opts: &'a DecodeOptions) -> Result<Self> {
        let parsed = parse_stream(bytes, opts)?;
        let mut factor_of: HashMap<&str, (usize, bool)> = HashMap::new();
        for (i, r) in parsed.recompositions.iter().enumerate() {
            factor_of.insert(r.g.as_str(), (i, true));
            factor_of.insert(r.h.as_str(), (i, false));
        }
        // Which factors are decoded at all (a raw NDU decodes only its first member).
        let mut decoded_factor = vec![(false, false); parsed.recompositions.len()];
        let mut factor_dtype = vec![(DType::F32, DType::F32); parsed.recompositions.len()];
        for job in &parsed.jobs {
            let produced = if job.is_raw() { 1 } else { job.members.len() };
            for m in &job.members[..produced.min(job.members.len())] {
                if let Some(&(r, is_g)) = factor_of.get(m.name.as_str()) {
                    let dtype = job.decoded_dtype(m);
                    if is_g {
                        decoded_factor[r].0 = true;
                        factor_dtype[r].0 = dtype;
                    } else {
                        decoded_factor[r].1 = true;
                        factor_dtype[r].1 = dtype;
                    }
                }
            }
        }
        let mut slots = Vec::new();
        let mut targets = Vec::with_capacity(parsed.jobs.len());
        let mut recomposed_slot = vec![None; parsed.recompositions.len()];
        let scalings: Vec<Option<LocalScaling>> = parsed
            .jobs
            .iter()
            .map(|job| {
                opts.apply_local_scaling
                    .then(|| local_scaling(job, parsed.metadata.as_ref()))
                    .flatten()
            })
            .collect();
        for (job, scaling) in parsed.jobs.iter().zip(&scalings) {
            let produced = if job.is_raw() { 1 } else { job.members.len() };
            let mut job_targets = Vec::with_capacity(job.members.len());
            for (k, m) in job.members.iter().enumerate() {
                // An applied scaling is not output.
                if k >= produced || scaling.is_some_and(|s| s.scaling == k) {
                    job_targets.push(Target::Drop);
                    continue;
                }
                if let Some(&(r, is_g)) = factor_of.get(m.name.as_str()) {
                    job_targets.push(Target::Factor(r, is_g));
                    if is_g && decoded_factor[r] == (true, true) {
                        let rec = &parsed.recompositions[r];
                        let (gd, hd) = factor_dtype[r];
                        let dtype = if (gd, hd) == (DType::F32, DType::F32) {
                            DType::F32
                        } else {
                            DType::F64
                        };
                        recomposed_slot[r] = Some(slots.len());
                        slots.push(Slot {
                            source: Source::Recomposed,
                            spec: TensorSpec {
                                name: recomposed_name(&rec.g),
                                shape: rec.dims.iter().map(|&d| d as usize).collect(),
                                dtype,
                            },
                        });
                    }
                    continue;
                }
                job_targets.push(Target::Slot(slots.len()));
                slots.push(Slot {
                    source: Source::Member,
                    spec: TensorSpec {
                        name: m.name.clone(),
                        shape: m.dims.iter().map(|&d| d as usize).collect(),
                        dtype: job.decoded_dtype(m),
                    },
                });
            }
            targets.push(job_targets);
        }
        if let Some(meta) = &parsed.metadata {
            unfold_slots(&meta.folded, &mut slots);
            for slot in &mut slots {
                let spec = &mut slot.spec;
                if let Some((shape, dtype)) = original(meta, &spec.name, element_count(&spec.shape))
                {
                    spec.dtype = cast_dtype(spec.dtype, dtype);
                    spec.shape = shape;
                }
            }
            for e in &meta.extra {
                if slots.iter().any(|s| s.spec.name == e.name) {
                    continue;
                }
                if let Some(tensor) = crate::metadata::extra_tensor(e) {
                    slots.push(Slot {
                        spec: TensorSpec {
                            name: tensor.name.clone(),
                            shape: tensor.shape.clone(),
                            dtype: tensor.dtype(),
                        },
                        source: Source::Verbatim(DecodedTensor {
                            tensor,
                            levels: None,
                            approximation: crate::decode::Approximation::Verbatim,
                        }),
                    });
                }
            }
            if !meta.order.is_empty() {
                let rank: HashMap<&str, usize> = meta
                    .order
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, n)| (n.as_str(), i))
                    .collect();
                let mut order: Vec<usize> = (0..slots.len()).collect();
                order.sort_by_key(|&i| {
                    rank.get(slots[i].spec.name.as_str())
                        .copied()
                        .unwrap_or(usize::MAX)
                });
                let mut new_index = vec![0; slots.len()];
                for (new, &old) in order.iter().enumerate() {
                    new_index[old] = new;
                }
                for t in targets.iter_mut().flatten() {
                    if let Target::Slot(i) = t {
                        *i = new_index[*i];
                    }
                }
                for s in recomposed_slot.iter_mut().flatten() {
                    *s = new_index[*s];
                }
                let mut taken: Vec<Option<Slot>> = slots.into_iter().map(Some).collect();
                slots = order.iter().filter_map(|&i| taken[i].take()).collect();
            }
        }
        let plan = StreamPlan {
            tensors: slots.iter().map(|s| s.spec.clone()).collect(),
            general_profile_idc: parsed.general_profile_idc,
            topology_storage_format: parsed.topology_storage_format,
            attributes: parsed
                .metadata
                .as_ref()
                .map(|m| m.attributes.clone())
                .unwrap_or_default(),
            files: parsed
                .metadata
                .as_ref()
                .map(|m| m.files.clone())
                .unwrap_or_default(),
        };
        Ok(StreamDecoder {
            parsed,
            opts,
            outputs: OutputPlan {
                targets,
                scalings,
                recomposed_slot,
                slots,
                plan,
            },
        })
    }

    /// The output tensors' names, shapes and dtypes, in output order.
    pub fn plan(&self) -> &StreamPlan {
        &self.outputs.plan
    }

    /// Decodes the NDUs and calls `emit` with each output tensor in output order, updating
    /// `state` unless [`DecodeOptions::update_state`] is off. Memory: besides what `emit` keeps,
    /// at most about a quarter of the stream's elements plus its largest NDU are held (on one
    /// thread, up to the largest NDU's elements; with a dominant NDU, its size per other thread
    /// besides it, at most the whole model), plus the tensor being handed to `emit`, and with
    /// [`DecodeOptions::keep_levels`] and [`DecodeOptions::update_state`] off a tensor needs no
    /// more memory than its values. With
    /// [`DecodeOptions::update_state`] the new levels are held until the end besides the state's
    /// old ones: the state changes only once every NDU is decoded and every tensor emitted, so
    /// on an error (the stream's or `emit`'s) it is left as it was, while the tensors already
    /// emitted stay emitted.
    ///
    /// On several threads the workers decode NDUs in stream order while the calling thread runs
    /// `emit`, so writing the output overlaps decoding (also on one worker).
    pub fn run<E, F>(self, state: &mut DecoderState, emit: F) -> std::result::Result<StreamPlan, E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        let (plan, changes) = self.run_deferred(state, emit)?;
        changes.commit(state);
        Ok(plan)
    }

    /// [`StreamDecoder::run`] leaving `state` alone: returns the changes the stream makes to it
    /// beside the plan, for the caller to [`StateChanges::apply`] once it accepts what was
    /// emitted (empty with [`DecodeOptions::update_state`] off).
    pub fn run_deferred<E, F>(
        self,
        state: &DecoderState,
        emit: F,
    ) -> std::result::Result<(StreamPlan, StateChanges), E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        let workers = self.workers()?;
        let largest = self
            .parsed
            .jobs
            .iter()
            .map(|j| j.elements)
            .max()
            .unwrap_or(0);
        let budget = window_budget(largest, self.parsed.total_elements, workers.count());
        // An inline call decodes on this thread alone: nothing to pipeline.
        if workers.is_inline() {
            self.run_windows(state, &workers, budget, emit)
        } else {
            let cap = budget.saturating_add(largest);
            self.run_pipelined(state, &workers, cap, emit)
        }
    }

    /// The workers of this stream's decode: its NDUs are the parts that can run in parallel.
    fn workers(&self) -> Result<Workers> {
        Workers::for_call(
            self.opts.threads,
            self.parsed.total_elements,
            self.parsed.jobs.len(),
        )
    }

    /// [`StreamDecoder::run_deferred`] with windows of NDUs holding up to `budget` elements
    /// besides their largest NDU (`u64::MAX`: everything at once).
    pub(crate) fn run_with_window<E, F>(
        self,
        state: &DecoderState,
        budget: u64,
        emit: F,
    ) -> std::result::Result<(StreamPlan, StateChanges), E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        let workers = self.workers()?;
        self.run_windows(state, &workers, budget, emit)
    }

    /// Decodes in windows of NDUs (see [`StreamDecoder::run_with_window`]); returns the plan
    /// and the changes to `state`, not yet applied.
    fn run_windows<E, F>(
        self,
        state: &DecoderState,
        workers: &Workers,
        budget: u64,
        mut emit: F,
    ) -> std::result::Result<(StreamPlan, StateChanges), E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        let device_before = state.device_id;
        let StreamDecoder {
            parsed,
            opts,
            outputs,
        } = self;
        let mut assembly = Assembly::new(outputs, &parsed, opts, state);
        let need_levels = levels_needed(opts);
        for window in windows(&parsed.jobs, budget) {
            let outputs: Vec<Result<NduOutput>> = {
                let jobs = &parsed.jobs[window.clone()];
                // Largest NDUs first, so that the window does not end with one thread still on
                // a large NDU it picked up last while the others wait at the barrier.
                workers.install(|| {
                    map_largest_first(
                        jobs.iter().collect(),
                        |job| job.elements,
                        |job| run_ndu(job, state, opts, device_before, need_levels),
                    )
                })
            };
            for (j, output) in window.zip(outputs) {
                assembly.accept(&parsed.jobs[j], j, output, state, &mut emit)?;
            }
        }
        assembly.finish(&mut emit)
    }

    /// [`StreamDecoder::run`] on several threads: NDUs are handed to the workers in stream order
    /// while this thread takes their results in the same order and emits the tensors, so writing
    /// overlaps decoding and no thread waits at a window's end. At most `cap` elements are out at
    /// a time (dispatched and not yet taken), except that the oldest NDU is always let through.
    /// Returns the plan and the changes to `state`, not yet applied.
    fn run_pipelined<E, F>(
        self,
        state: &DecoderState,
        workers: &Workers,
        cap: u64,
        mut emit: F,
    ) -> std::result::Result<(StreamPlan, StateChanges), E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        let device_before = state.device_id;
        let StreamDecoder {
            parsed,
            opts,
            outputs,
        } = self;
        let mut assembly = Assembly::new(outputs, &parsed, opts, state);
        let need_levels = levels_needed(opts);
        let jobs = &parsed.jobs;
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, thread::Result<Result<NduOutput>>)>();
        let outcome = workers.in_place_scope(|scope| {
            let mut results: Vec<Option<Result<NduOutput>>> = jobs.iter().map(|_| None).collect();
            let (mut dispatched, mut out) = (0, 0u64);
            // Starts the NDUs after the last one started while their elements fit in `cap`.
            let mut admit = |out: &mut u64| {
                while let Some(job) = jobs.get(dispatched) {
                    if *out > 0 && out.saturating_add(job.elements) > cap {
                        break;
                    }
                    *out = out.saturating_add(job.elements);
                    let (tx, stop, j) = (tx.clone(), &stop, dispatched);
                    scope.spawn(move |_| {
                        // After an error nothing more is decoded; the result is not awaited.
                        if !stop.load(Ordering::Relaxed) {
                            // A panic is passed on to this thread, which would otherwise wait
                            // for the result forever.
                            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                                run_ndu(job, state, opts, device_before, need_levels)
                            }));
                            let _ = tx.send((j, r));
                        }
                    });
                    dispatched += 1;
                }
            };
            admit(&mut out);
            for taken in 0..jobs.len() {
                let output = loop {
                    if let Some(r) = results[taken].take() {
                        break r;
                    }
                    match receive(&rx)? {
                        (j, Ok(r)) => results[j] = Some(r),
                        (_, Err(payload)) => {
                            stop.store(true, Ordering::Relaxed);
                            panic::resume_unwind(payload)
                        }
                    }
                };
                // The next NDUs start before this one is handed out, so that the callback
                // (writing a file) overlaps decoding even on one worker.
                out -= jobs[taken].elements;
                admit(&mut out);
                let accepted = assembly.accept(&jobs[taken], taken, output, state, &mut emit);
                if let Err(e) = accepted {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Stopped::Caller(e));
                }
            }
            Ok(())
        })?;
        match outcome {
            Ok(()) => assembly.finish(&mut emit),
            Err(Stopped::Caller(e)) => Err(e),
            Err(Stopped::Decoder(e)) => Err(e.into()),
        }
    }
}

/// Where decoded NDU members go, and the output tensors in output order.
struct OutputPlan {
    /// Per NDU, per member: where it goes.
    targets: Vec<Vec<Target>>,
    /// Per NDU: the local scaling to apply ([`DecodeOptions::apply_local_scaling`]).
    scalings: Vec<Option<LocalScaling>>,
    /// Per recomposition: the output slot of W (`None` when a factor is never decoded).
    recomposed_slot: Vec<Option<usize>>,
    /// Output tensors in output order.
    slots: Vec<Slot>,
    plan: StreamPlan,
}

/// Whether NDUs must return their levels: kept in the output, or recorded in the state.
fn levels_needed(opts: &DecodeOptions) -> bool {
    opts.keep_levels || opts.update_state
}

/// Why a pipelined decode stopped early.
enum Stopped<E> {
    /// An error from the caller's callback, or one found while assembling the output.
    Caller(E),
    /// The workers went away without a result.
    Decoder(Error),
}

/// The next NDU result. A thread of a rayon pool runs queued work while it waits, so a decode
/// called from inside a pool cannot starve the jobs it waits for.
fn receive<T, E>(rx: &mpsc::Receiver<T>) -> std::result::Result<T, Stopped<E>> {
    let gone = || {
        Stopped::Decoder(Error::Malformed {
            at: Location::default(),
            what: "a decoder worker ended without a result".into(),
        })
    };
    loop {
        match rx.try_recv() {
            Ok(r) => return Ok(r),
            Err(mpsc::TryRecvError::Disconnected) => return Err(gone()),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        match rayon::yield_now() {
            None => return rx.recv().map_err(|_| gone()),
            Some(rayon::Yield::Executed) => {}
            Some(rayon::Yield::Idle) => match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(r) => return Ok(r),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(gone()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            },
        }
    }
}

/// Decoded NDUs, taken in stream order, turned into output tensors handed out in output order.
struct Assembly<'p> {
    /// Per NDU, per member: where it goes.
    targets: Vec<Vec<Target>>,
    /// Per NDU: the local scaling to apply.
    scalings: Vec<Option<LocalScaling>>,
    recomposed_slot: Vec<Option<usize>>,
    /// Output tensors decoded but not yet emitted (verbatim ones from the start).
    ready: Vec<Option<DecodedTensor>>,
    apply_meta: Vec<bool>,
    /// Output slots that will never be filled (a failed recomposition).
    skipped: Vec<bool>,
    /// The next output slot to emit.
    next: usize,
    factors: Vec<(Option<Tensor>, Option<Tensor>)>,
    rec_errors: Vec<Option<Error>>,
    /// Each NDU's update of the state, checked against it; recorded only with
    /// [`DecodeOptions::update_state`].
    update: StateChanges,
    record: bool,
    record_hdsp: bool,
    keep_levels: bool,
    recompositions: &'p [Recomposition],
    metadata: Option<&'p StreamMetadata>,
    plan: StreamPlan,
}

impl<'p> Assembly<'p> {
    fn new(
        outputs: OutputPlan,
        parsed: &'p ParsedStream<'_>,
        opts: &DecodeOptions,
        state: &DecoderState,
    ) -> Self {
        let OutputPlan {
            targets,
            scalings,
            recomposed_slot,
            slots,
            plan,
        } = outputs;
        let n = slots.len();
        let mut ready = Vec::with_capacity(n);
        let mut apply_meta = Vec::with_capacity(n);
        for slot in slots {
            apply_meta.push(!matches!(slot.source, Source::Verbatim(_)));
            ready.push(match slot.source {
                Source::Verbatim(t) | Source::Constant(t) => Some(t),
                _ => None,
            });
        }
        let recs = &parsed.recompositions;
        // Recomposition errors are reported after every NDU decoded, lowest index first.
        let rec_errors = recomposed_slot
            .iter()
            .zip(recs)
            .map(|(slot, r)| slot.is_none().then(|| factors_missing(r)))
            .collect();
        Assembly {
            targets,
            scalings,
            recomposed_slot,
            ready,
            apply_meta,
            skipped: vec![false; n],
            next: 0,
            factors: (0..recs.len()).map(|_| (None, None)).collect(),
            rec_errors,
            update: StateChanges::new(state),
            record: opts.update_state,
            record_hdsp: opts.hdsp && parsed.parent_signalling && opts.update_state,
            keep_levels: opts.keep_levels,
            recompositions: recs,
            metadata: parsed.metadata.as_ref(),
            plan,
        }
    }

    /// Takes NDU `j`'s result (NDUs must come in stream order) and emits every output tensor
    /// that is now next in output order.
    fn accept<E, F>(
        &mut self,
        job: &NduJob<'_>,
        j: usize,
        output: Result<NduOutput>,
        state: &DecoderState,
        emit: &mut F,
    ) -> std::result::Result<(), E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        let mut decoded: Vec<(usize, DecodedTensor)> = match output? {
            NduOutput::Raw(t) => vec![(0, t)],
            NduOutput::Coded(members) => {
                let mut out = Vec::with_capacity(members.len());
                for (k, mut mo) in members.into_iter().enumerate() {
                    let name = &mo.member.name;
                    let at = Location {
                        tensor: Some(name.clone()),
                        ..job.here.clone()
                    };
                    let device_id = job.header.device_id.unwrap_or(0);
                    let parameter_id = job.header.parameter_id.unwrap_or(0);
                    let checked = if self.record {
                        // Levels that are not handed out move into the state.
                        let levels = if self.keep_levels {
                            mo.levels.clone()
                        } else {
                            mo.levels.take()
                        };
                        let (update, hdsp) = (&mut self.update, self.record_hdsp);
                        update.record(state, name, levels, device_id, parameter_id, hdsp)
                    } else {
                        self.update.check(state, name, device_id, parameter_id)
                    };
                    checked.map_err(|what| Error::StateMismatch {
                        at: at.clone(),
                        what,
                    })?;
                    let (data, approximation) =
                        mo.values.map_err(|source| Error::Quant { at, source })?;
                    out.push((
                        k,
                        DecodedTensor {
                            tensor: Tensor {
                                name: mo.member.name,
                                shape: mo.member.dims.iter().map(|&d| d as usize).collect(),
                                data,
                            },
                            levels: if self.keep_levels { mo.levels } else { None },
                            approximation,
                        },
                    ));
                }
                out
            }
        };
        if let Some(scaling) = self.scalings.get(j).copied().flatten() {
            scaling.apply(&mut decoded, &job.here)?;
        }
        for (k, t) in decoded {
            match self.targets[j].get(k).copied().unwrap_or(Target::Drop) {
                Target::Slot(i) => self.ready[i] = Some(t),
                Target::Drop => {}
                Target::Factor(r, is_g) => {
                    let pair = &mut self.factors[r];
                    if is_g {
                        pair.0 = Some(t.tensor);
                    } else {
                        pair.1 = Some(t.tensor);
                    }
                    if let (Some(g), Some(h), Some(slot)) =
                        (&pair.0, &pair.1, self.recomposed_slot[r])
                    {
                        match recompose_pair(g, h, &self.recompositions[r]) {
                            Ok(w) => self.ready[slot] = Some(w),
                            Err(e) => {
                                self.rec_errors[r] = Some(e);
                                self.skipped[slot] = true;
                            }
                        }
                        *pair = (None, None);
                    }
                }
            }
        }
        self.emit_ready(emit)
    }

    /// Emits every output tensor that is ready and next in output order.
    fn emit_ready<E, F>(&mut self, emit: &mut F) -> std::result::Result<(), E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        while self.next < self.ready.len() {
            if let Some(mut t) = self.ready[self.next].take() {
                // A member handed out under another name (an unfolded batch norm's).
                let name = &self.plan.tensors[self.next].name;
                if t.tensor.name != *name {
                    t.tensor.name.clone_from(name);
                }
                if self.apply_meta[self.next] {
                    apply_metadata(self.metadata, &mut t.tensor);
                }
                emit(t)?;
            } else if !self.skipped[self.next] {
                break;
            }
            self.next += 1;
        }
        Ok(())
    }

    /// After the last NDU: emits the verbatim tensors after it (all of them in a stream without
    /// NDUs, such as an update whose coded tensors were all zero), then reports the first
    /// recomposition error, or a slot never filled.
    /// Returns the plan and the NDUs' changes to the state.
    fn finish<E, F>(mut self, emit: &mut F) -> std::result::Result<(StreamPlan, StateChanges), E>
    where
        E: From<Error>,
        F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
    {
        if let Some(e) = std::mem::take(&mut self.rec_errors)
            .into_iter()
            .flatten()
            .next()
        {
            return Err(e.into());
        }
        self.emit_ready(emit)?;
        // Every slot is filled once all NDUs are decoded; a gap would be a planning bug.
        if self.next < self.ready.len() {
            return Err(Error::Malformed {
                at: Location::default(),
                what: format!(
                    "output tensor {:?} was never decoded",
                    self.plan.tensors[self.next].name
                ),
            }
            .into());
        }
        Ok((self.plan, self.update))
    }
}

/// Reads and checks a bitstream's units and returns what it decodes to, without decoding any
/// payload.
pub fn plan_stream(bytes: &[u8], opts: &DecodeOptions) -> Result<StreamPlan> {
    Ok(StreamDecoder::new(bytes, opts)?.outputs.plan)
}

/// Decodes a bitstream tensor by tensor: `emit` receives each output tensor in output order (the
/// order of [`crate::decode_stream`]'s result) as soon as it and every tensor before it are
/// decoded, and nothing is kept after it returns. See [`StreamDecoder::run`] for the memory
/// held; turn [`DecodeOptions::keep_levels`] (and for one-off decodes
/// [`DecodeOptions::update_state`]) off to hold values only.
///
/// ```
/// use nnc_tensor::{decode_stream_with, encode, DecodeOptions, DecoderState, EncodeInput,
///     EncodeOptions, Tensor, TensorData};
/// let w = Tensor::try_new("w", vec![4, 4], TensorData::F32((0..16).map(|i| i as f32 / 16.0).collect()))?;
/// let bytes = encode(&EncodeInput::from_tensors_owned(vec![w])?, &EncodeOptions::default())?.bytes;
/// let opts = DecodeOptions::new().with_keep_levels(false).with_update_state(false);
/// let mut names = Vec::new();
/// let plan = decode_stream_with(&bytes, &mut DecoderState::default(), &opts, |t| {
///     names.push(t.tensor.name);
///     Ok::<(), nnc_tensor::Error>(())
/// })?;
/// assert_eq!(names, ["w"]);
/// assert_eq!(plan.tensors[0].shape, [4, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_stream_with<E, F>(
    bytes: &[u8],
    state: &mut DecoderState,
    opts: &DecodeOptions,
    emit: F,
) -> std::result::Result<StreamPlan, E>
where
    E: From<Error>,
    F: FnMut(DecodedTensor) -> std::result::Result<(), E>,
{
    StreamDecoder::new(bytes, opts)?.run(state, emit)
}

/// Decodes a stand-alone bitstream (one that needs no earlier stream's state), handing each
/// output tensor to `convert` as soon as it is decoded and collecting what it returns, in output
/// order. Levels are not kept and no decoder state is recorded, whatever `opts` says, so besides
/// the results only the decoder's window is held: the path for converting a stream into another
/// library's tensors.
///
/// ```
/// use nnc_tensor::{decode_standalone_with, encode, DecodeOptions, EncodeInput, EncodeOptions,
///     Tensor, TensorData};
/// let w = Tensor::try_new("w", vec![2, 2], TensorData::F32(vec![0.0, 0.25, 0.5, 0.75]))?;
/// let bytes = encode(&EncodeInput::from_tensors_owned(vec![w])?, &EncodeOptions::default())?.bytes;
/// let shapes = decode_standalone_with(&bytes, &DecodeOptions::new(), |t| {
///     Ok::<_, nnc_tensor::Error>((t.name, t.shape))
/// })?;
/// assert_eq!(shapes, [("w".to_string(), vec![2, 2])]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_standalone_with<T, E, F>(
    bytes: &[u8],
    opts: &DecodeOptions,
    mut convert: F,
) -> std::result::Result<Vec<T>, E>
where
    E: From<Error>,
    F: FnMut(Tensor) -> std::result::Result<T, E>,
{
    let opts = opts
        .clone()
        .with_keep_levels(false)
        .with_update_state(false);
    let mut out = Vec::new();
    decode_stream_with(bytes, &mut DecoderState::default(), &opts, |d| {
        out.push(convert(d.tensor)?);
        Ok::<(), E>(())
    })?;
    Ok(out)
}

/// Elements a window may hold besides its largest NDU: none on one thread; otherwise a quarter
/// of the stream, or, when one NDU is larger than that, as much as the other threads need to
/// stay busy while it decodes (the largest NDU times the other threads), so that a dominant
/// tensor (MiniLM's word embeddings are half of its values) does not leave them idle at the
/// end of its window. Either way a window holds at most the whole model.
fn window_budget(largest: u64, total: u64, threads: usize) -> u64 {
    if threads <= 1 {
        return 0;
    }
    let others = u64::try_from(threads - 1).unwrap_or(u64::MAX);
    (total / 4).max(largest.saturating_mul(others)).max(1 << 20)
}

/// Consecutive NDUs decoded together: a window grows while its elements, not counting its
/// largest NDU, stay within `budget`.
fn windows(jobs: &[crate::decode::NduJob<'_>], budget: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < jobs.len() {
        let (mut sum, mut largest) = (jobs[start].elements, jobs[start].elements);
        let mut end = start + 1;
        while end < jobs.len() {
            let e = jobs[end].elements;
            let (s, l) = (sum.saturating_add(e), largest.max(e));
            if s - l > budget {
                break;
            }
            (sum, largest) = (s, l);
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// A block's local scaling to apply to its weight: members `scaling` and `weight` (the weight or
/// its low-rank factor G) of the NDU.
#[derive(Clone, Copy, Debug)]
struct LocalScaling {
    scaling: usize,
    weight: usize,
}

/// The local scaling of a block NDU that [`DecodeOptions::apply_local_scaling`] applies: one
/// with a scaling and a weight (or factor G) whose scaling does not carry a batch norm that
/// nnc's metadata unfolds.
fn local_scaling(job: &NduJob<'_>, metadata: Option<&StreamMetadata>) -> Option<LocalScaling> {
    use crate::members::MemberRole;
    if job.is_raw() {
        return None;
    }
    let roles = || job.members.iter().map(|m| m.role);
    let scaling = roles().position(|r| r == MemberRole::LocalScaling)?;
    let weight = roles().position(|r| matches!(r, MemberRole::Weight | MemberRole::FactorG))?;
    let name = &job.members[scaling].name;
    let folded = metadata.is_some_and(|m| m.folded.iter().any(|f| f.scaling == *name));
    (!folded).then_some(LocalScaling { scaling, weight })
}

impl LocalScaling {
    /// Multiplies row `i` of the weight by element `i` of the scaling (NNCodec's `apply_lsa`,
    /// numpy's `w *= ls.reshape(-1, 1, ...)`): in the weight's precision, the product of two
    /// float32 values rounded once.
    fn apply(self, decoded: &mut [(usize, DecodedTensor)], here: &Location) -> Result<()> {
        use crate::tensor::TensorData;
        let find = |k: usize| decoded.iter().position(|(i, _)| *i == k);
        let (Some(s), Some(w)) = (find(self.scaling), find(self.weight)) else {
            return Ok(());
        };
        let factors: Vec<f64> = match &decoded[s].1.tensor.data {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.clone(),
            _ => Vec::new(),
        };
        let weight = &mut decoded[w].1.tensor;
        let rows = weight.shape.first().copied().unwrap_or(0);
        let malformed = |what: String| Error::Malformed {
            at: Location {
                tensor: Some(weight.name.clone()),
                ..here.clone()
            },
            what,
        };
        if factors.len() != rows {
            return Err(malformed(format!(
                "a local scaling of {} values for a weight of {rows} rows",
                factors.len()
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        let row = weight.data.len() / rows;
        match &mut weight.data {
            TensorData::F32(v) => {
                for (chunk, &f) in v.chunks_mut(row.max(1)).zip(&factors) {
                    for x in chunk {
                        // Exact in f64 (24 + 24 bits), so one rounding, as float32's own product.
                        *x = (f64::from(*x) * f) as f32;
                    }
                }
            }
            TensorData::F64(v) => {
                for (chunk, &f) in v.chunks_mut(row.max(1)).zip(&factors) {
                    for x in chunk {
                        *x *= f;
                    }
                }
            }
            _ => return Err(malformed("a local scaling of a non-float weight".into())),
        }
        Ok(())
    }
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Hands out each folded batch norm's block scaling and bias under the batch norm's names and
/// adds its constants ([`crate::metadata::FoldedNorm`]), where both are decoded members that
/// can be unfolded.
fn unfold_slots(folded: &[crate::metadata::FoldedNorm], slots: &mut Vec<Slot>) {
    unfold_into(
        folded,
        slots,
        |s| {
            let n = element_count(&s.spec.shape).unwrap_or(usize::MAX);
            let decoded = matches!(s.source, Source::Member);
            (s.spec.name.as_str(), n, s.spec.dtype, decoded)
        },
        |s| &mut s.spec.name,
        |s| s.spec.shape.clone(),
        |tensor| Slot {
            spec: TensorSpec {
                name: tensor.name.clone(),
                shape: tensor.shape.clone(),
                dtype: tensor.dtype(),
            },
            source: Source::Constant(DecodedTensor {
                tensor,
                levels: None,
                approximation: crate::decode::Approximation::Verbatim,
            }),
        },
    );
}

/// The original shape and dtype the metadata records for `name`, when that shape holds `len`
/// elements.
fn original(meta: &StreamMetadata, name: &str, len: Option<usize>) -> Option<(Vec<usize>, DType)> {
    let m = meta.tensors.get(name)?;
    (len.is_some() && element_count(&m.shape) == len).then(|| (m.shape.clone(), m.dtype))
}

/// The dtype [`crate::metadata::cast`] gives data of type `from` cast to `to` (when the values
/// fit, for integers).
fn cast_dtype(from: DType, to: DType) -> DType {
    let castable = match from {
        _ if from == to => true,
        DType::F32 | DType::F64 => to.is_float(),
        DType::I32 => matches!(
            to,
            DType::I64
                | DType::I16
                | DType::I8
                | DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
                | DType::Bool
        ),
        _ => false,
    };
    if castable {
        to
    } else {
        from
    }
}

/// Gives a decoded tensor back its original dtype and shape (as `metadata::apply`, one tensor).
fn apply_metadata(meta: Option<&StreamMetadata>, t: &mut Tensor) {
    let Some(meta) = meta else { return };
    let Some((shape, dtype)) = original(meta, &t.name, Some(t.len())) else {
        return;
    };
    if t.dtype() != dtype {
        if let Some(data) = crate::metadata::cast(&t.data, dtype) {
            t.data = data;
        }
    }
    t.shape = shape;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_stream;
    use crate::encode::{encode, EncodeInput, EncodeOptions};
    use crate::tensor::TensorData;
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    /// An update whose coded tensors are all zero gets no NDU (as in the reference); its
    /// verbatim tensors must still come out, in memory and through the callback.
    #[test]
    fn an_update_without_ndus_still_gives_its_verbatim_tensors() {
        let opts = EncodeOptions {
            compress_differences: true,
            ..Default::default()
        };
        let input = EncodeInput::from_tensors_owned(vec![
            Tensor::try_new("w", vec![2, 2], TensorData::F32(vec![0.0; 4])).unwrap(),
            Tensor::try_new("e", vec![3, 0], TensorData::F16(vec![])).unwrap(),
        ])
        .unwrap();
        let mut enc_state = DecoderState::default();
        let encoded =
            crate::encode::encode_incremental(&input, &opts, &mut enc_state, true).unwrap();
        assert!(encoded.tensors.iter().all(|t| t.skipped));
        let names = |v: &[Tensor]| -> Vec<(String, Vec<usize>)> {
            v.iter()
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect()
        };
        let want = vec![("e".to_string(), vec![3, 0])];
        let out = decode_stream(
            &encoded.bytes,
            &mut DecoderState::default(),
            &DecodeOptions::new(),
        )
        .unwrap();
        let got: Vec<Tensor> = out.tensors.into_iter().map(|t| t.tensor).collect();
        assert_eq!(names(&got), want);
        for threads in [1, 2] {
            let mut got = Vec::new();
            decode_stream_with(
                &encoded.bytes,
                &mut DecoderState::default(),
                &DecodeOptions::new().with_threads(Some(threads)),
                |t| -> Result<()> {
                    got.push(t.tensor);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(names(&got), want, "{threads} threads");
        }
    }

    fn randn(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    }

    /// A state dict with several weights, biases, batch norms, an f16 and an int64 tensor and
    /// a verbatim `num_batches_tracked`.
    fn model() -> Vec<Tensor> {
        let t = |name: &str, shape: Vec<usize>, data| Tensor::try_new(name, shape, data).unwrap();
        vec![
            t(
                "conv1.weight",
                vec![16, 3, 3, 3],
                TensorData::F32(randn(432, 1)),
            ),
            t("bn1.weight", vec![16], TensorData::F32(randn(16, 2))),
            t("bn1.bias", vec![16], TensorData::F32(randn(16, 3))),
            t("bn1.running_mean", vec![16], TensorData::F32(randn(16, 4))),
            t("bn1.running_var", vec![16], TensorData::F32(vec![1.0; 16])),
            t("bn1.num_batches_tracked", vec![], TensorData::I64(vec![7])),
            t("fc.weight", vec![40, 64], TensorData::F32(randn(2560, 5))),
            t("fc.bias", vec![40], TensorData::F32(randn(40, 6))),
            t(
                "half.weight",
                vec![8, 8],
                TensorData::F16(
                    randn(64, 7)
                        .iter()
                        .map(|&x| half::f16::from_f32(x).to_bits())
                        .collect(),
                ),
            ),
            t("ids", vec![1, 12], TensorData::I64((0..12).collect())),
        ]
    }

    fn encode_with(threads: Option<usize>, scan_order: u8) -> Vec<u8> {
        let input = EncodeInput::from_state_dict_owned(model()).unwrap();
        let opts = EncodeOptions::default()
            .with_scan_order(scan_order)
            .with_threads(threads);
        encode(&input, &opts).unwrap().bytes
    }

    fn collect(
        bytes: &[u8],
        state: &mut DecoderState,
        opts: &DecodeOptions,
        budget: Option<u64>,
    ) -> Result<(Vec<DecodedTensor>, StreamPlan)> {
        let mut out = Vec::new();
        let decoder = StreamDecoder::new(bytes, opts)?;
        let push = |t| {
            out.push(t);
            Ok::<(), Error>(())
        };
        let plan = match budget {
            Some(b) => {
                let (plan, changes) = decoder.run_with_window(state, b, push)?;
                changes.commit(state);
                plan
            }
            None => decoder.run(state, push)?,
        };
        Ok((out, plan))
    }

    /// The pipelined decode on `threads` workers with `cap` elements out at a time, against a
    /// state it does not update.
    fn collect_pipelined(
        bytes: &[u8],
        state: &DecoderState,
        opts: &DecodeOptions,
        threads: usize,
        cap: u64,
    ) -> Result<Vec<DecodedTensor>> {
        let mut out = Vec::new();
        let workers = Workers::new(Some(threads))?;
        // The state is not updated: the changes are dropped.
        let _ = StreamDecoder::new(bytes, opts)?.run_pipelined(state, &workers, cap, |t| {
            out.push(t);
            Ok::<(), Error>(())
        })?;
        Ok(out)
    }

    fn specs(tensors: &[DecodedTensor]) -> Vec<TensorSpec> {
        tensors
            .iter()
            .map(|t| TensorSpec::from(&t.tensor))
            .collect()
    }

    #[test]
    fn one_and_two_threads_give_the_same_bytes_and_values() {
        for scan_order in [0, 2] {
            let one = encode_with(Some(1), scan_order);
            let two = encode_with(Some(2), scan_order);
            assert_eq!(one, two, "scan_order {scan_order}");
            assert_eq!(one, encode_with(None, scan_order));
            let decode = |threads| {
                let opts = DecodeOptions::new().with_threads(threads);
                decode_stream(&one, &mut DecoderState::default(), &opts).unwrap()
            };
            let (a, b) = (decode(Some(1)), decode(Some(2)));
            assert_eq!(a, b);
            assert_eq!(a.tensors.len(), model().len());
            let streamed = |threads| {
                let opts = DecodeOptions::new()
                    .with_threads(threads)
                    .with_keep_levels(false);
                collect(&one, &mut DecoderState::default(), &opts, None)
                    .unwrap()
                    .0
            };
            for threads in [Some(1), Some(2)] {
                let s = streamed(threads);
                assert_eq!(s.len(), a.tensors.len());
                for (s, a) in s.iter().zip(&a.tensors) {
                    assert_eq!(s.tensor, a.tensor);
                    assert_eq!(s.levels, None);
                }
            }
        }
    }

    #[test]
    fn streaming_matches_the_collected_decode_and_its_plan() {
        let bytes = encode_with(None, 0);
        let mut full_state = DecoderState::default();
        let full = decode_stream(&bytes, &mut full_state, &DecodeOptions::new()).unwrap();
        // The verbatim counter sits in its original place, dtypes and shapes are restored.
        let names: Vec<_> = full
            .tensors
            .iter()
            .map(|t| t.tensor.name.as_str())
            .collect();
        let original: Vec<_> = model().iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, original);
        let plan = plan_stream(&bytes, &DecodeOptions::new()).unwrap();
        assert_eq!(plan.tensors, specs(&full.tensors));
        assert_eq!(plan.general_profile_idc, full.general_profile_idc);

        for budget in [0, 1000, u64::MAX] {
            let mut state = DecoderState::default();
            let (tensors, _) =
                collect(&bytes, &mut state, &DecodeOptions::new(), Some(budget)).unwrap();
            assert_eq!(tensors, full.tensors, "budget {budget}");
            assert_eq!(state, full_state);
        }

        // Levels that are not handed out move into the state: the same state as with copies.
        let mut moved = DecoderState::default();
        let opts = DecodeOptions::new().with_keep_levels(false);
        let (tensors, _) = collect(&bytes, &mut moved, &opts, Some(0)).unwrap();
        assert_eq!(moved, full_state);
        assert!(tensors.iter().all(|t| t.levels.is_none()));

        // Pipelined: one NDU out at a time, a few, or all, on one, two and three workers.
        let opts = DecodeOptions::new().with_update_state(false);
        for cap in [1, 1000, u64::MAX] {
            for threads in [1, 2, 3] {
                let state = DecoderState::default();
                let tensors = collect_pipelined(&bytes, &state, &opts, threads, cap).unwrap();
                assert_eq!(tensors, full.tensors, "cap {cap}, {threads} threads");
            }
        }

        // Without updating the state nothing is recorded and no levels are kept.
        let mut state = DecoderState::default();
        let opts = DecodeOptions::new()
            .with_keep_levels(false)
            .with_update_state(false);
        let (tensors, _) = collect(&bytes, &mut state, &opts, Some(0)).unwrap();
        assert_eq!(state, DecoderState::default());
        assert!(tensors.iter().all(|t| t.levels.is_none()));
        let values: Vec<_> = tensors.iter().map(|t| &t.tensor).collect();
        let expected: Vec<_> = full.tensors.iter().map(|t| &t.tensor).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn an_emit_error_stops_the_decode() {
        let bytes = encode_with(None, 0);
        let mut seen = 0;
        let err = decode_stream_with(
            &bytes,
            &mut DecoderState::default(),
            &DecodeOptions::new(),
            |_| {
                seen += 1;
                if seen == 3 {
                    Err(Error::InvalidArgument {
                        what: "stop".into(),
                    })
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert_eq!(seen, 3);
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn an_emit_error_stops_the_pipelined_decode() {
        let bytes = encode_with(None, 0);
        let opts = DecodeOptions::new()
            .with_threads(Some(2))
            .with_update_state(false);
        for cap in [1, u64::MAX] {
            let mut seen = 0;
            let workers = Workers::new(Some(2)).unwrap();
            let decoder = StreamDecoder::new(&bytes, &opts).unwrap();
            let err = decoder
                .run_pipelined(&DecoderState::default(), &workers, cap, |_| {
                    seen += 1;
                    if seen == 3 {
                        Err(Error::InvalidArgument {
                            what: "stop".into(),
                        })
                    } else {
                        Ok(())
                    }
                })
                .unwrap_err();
            assert_eq!(seen, 3, "cap {cap}");
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        }
    }

    /// Streaming decodes run as tasks of a pool whose every thread is busy with one of them:
    /// each waits for its NDUs by running queued work, so none starves the others (also when
    /// the pool has a single thread).
    #[test]
    fn pipelined_decodes_inside_a_busy_pool_finish() {
        for threads in [1, 2] {
            pipelined_decodes_inside_a_busy_pool_of(threads);
        }
    }

    fn pipelined_decodes_inside_a_busy_pool_of(threads: usize) {
        use rayon::prelude::*;
        let bytes = encode_with(None, 0);
        let expected = decode_stream(&bytes, &mut DecoderState::default(), &DecodeOptions::new())
            .unwrap()
            .tensors;
        let opts = DecodeOptions::new().with_update_state(false);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let results: Vec<Vec<DecodedTensor>> = pool.install(|| {
            (0..6)
                .into_par_iter()
                .map(|_| {
                    let mut out = Vec::new();
                    StreamDecoder::new(&bytes, &opts)
                        .unwrap()
                        .run(&mut DecoderState::default(), |t| {
                            out.push(t);
                            Ok::<(), Error>(())
                        })
                        .unwrap();
                    out
                })
                .collect()
        });
        for r in results {
            assert_eq!(r, expected);
        }
    }

    #[test]
    fn in_place_dequantization_reuses_the_levels_memory() {
        let levels: Vec<i32> = (-3000..3000).collect();
        let mut expected = vec![0f32; levels.len()];
        nnc_quant::dequantize_uniform(&levels, -32, 2, &mut expected).unwrap();
        let ptr = levels.as_ptr() as usize;
        let values = crate::decode::dequantize_in_place(levels, -32, 2).unwrap();
        assert_eq!(values, expected);
        assert_eq!(values.as_ptr() as usize, ptr);
    }

    #[test]
    fn windows_hold_a_budget_besides_their_largest_ndu() {
        let bytes = encode_with(None, 0);
        let parsed = parse_stream(&bytes, &DecodeOptions::new()).unwrap();
        let sizes: Vec<u64> = parsed.jobs.iter().map(|j| j.elements).collect();
        let all = windows(&parsed.jobs, u64::MAX);
        assert_eq!(all, vec![0..sizes.len()]);
        let single = windows(&parsed.jobs, 0);
        assert!(single
            .iter()
            .all(|w| w.len() == 1 || sizes[w.clone()].iter().filter(|&&s| s > 0).count() <= 1));
        for w in windows(&parsed.jobs, 100) {
            let s = &sizes[w];
            let largest = s.iter().copied().max().unwrap();
            assert!(s.iter().sum::<u64>() - largest <= 100);
        }
    }

    #[test]
    fn a_dominant_ndu_gets_company_for_the_other_threads() {
        assert_eq!(window_budget(50_000_000, 100_000_000, 1), 0);
        // No dominant NDU: a quarter of the stream.
        assert_eq!(window_budget(3_000_000, 100_000_000, 2), 25_000_000);
        // MiniLM-like: the word embeddings are half of the values.
        assert_eq!(window_budget(11_700_000, 22_700_000, 2), 11_700_000);
        assert_eq!(window_budget(11_700_000, 22_700_000, 3), 23_400_000);
        assert_eq!(window_budget(10, 100, 2), 1 << 20);
    }

    fn vectors_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors")
    }

    fn options_for(config: &Value) -> DecodeOptions {
        let decode = &config["decode"];
        let mut opts = DecodeOptions::new();
        if let Some(dims) = decode
            .pointer("/side_info/parameter_dimensions")
            .and_then(Value::as_object)
        {
            for (name, shape) in dims {
                let shape: Vec<u64> = serde_json::from_value(shape.clone()).unwrap();
                opts = opts.with_tensor_dimensions(name.clone(), shape);
            }
        }
        if let Some(r) = decode["recompose"].as_bool() {
            opts = opts.with_recompose_decomposed(r);
        }
        opts.with_hdsp(decode["hdsp"].as_bool().unwrap_or(false))
    }

    /// Every conformance vector (sequences step by step with their state): the streaming decode,
    /// one NDU per window on two threads, gives the collected decode's tensors, in its order, and
    /// the same state; so does the pipelined decode against the state from before the
    /// bitstream; the plan names every output's shape and dtype.
    #[test]
    fn conformance_vectors_stream_like_they_decode() {
        let mut cases = 0;
        for entry in std::fs::read_dir(vectors_dir()).unwrap() {
            let dir = entry.unwrap().path();
            let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
                continue;
            };
            let config: Value = serde_json::from_str(&text).unwrap();
            let files: Vec<&Value> = match config["steps"].as_array() {
                Some(steps) => steps.iter().map(|s| &s["files"]).collect(),
                None => vec![&config["files"]],
            };
            let opts = options_for(&config).with_threads(Some(2));
            let (mut a, mut b) = (DecoderState::default(), DecoderState::default());
            for f in files {
                let Some(rel) = f["bitstream"].as_str() else {
                    continue;
                };
                let bytes = std::fs::read(dir.join(rel)).unwrap();
                let before = a.clone();
                let full = decode_stream(&bytes, &mut a, &opts);
                let checked = opts.clone().with_update_state(false);
                let pipelined = collect_pipelined(&bytes, &before, &checked, 2, 1);
                let streamed = collect(&bytes, &mut b, &opts, Some(0));
                match (full, streamed, pipelined) {
                    (Ok(full), Ok((tensors, plan)), Ok(pipelined)) => {
                        assert_eq!(tensors, full.tensors, "{}", dir.display());
                        assert_eq!(pipelined, full.tensors, "{}", dir.display());
                        assert_eq!(plan.tensors, specs(&full.tensors), "{}", dir.display());
                    }
                    (Err(e), Err(f), Err(g)) => {
                        assert_eq!(e.kind(), f.kind(), "{}", dir.display());
                        assert_eq!(e.kind(), g.kind(), "{}", dir.display());
                    }
                    (x, y, z) => panic!(
                        "{}: {:?} vs {:?} vs {:?}",
                        dir.display(),
                        x.err(),
                        y.err(),
                        z.err()
                    ),
                }
                assert_eq!(a, b, "{}", dir.display());
                cases += 1;
            }
        }
        assert!(cases >= 100, "only {cases} bitstreams found");
    }
}
