//! In-process FedAvg simulation: N clients and the server exchange real messages (byte vectors)
//! round by round, with training and evaluation delegated to a [`LocalTrainer`].

use serde::Serialize;

use crate::client::ClientCodec;
use crate::error::{BoxError, FlError, Result};
use crate::layout::Layout;
use crate::options::FlOptions;
use crate::server::{ClientMessage, ServerCodec};

/// What a client trains in one round.
#[derive(Clone, Copy, Debug)]
pub struct TrainJob<'a> {
    /// Client index, 0-based.
    pub client: usize,
    /// The client's `device_id` (`client + 1`).
    pub device_id: u64,
    /// Round, 0-based.
    pub round: u32,
    /// Seed for this client and round (derived from [`SimConfig::seed`]); use it for all
    /// randomness of the local training (batch order, dropout) to keep runs reproducible.
    pub seed: u64,
    /// The parameter layout.
    pub layout: &'a Layout,
}

/// Test metrics of a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Accuracy in percent.
    pub accuracy: f64,
    /// Mean loss.
    pub loss: f64,
}

/// The ML side of a simulation: local training and evaluation. The codec never sees how.
pub trait LocalTrainer {
    /// Trains client `job.client` for one round, starting from and updating `params` (flat, in
    /// layout order); returns its FedAvg weight (e.g. its number of samples).
    fn train(&mut self, job: &TrainJob<'_>, params: &mut [f32]) -> Result<u64, BoxError>;
    /// Evaluates a global model on the server's test data.
    fn evaluate(&mut self, layout: &Layout, params: &[f32]) -> Result<Metrics, BoxError>;
}

/// Simulation settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimConfig {
    /// Number of clients; all take part in every round.
    pub clients: usize,
    /// Number of rounds.
    pub rounds: u32,
    /// Seed from which every [`TrainJob::seed`] is derived.
    pub seed: u64,
    /// Codec settings of both sides.
    pub options: FlOptions,
}

/// Traffic and test metrics of one round.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundReport {
    /// Round, 1-based.
    pub round: u32,
    /// Bytes of all client messages.
    pub bytes_up: u64,
    /// Bytes of the downstream message times the number of clients.
    pub bytes_down: u64,
    /// Metrics of the global model after the round.
    pub metrics: Metrics,
}

/// The outcome of a simulation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    /// Number of clients.
    pub clients: usize,
    /// Metrics of the initial model.
    pub initial: Metrics,
    /// Bytes of the initial uncompressed broadcast to all clients (not part of the totals, as in
    /// the reference's accounting).
    pub initial_broadcast_bytes: u64,
    /// Every round.
    pub rounds: Vec<RoundReport>,
    /// Bytes sent upstream over all rounds.
    pub bytes_up: u64,
    /// Bytes sent downstream over all rounds (one copy per client).
    pub bytes_down: u64,
    /// Traffic of uncompressed FedAvg over the same rounds: 4 bytes per parameter, per client,
    /// each way.
    pub bytes_uncompressed: u64,
    /// The final global model.
    #[serde(skip)]
    pub final_model: Vec<f32>,
}

impl SimReport {
    /// All traffic, both directions.
    pub fn bytes_total(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }

    /// Metrics after the last round (the initial ones if there were no rounds).
    pub fn final_metrics(&self) -> Metrics {
        self.rounds.last().map_or(self.initial, |r| r.metrics)
    }

    /// Best accuracy over the rounds.
    pub fn best_accuracy(&self) -> f64 {
        self.rounds
            .iter()
            .map(|r| r.metrics.accuracy)
            .fold(f64::NAN, f64::max)
    }

    /// Fraction of uncompressed traffic saved, `1 − total / uncompressed`.
    pub fn traffic_cut(&self) -> f64 {
        if self.bytes_uncompressed == 0 {
            return 0.0;
        }
        1.0 - self.bytes_total() as f64 / self.bytes_uncompressed as f64
    }
}

/// Derives the seed of one client's round (SplitMix64 over the run seed, device and round).
pub fn job_seed(seed: u64, device_id: u64, round: u32) -> u64 {
    let mut z = seed
        .wrapping_add(device_id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(u64::from(round).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs FedAvg from `initial` for `cfg.rounds` rounds with all clients, the messages going
/// through [`ClientCodec`] and [`ServerCodec`] exactly as they would over a network. Calls
/// `on_round` after each round. Deterministic for a deterministic trainer.
pub fn simulate<T: LocalTrainer + ?Sized>(
    trainer: &mut T,
    layout: &Layout,
    initial: Vec<f32>,
    cfg: &SimConfig,
    mut on_round: impl FnMut(&RoundReport),
) -> Result<SimReport> {
    if cfg.clients == 0 {
        return Err(FlError::Options("no clients".into()));
    }
    let opts = &cfg.options;
    let mut server = ServerCodec::new(layout.clone(), opts.clone(), initial)?;
    let mut clients = (1..=cfg.clients as u64)
        .map(|id| ClientCodec::new(layout.clone(), opts.clone(), id))
        .collect::<Result<Vec<_>>>()?;
    let k = cfg.clients as u64;
    let initial = trainer
        .evaluate(layout, server.global_model())
        .map_err(FlError::Trainer)?;
    let mut down = server.initial_message();
    let mut report = SimReport {
        clients: cfg.clients,
        initial,
        initial_broadcast_bytes: k * down.len() as u64,
        rounds: Vec::with_capacity(cfg.rounds as usize),
        bytes_up: 0,
        bytes_down: 0,
        bytes_uncompressed: 0,
        final_model: Vec::new(),
    };
    for round in 0..cfg.rounds {
        let mut sent = Vec::with_capacity(clients.len());
        for (i, client) in clients.iter_mut().enumerate() {
            let mut params = client.receive(&down)?;
            let device_id = client.state().device_id;
            let job = TrainJob {
                client: i,
                device_id,
                round,
                seed: job_seed(cfg.seed, device_id, round),
                layout,
            };
            let weight = trainer.train(&job, &mut params).map_err(FlError::Trainer)?;
            sent.push((device_id, weight, client.send(&params)?));
        }
        let messages: Vec<ClientMessage<'_>> = sent
            .iter()
            .map(|(device_id, weight, bytes)| ClientMessage {
                device_id: *device_id,
                weight: *weight,
                bytes,
            })
            .collect();
        let bytes_up: u64 = sent.iter().map(|(_, _, b)| b.len() as u64).sum();
        down = server.aggregate(&messages)?;
        let bytes_down = k * down.len() as u64;
        let metrics = trainer
            .evaluate(layout, server.global_model())
            .map_err(FlError::Trainer)?;
        let r = RoundReport {
            round: round + 1,
            bytes_up,
            bytes_down,
            metrics,
        };
        on_round(&r);
        report.bytes_up += bytes_up;
        report.bytes_down += bytes_down;
        report.bytes_uncompressed += 2 * k * layout.raw_message_len() as u64;
        report.rounds.push(r);
    }
    report.final_model = server.into_state().global;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TensorSpec;

    /// Each client pulls the model towards its own target; the FedAvg optimum is their
    /// weighted mean. "Accuracy" is 100 − distance to it.
    struct Pull {
        targets: Vec<Vec<f32>>,
        weights: Vec<u64>,
        seeds: Vec<u64>,
    }

    impl Pull {
        fn optimum(&self) -> Vec<f32> {
            let total: u64 = self.weights.iter().sum();
            (0..self.targets[0].len())
                .map(|i| {
                    self.targets
                        .iter()
                        .zip(&self.weights)
                        .map(|(t, &w)| t[i] * w as f32)
                        .sum::<f32>()
                        / total as f32
                })
                .collect()
        }
    }

    impl LocalTrainer for Pull {
        fn train(&mut self, job: &TrainJob<'_>, params: &mut [f32]) -> Result<u64, BoxError> {
            self.seeds.push(job.seed);
            for (p, t) in params.iter_mut().zip(&self.targets[job.client]) {
                *p += 0.5 * (t - *p);
            }
            Ok(self.weights[job.client])
        }
        fn evaluate(&mut self, _: &Layout, params: &[f32]) -> Result<Metrics, BoxError> {
            let opt = self.optimum();
            let d: f32 = params.iter().zip(&opt).map(|(a, b)| (a - b).abs()).sum();
            Ok(Metrics {
                accuracy: 100.0 - f64::from(d),
                loss: f64::from(d),
            })
        }
    }

    fn setup() -> (Layout, Pull) {
        let layout = Layout::new(vec![
            TensorSpec::new("w", vec![6, 10]),
            TensorSpec::new("b", vec![6]),
        ])
        .unwrap();
        let targets = (0..3)
            .map(|k| {
                (0..66)
                    .map(|i| (((i * 7 + k * 13) % 17) as f32 - 8.0) * 0.02)
                    .collect()
            })
            .collect();
        (
            layout,
            Pull {
                targets,
                weights: vec![1, 2, 3],
                seeds: Vec::new(),
            },
        )
    }

    #[test]
    fn uncompressed_and_compressed_converge_and_count_bytes() {
        let (layout, mut t) = setup();
        let cfg = SimConfig {
            clients: 3,
            rounds: 12,
            seed: 7,
            options: FlOptions::uncompressed(),
        };
        let mut seen = 0;
        let plain = simulate(&mut t, &layout, vec![0.0; 66], &cfg, |_| seen += 1).unwrap();
        assert_eq!(seen, 12);
        assert_eq!(plain.bytes_total(), plain.bytes_uncompressed);
        assert_eq!(plain.bytes_uncompressed, 12 * 3 * 2 * 4 * 66);
        assert_eq!(plain.initial_broadcast_bytes, 3 * 4 * 66);
        assert!(
            plain.final_metrics().loss < 0.05,
            "{:?}",
            plain.final_metrics()
        );

        let (_, mut t2) = setup();
        let cfg = SimConfig {
            options: FlOptions {
                tca: true,
                ..FlOptions::compressed(-24)
            },
            ..cfg
        };
        let coded = simulate(&mut t2, &layout, vec![0.0; 66], &cfg, |_| {}).unwrap();
        assert!(coded.traffic_cut() > 0.5, "{}", coded.traffic_cut());
        assert!(
            coded.final_metrics().loss < 0.5,
            "{:?}",
            coded.final_metrics()
        );
        assert_eq!(
            t.seeds, t2.seeds,
            "seeds depend on seed, device and round only"
        );
    }

    #[test]
    fn deterministic() {
        let (layout, mut a) = setup();
        let (_, mut b) = setup();
        let cfg = SimConfig {
            clients: 3,
            rounds: 4,
            seed: 1,
            options: FlOptions {
                sparsity: 0.5,
                struct_spars_factor: 0.9,
                tca: true,
                ..FlOptions::compressed(-20)
            },
        };
        let ra = simulate(&mut a, &layout, vec![0.1; 66], &cfg, |_| {}).unwrap();
        let rb = simulate(&mut b, &layout, vec![0.1; 66], &cfg, |_| {}).unwrap();
        assert_eq!(ra, rb);
    }

    #[test]
    fn trainer_errors_are_passed_on() {
        struct Failing;
        impl LocalTrainer for Failing {
            fn train(&mut self, _: &TrainJob<'_>, _: &mut [f32]) -> Result<u64, BoxError> {
                Err("no data".into())
            }
            fn evaluate(&mut self, _: &Layout, _: &[f32]) -> Result<Metrics, BoxError> {
                Ok(Metrics::default())
            }
        }
        let (layout, _) = setup();
        let cfg = SimConfig {
            clients: 2,
            rounds: 1,
            seed: 0,
            options: FlOptions::default(),
        };
        let err = simulate(&mut Failing, &layout, vec![0.0; 66], &cfg, |_| {}).unwrap_err();
        assert!(matches!(err, FlError::Trainer(_)));
        let cfg = SimConfig { clients: 0, ..cfg };
        assert!(simulate(&mut Failing, &layout, vec![0.0; 66], &cfg, |_| {}).is_err());
    }

    #[test]
    fn job_seeds_differ() {
        assert_ne!(job_seed(1, 1, 0), job_seed(1, 2, 0));
        assert_ne!(job_seed(1, 1, 0), job_seed(1, 1, 1));
        assert_ne!(job_seed(1, 1, 0), job_seed(2, 1, 0));
    }
}
