//! Loading of the reference conformance vectors (`conformance/vectors/<case>/`).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::{read_npy, NpzReader};
use serde_json::Value;

/// One conformance case directory with its parsed `config.json`.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub config: Value,
}

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors")
}

impl Case {
    pub fn load(name: &str) -> Case {
        let dir = vectors_dir().join(name);
        let text = std::fs::read_to_string(dir.join("config.json"))
            .unwrap_or_else(|e| panic!("{name}: config.json: {e}"));
        let config = serde_json::from_str(&text).expect("config.json parses");
        Case {
            name: name.to_owned(),
            dir,
            config,
        }
    }

    /// Tensor names the encoder handled, in config order.
    pub fn tensor_names(&self) -> Vec<String> {
        self.config["encoder_internal"]["qp"]
            .as_object()
            .expect("encoder_internal.qp")
            .keys()
            .cloned()
            .collect()
    }

    pub fn internal_i64(&self, field: &str, tensor: &str) -> i64 {
        self.config["encoder_internal"][field][tensor]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: encoder_internal.{field}.{tensor}", self.name))
    }

    pub fn kwarg(&self, field: &str) -> &Value {
        &self.config["nnc_compress_kwargs"][field]
    }

    pub fn parameter_type(&self, tensor: &str) -> String {
        self.config["encoder_internal"]["parameter_type"][tensor]
            .as_str()
            .expect("parameter_type")
            .to_owned()
    }

    /// The file for `role` (`input`, `levels`, `decoded`, `encoder_levels`), if the case has it.
    fn file(&self, role: &str) -> Option<PathBuf> {
        self.config["files"][role]
            .as_str()
            .map(|f| self.dir.join(f))
    }

    pub fn has(&self, role: &str) -> bool {
        self.file(role).is_some()
    }

    fn read<T: ndarray_npy::ReadableElement>(&self, role: &str, tensor: &str) -> Option<ArrayD<T>> {
        let path = self.file(role)?;
        if path.extension().is_some_and(|e| e == "npz") {
            let mut npz = NpzReader::new(File::open(&path).ok()?).ok()?;
            npz.by_name(tensor).ok()
        } else {
            read_npy(&path).ok()
        }
    }

    /// A float array as f32 (f64 files are rounded to f32, as the pipeline's `astype` does).
    pub fn read_f32(&self, role: &str, tensor: &str) -> (Vec<f32>, Vec<usize>) {
        if let Some(a) = self.read::<f32>(role, tensor) {
            let shape = a.shape().to_vec();
            return (a.iter().copied().collect(), shape);
        }
        let a = self
            .read::<f64>(role, tensor)
            .unwrap_or_else(|| panic!("{}: {role}[{tensor}] is neither f32 nor f64", self.name));
        let shape = a.shape().to_vec();
        (a.iter().map(|&v| v as f32).collect(), shape)
    }

    /// `true` when the file for `role` exists and holds an i32 array for `tensor`.
    pub fn has_i32(&self, role: &str, tensor: &str) -> bool {
        self.read::<i32>(role, tensor).is_some()
    }

    pub fn read_i32(&self, role: &str, tensor: &str) -> Vec<i32> {
        self.read::<i32>(role, tensor)
            .unwrap_or_else(|| panic!("{}: {role}[{tensor}] is not i32", self.name))
            .iter()
            .copied()
            .collect()
    }

    /// Every array of an `.npz` input with its name (in file order).
    pub fn npz_names(&self, role: &str) -> Vec<String> {
        let path = self.file(role).expect("role present");
        let mut npz = NpzReader::new(File::open(path).expect("open")).expect("npz");
        npz.names().expect("names")
    }
}

/// Case directory names matching a prefix.
pub fn cases_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(vectors_dir())
        .expect("vectors dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}
