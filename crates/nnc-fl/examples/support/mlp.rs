//! The reference's digits model, an MLP 64-128(ReLU)-10, trained with candle-nn on the CPU:
//! one local epoch per round, shuffled mini-batches, Adam created fresh every round.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use nnc_fl::{BoxError, Layout, LocalTrainer, Metrics, TensorSpec, TrainJob};

use super::digits::{Dataset, Split, CLASSES, FEATURES};
use super::rng::Rng;

/// The layout of the MLP's parameters, named and shaped as PyTorch's `nn.Linear` state dict.
pub fn layout(hidden: usize) -> Layout {
    Layout::new(vec![
        TensorSpec::new("fc1.weight", vec![hidden, FEATURES]),
        TensorSpec::new("fc1.bias", vec![hidden]),
        TensorSpec::new("fc2.weight", vec![CLASSES, hidden]),
        TensorSpec::new("fc2.bias", vec![CLASSES]),
    ])
    .expect("static layout")
}

/// PyTorch's default `nn.Linear` initialisation, U(−1/√fan_in, 1/√fan_in) for weights and
/// biases, from our own generator.
pub fn init_params(layout: &Layout, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(layout.num_values());
    for (i, spec) in layout.specs().iter().enumerate() {
        let fan_in = if spec.shape.len() == 2 {
            spec.shape[1]
        } else {
            // A bias takes the fan-in of the weight before it.
            layout.specs()[i - 1].shape[1]
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        for _ in 0..layout.range(i).len() {
            out.push((2.0 * rng.next_f32() - 1.0) * bound);
        }
    }
    out
}

/// Local training and evaluation of the MLP.
pub struct MlpTrainer {
    data: Dataset,
    split: Split,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    device: Device,
    test_x: Tensor,
    test_y: Tensor,
}

impl MlpTrainer {
    /// A trainer over `data` split as `split`.
    pub fn new(data: Dataset, split: Split, batch_size: usize, lr: f64) -> Result<Self, BoxError> {
        let device = Device::Cpu;
        let (test_x, test_y) = gather(&data, &split.test, &device)?;
        Ok(MlpTrainer {
            data,
            split,
            batch_size,
            lr,
            device,
            test_x,
            test_y,
        })
    }

    /// Number of clients in the split.
    pub fn clients(&self) -> usize {
        self.split.clients.len()
    }

    fn vars(&self, layout: &Layout, params: &[f32]) -> Result<Vec<Var>, BoxError> {
        let mut vars = Vec::with_capacity(4);
        for (i, spec) in layout.specs().iter().enumerate() {
            vars.push(Var::from_slice(
                &params[layout.range(i)],
                spec.shape.as_slice(),
                &self.device,
            )?);
        }
        Ok(vars)
    }
}

fn gather(data: &Dataset, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor), BoxError> {
    let mut x = Vec::with_capacity(idx.len() * FEATURES);
    let mut y = Vec::with_capacity(idx.len());
    for &i in idx {
        x.extend_from_slice(&data.x[i * FEATURES..(i + 1) * FEATURES]);
        y.push(data.y[i]);
    }
    Ok((
        Tensor::from_vec(x, (idx.len(), FEATURES), device)?,
        Tensor::from_vec(y, idx.len(), device)?,
    ))
}

fn forward(x: &Tensor, p: &[Tensor]) -> candle_core::Result<Tensor> {
    x.matmul(&p[0].t()?)?
        .broadcast_add(&p[1])?
        .relu()?
        .matmul(&p[2].t()?)?
        .broadcast_add(&p[3])
}

impl LocalTrainer for MlpTrainer {
    /// Returns the number of mini-batches as the FedAvg weight.
    ///
    /// Reference quirk: `NNClient.fit` reports `len(trainloader)`, the number of mini-batches,
    /// as its `num_examples`, so FedAvg weights by batches, not samples.
    fn train(&mut self, job: &TrainJob<'_>, params: &mut [f32]) -> Result<u64, BoxError> {
        let own = self
            .split
            .clients
            .get(job.client)
            .ok_or("client index outside the split")?;
        let vars = self.vars(job.layout, params)?;
        let mut opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: self.lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        )?;
        let mut order = own.clone();
        Rng::new(job.seed).shuffle(&mut order);
        let mut batches = 0u64;
        for chunk in order.chunks(self.batch_size) {
            let (x, y) = gather(&self.data, chunk, &self.device)?;
            let p: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let logits = forward(&x, &p)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.backward_step(&loss)?;
            batches += 1;
        }
        for (i, v) in vars.iter().enumerate() {
            let values = v.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            params[job.layout.range(i)].copy_from_slice(&values);
        }
        Ok(batches)
    }

    fn evaluate(&mut self, layout: &Layout, params: &[f32]) -> Result<Metrics, BoxError> {
        let p: Vec<Tensor> = self
            .vars(layout, params)?
            .into_iter()
            .map(Var::into_inner)
            .collect();
        let logits = forward(&self.test_x, &p)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &self.test_y)?.to_scalar::<f32>()?;
        let correct = logits
            .argmax(D::Minus1)?
            .eq(&self.test_y)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(Metrics {
            accuracy: 100.0 * f64::from(correct) / self.split.test.len() as f64,
            loss: f64::from(loss),
        })
    }
}
