//! A short FedAvg run of the `fedavg` example's task: the compressed run must learn and cut the
//! traffic by a large factor. Uses the digits from the cache (`cargo xtask fetch-digits`) and a
//! synthetic data set of the same shape when the cache is empty, so it never needs the network.

#[path = "../examples/support/mod.rs"]
mod support;

use nnc_fl::{simulate, FlOptions, SimConfig};
use support::{digits, mlp};

const ROUNDS: u32 = 8;

fn trainer() -> (mlp::MlpTrainer, &'static str) {
    let (data, split, source) = match digits::load_digits() {
        Ok(d) => (d, digits::reference_split(), "digits"),
        Err(e) => {
            eprintln!("{e}\nusing synthetic data instead");
            let (d, s) = digits::synthetic(5, 200, 200, 3);
            (d, s, "synthetic")
        }
    };
    (
        mlp::MlpTrainer::new(data, split, 16, 3e-3).expect("trainer"),
        source,
    )
}

#[test]
fn compressed_fedavg_learns_with_a_fraction_of_the_traffic() {
    let (mut t, source) = trainer();
    let layout = mlp::layout(128);
    let initial = mlp::init_params(&layout, 808);
    let cfg = SimConfig {
        clients: t.clients(),
        rounds: ROUNDS,
        seed: 808,
        options: FlOptions::uncompressed(),
    };
    let plain = simulate(&mut t, &layout, initial.clone(), &cfg, |_| {}).expect("uncompressed");
    let cfg = SimConfig {
        options: FlOptions {
            nonweight_qp: -16,
            sparsity: 0.8,
            use_dq: true,
            ..FlOptions::compressed(-12)
        },
        ..cfg
    };
    let mut rounds_seen = Vec::new();
    let coded = simulate(&mut t, &layout, initial, &cfg, |r| {
        rounds_seen.push((r.round, r.metrics.accuracy, r.bytes_up, r.bytes_down))
    })
    .expect("compressed");
    eprintln!(
        "{source}: uncompressed {:.2} % {} B; compressed {:.2} % {} B ({:.2} % cut); {rounds_seen:?}",
        plain.final_metrics().accuracy,
        plain.bytes_total(),
        coded.final_metrics().accuracy,
        coded.bytes_total(),
        100.0 * coded.traffic_cut()
    );
    assert_eq!(plain.bytes_total(), plain.bytes_uncompressed);
    assert_eq!(
        plain.bytes_uncompressed,
        u64::from(ROUNDS) * 5 * 2 * 4 * 9610,
        "4 bytes per parameter, per client, each way"
    );
    // Chance is 10 %.
    assert!(
        plain.final_metrics().accuracy > 60.0,
        "{:?}",
        plain.final_metrics()
    );
    assert!(
        coded.final_metrics().accuracy > 40.0,
        "{:?}",
        coded.final_metrics()
    );
    assert!(coded.traffic_cut() > 0.95, "cut {}", coded.traffic_cut());
    assert_eq!(rounds_seen.len(), ROUNDS as usize);
}

#[test]
fn runs_are_reproducible() {
    let (mut t, _) = trainer();
    let layout = mlp::layout(128);
    let cfg = SimConfig {
        clients: t.clients(),
        rounds: 2,
        seed: 5,
        options: FlOptions {
            sparsity: 0.9,
            tca: true,
            ..FlOptions::compressed(-18)
        },
    };
    let a = simulate(&mut t, &layout, mlp::init_params(&layout, 1), &cfg, |_| {}).expect("a");
    let b = simulate(&mut t, &layout, mlp::init_params(&layout, 1), &cfg, |_| {}).expect("b");
    assert_eq!(a, b);
}
