//! The scikit-learn 8×8 digits (from the cache `cargo xtask fetch-digits` fills), the reference
//! run's exact test/client split, and a synthetic stand-in of the same shape for offline tests.

use std::path::PathBuf;

use super::rng::Rng;

/// Features per sample (8×8 pixels).
pub const FEATURES: usize = 64;
/// Classes.
pub const CLASSES: usize = 10;

/// Samples, row-major.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `len × FEATURES` values.
    pub x: Vec<f32>,
    /// Labels.
    pub y: Vec<u32>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
}

/// Which samples are the server's test set and which belong to each client.
#[derive(Clone, Debug)]
pub struct Split {
    /// Test sample indices.
    pub test: Vec<usize>,
    /// Per client: its training sample indices.
    pub clients: Vec<Vec<usize>>,
}

/// The cache directory shared with `cargo xtask fetch-digits`: `$NNC_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/nnc`, else `$HOME/.cache/nnc`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("NNC_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("nnc")))
        .or_else(|| var("HOME").map(|p| p.join(".cache").join("nnc")))
}

/// Where the digits CSV lives.
pub fn digits_csv_path() -> Option<PathBuf> {
    cache_dir().map(|d| d.join("digits").join("digits.csv"))
}

/// Loads the digits as scikit-learn's `load_digits()` does, pixels divided by 16.
pub fn load_digits() -> Result<Dataset, String> {
    let path = digits_csv_path().ok_or("no cache directory (set NNC_CACHE_DIR or HOME)")?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e}\nfetch the data first: cargo xtask fetch-digits",
            path.display()
        )
    })?;
    let mut x = Vec::with_capacity(1797 * FEATURES);
    let mut y = Vec::with_capacity(1797);
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != FEATURES + 1 {
            return Err(format!(
                "{}:{}: expected 65 fields",
                path.display(),
                line_no + 1
            ));
        }
        for f in &fields[..FEATURES] {
            let v: f32 = f
                .trim()
                .parse()
                .map_err(|e| format!("{}:{}: {e}", path.display(), line_no + 1))?;
            x.push(v / 16.0);
        }
        let label: f32 = fields[FEATURES]
            .trim()
            .parse()
            .map_err(|e| format!("{}:{}: {e}", path.display(), line_no + 1))?;
        if !(0.0..CLASSES as f32).contains(&label) {
            return Err(format!("{}:{}: label {label}", path.display(), line_no + 1));
        }
        y.push(label as u32);
    }
    if y.len() != 1797 {
        return Err(format!(
            "{}: {} samples, the digits have 1797 (re-run cargo xtask fetch-digits)",
            path.display(),
            y.len()
        ));
    }
    Ok(Dataset { x, y })
}

/// The reference run's split (`shared/fl/ref_fl_digits.out`, setup line): stratified 80/20
/// test split with `random_state` 42, then a Dirichlet(0.5) label split over 5 clients
/// (seed 2023), resampled until every client has at least 20 samples.
pub fn reference_split() -> Split {
    #[derive(serde::Deserialize)]
    struct File {
        test_idx: Vec<usize>,
        client_idx: Vec<Vec<usize>>,
    }
    let f: File = serde_json::from_str(include_str!("digits_split.json"))
        .expect("digits_split.json is valid");
    Split {
        test: f.test_idx,
        clients: f.client_idx,
    }
}

/// A synthetic stand-in: `CLASSES` noisy prototypes in [0, 1]^64, non-IID over `clients`
/// (each client draws 80 % of its samples from two classes of its own).
pub fn synthetic(clients: usize, per_client: usize, test: usize, seed: u64) -> (Dataset, Split) {
    let mut rng = Rng::new(seed);
    let protos: Vec<f32> = (0..CLASSES * FEATURES).map(|_| rng.next_f32()).collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    let sample = |rng: &mut Rng, class: usize, x: &mut Vec<f32>, y: &mut Vec<u32>| {
        for f in 0..FEATURES {
            let v = protos[class * FEATURES + f] + 0.35 * rng.normal();
            x.push(v.clamp(0.0, 1.0));
        }
        y.push(class as u32);
        y.len() - 1
    };
    let mut split = Split {
        test: Vec::new(),
        clients: vec![Vec::new(); clients],
    };
    for i in 0..test {
        let idx = sample(&mut rng, i % CLASSES, &mut x, &mut y);
        split.test.push(idx);
    }
    for (k, own) in split.clients.iter_mut().enumerate() {
        for _ in 0..per_client {
            let class = if rng.next_f32() < 0.8 {
                (2 * k + rng.below(2)) % CLASSES
            } else {
                rng.below(CLASSES)
            };
            own.push(sample(&mut rng, class, &mut x, &mut y));
        }
    }
    (Dataset { x, y }, split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_split_matches_the_reference_setup() {
        let s = reference_split();
        assert_eq!(s.test.len(), 360);
        let sizes: Vec<usize> = s.clients.iter().map(Vec::len).collect();
        assert_eq!(sizes, [246, 319, 293, 204, 375]);
        let mut all: Vec<usize> = s
            .test
            .iter()
            .chain(s.clients.iter().flatten())
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..1797).collect::<Vec<_>>());
    }
}
