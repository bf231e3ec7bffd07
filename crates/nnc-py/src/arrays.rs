//! NumPy arrays ↔ [`Tensor`]s, keeping element types and shapes.
//!
//! Any object NumPy's `asarray` accepts is taken (lists, scalars, arrays), and PyTorch tensors
//! whatever their device or autograd state (parameters included). `float16` and `bfloat16` (the
//! `ml_dtypes` type, or a PyTorch `bfloat16` tensor) travel as their raw 16-bit patterns, so no
//! NumPy support for them is needed on the Rust side.

use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMapping, PyMemoryView};

use nnc_tensor::encode::{Elements, NamedElements, ParameterData, TensorSource};
use nnc_tensor::{DType, Tensor, TensorData};

use crate::errors::invalid;

/// Copies a typed NumPy array into a `Vec` in C order, whatever its strides.
fn read<T: numpy::Element + Copy>(arr: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    let arr = arr.cast::<PyArrayDyn<T>>()?;
    let ro = arr.readonly();
    // `as_slice` also hands out a Fortran-ordered array's memory, which is column-major: only a
    // C-contiguous array's memory is already in the order the tensor needs.
    if arr.is_c_contiguous() {
        if let Ok(s) = ro.as_slice() {
            return Ok(s.to_vec());
        }
    }
    Ok(ro.as_array().iter().copied().collect())
}

/// The element type NumPy calls `name`.
fn dtype_of_numpy_name(name: &str) -> Option<DType> {
    Some(match name {
        "float64" => DType::F64,
        "float32" => DType::F32,
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "int64" => DType::I64,
        "int32" => DType::I32,
        "int16" => DType::I16,
        "int8" => DType::I8,
        "uint64" => DType::U64,
        "uint32" => DType::U32,
        "uint16" => DType::U16,
        "uint8" => DType::U8,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// An array-like as NumPy holds it.
pub enum HostArray<'py> {
    /// A NumPy array of the object's own dtype.
    Array(Bound<'py, PyAny>),
    /// A PyTorch `bfloat16` tensor's bit patterns, as a `uint16` array (NumPy has no bfloat16
    /// of its own).
    Bf16Bits(Bound<'py, PyAny>),
}

impl<'py> HostArray<'py> {
    /// The array's element type as NumPy names it (`bfloat16` for the bit patterns).
    pub fn dtype_name(&self) -> PyResult<String> {
        match self {
            HostArray::Array(a) => a.getattr("dtype")?.getattr("name")?.extract(),
            HostArray::Bf16Bits(_) => Ok("bfloat16".to_string()),
        }
    }

    /// NumPy's kind letter of the element type (`f` for bfloat16).
    pub fn kind(&self) -> PyResult<String> {
        match self {
            HostArray::Array(a) => a.getattr("dtype")?.getattr("kind")?.extract(),
            HostArray::Bf16Bits(_) => Ok("f".to_string()),
        }
    }

    /// The array's shape.
    pub fn shape(&self) -> PyResult<Vec<usize>> {
        match self {
            HostArray::Array(a) | HostArray::Bf16Bits(a) => a.getattr("shape")?.extract(),
        }
    }

    /// The values as float32 (exact for bfloat16), for the FL codecs.
    pub fn as_f32(&self) -> PyResult<Bound<'py, PyAny>> {
        match self {
            HostArray::Array(a) => Ok(a.clone()),
            HostArray::Bf16Bits(bits) => {
                let np = bits.py().import("numpy")?;
                let wide = bits.call_method1("astype", (np.getattr("uint32")?,))?;
                np.call_method1("left_shift", (wide, 16))?
                    .call_method1("view", (np.getattr("float32")?,))
            }
        }
    }
}

/// Whether `obj` is a PyTorch tensor: `torch.Tensor` or a subclass of it (`nn.Parameter`, or a
/// user's own), found by name so that torch need not be imported.
fn is_torch_tensor(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    for class in obj.get_type().mro().iter() {
        let module: String = class.getattr("__module__")?.extract().unwrap_or_default();
        let name: String = class.getattr("__name__")?.extract().unwrap_or_default();
        if module == "torch" && name == "Tensor" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `obj` as a NumPy array. A PyTorch tensor is detached from autograd and copied to the CPU
/// first (what `tensor.detach().cpu().numpy()` does), so parameters and GPU tensors are taken
/// as their values.
pub fn host_array<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<HostArray<'py>> {
    let py = obj.py();
    if !is_torch_tensor(obj)? {
        return Ok(HostArray::Array(
            py.import("numpy")?.call_method1("asarray", (obj,))?,
        ));
    }
    let t = obj.call_method0("detach")?.call_method0("cpu")?;
    let torch_dtype = t.getattr("dtype")?.str()?.to_string();
    let refused = |e: PyErr| {
        invalid(format!(
            "tensor {name:?}: a PyTorch tensor of {torch_dtype} cannot be coded ({})",
            e.value(py)
        ))
    };
    if torch_dtype == "torch.bfloat16" {
        let torch = py.import("torch")?;
        let bits = t
            .call_method0("contiguous")?
            .call_method1("view", (torch.getattr("int16")?,))?
            .call_method0("numpy")
            .map_err(refused)?
            .call_method1("view", ("uint16",))?;
        return Ok(HostArray::Bf16Bits(bits));
    }
    Ok(HostArray::Array(t.call_method0("numpy").map_err(refused)?))
}

/// Reads one array-like object as the tensor `name`.
pub fn tensor_from_py(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    tensor_from_host(name, host_array(name, obj)?)
}

/// Copies an array as NumPy holds it into the tensor `name`.
fn tensor_from_host(name: &str, host: HostArray<'_>) -> PyResult<Tensor> {
    let mut arr = match host {
        HostArray::Array(arr) => arr,
        HostArray::Bf16Bits(bits) => {
            let shape: Vec<usize> = bits.getattr("shape")?.extract()?;
            let data = TensorData::BF16(read::<u16>(&bits)?);
            return Tensor::try_new(name, shape, data)
                .map_err(|e| invalid(format!("tensor {name:?}: {e}")));
        }
    };
    let np = arr.py().import("numpy")?;
    let dtype = arr.getattr("dtype")?;
    if !dtype.getattr("isnative")?.extract::<bool>()? {
        let native = dtype.call_method1("newbyteorder", ("=",))?;
        arr = arr.call_method1("astype", (native,))?;
    }
    let dtype_name: String = arr.getattr("dtype")?.getattr("name")?.extract()?;
    let dtype = dtype_of_numpy_name(&dtype_name).ok_or_else(|| {
        invalid(format!(
            "tensor {name:?}: element type {dtype_name} cannot be coded (use a float, integer or bool array)"
        ))
    })?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let bits16 = |a: &Bound<'_, PyAny>| -> PyResult<Vec<u16>> {
        read::<u16>(&a.call_method1("view", (np.getattr("uint16")?,))?)
    };
    let data = match dtype {
        DType::F64 => TensorData::F64(read(&arr)?),
        DType::F32 => TensorData::F32(read(&arr)?),
        DType::F16 => TensorData::F16(bits16(&arr)?),
        DType::BF16 => TensorData::BF16(bits16(&arr)?),
        DType::I64 => TensorData::I64(read(&arr)?),
        DType::I32 => TensorData::I32(read(&arr)?),
        DType::I16 => TensorData::I16(read(&arr)?),
        DType::I8 => TensorData::I8(read(&arr)?),
        DType::U64 => TensorData::U64(read(&arr)?),
        DType::U32 => TensorData::U32(read(&arr)?),
        DType::U16 => TensorData::U16(read(&arr)?),
        DType::U8 => TensorData::U8(read(&arr)?),
        DType::Bool => TensorData::Bool(read(&arr)?),
        _ => {
            return Err(invalid(format!(
                "tensor {name:?}: element type {dtype_name} cannot be coded"
            )))
        }
    };
    Tensor::try_new(name, shape, data).map_err(|e| invalid(format!("tensor {name:?}: {e}")))
}

/// Reads the encoder's input: a mapping of names to arrays (in its iteration order), or one
/// array-like, which is named `single_name` (the reference tensor pipeline's `tensor_id`).
pub fn tensors_from_py(obj: &Bound<'_, PyAny>, single_name: &str) -> PyResult<Vec<Tensor>> {
    let mut out = Vec::new();
    for_each_input(obj, single_name, |name, value| {
        out.push(tensor_from_py(name, value)?);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f` on each named array-like of the encoder's input (see [`tensors_from_py`]).
fn for_each_input<'py>(
    obj: &Bound<'py, PyAny>,
    single_name: &str,
    mut f: impl FnMut(&str, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    let Ok(map) = obj.cast::<PyMapping>() else {
        return f(single_name, obj);
    };
    let mut any = false;
    for item in map.items()?.iter() {
        let (key, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item.extract()?;
        let name: String = key
            .extract()
            .map_err(|_| invalid(format!("tensor names must be str, got {key:?}")))?;
        f(&name, &value)?;
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(invalid("no tensors to encode"))
    }
}

/// The encoder's input with its float32 and int32 arrays lent: each C-contiguous NumPy array
/// of native float32 or int32 (a CPU PyTorch tensor's too, which shares its memory) is read
/// where it lies, held read-only for the call; every other array-like is copied into a tensor
/// as [`tensors_from_py`] copies it. Nothing is converted differently.
pub struct LentInputs<'py> {
    arrays: Vec<LentArray<'py>>,
    slots: Vec<Slot>,
}

enum LentArray<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    I32(PyReadonlyArrayDyn<'py, i32>),
}

enum Slot {
    /// `arrays[index]`, under this name and shape.
    Lent(usize, String, Vec<usize>),
    Copied(Tensor),
}

impl<'py> LentInputs<'py> {
    /// Reads the input as [`tensors_from_py`] does, lending what can be lent.
    pub fn from_py(obj: &Bound<'py, PyAny>, single_name: &str) -> PyResult<Self> {
        let mut inputs = LentInputs {
            arrays: Vec::new(),
            slots: Vec::new(),
        };
        for_each_input(obj, single_name, |name, value| {
            let host = host_array(name, value)?;
            let slot = match lendable(&host) {
                Some(array) => {
                    let shape = match &array {
                        LentArray::F32(a) => a.shape().to_vec(),
                        LentArray::I32(a) => a.shape().to_vec(),
                    };
                    inputs.arrays.push(array);
                    Slot::Lent(inputs.arrays.len() - 1, name.to_string(), shape)
                }
                None => Slot::Copied(tensor_from_host(name, host)?),
            };
            inputs.slots.push(slot);
            Ok(())
        })?;
        Ok(inputs)
    }

    /// The tensors for the encoder, the lent ones borrowed from `self`. The copied tensors move
    /// out, so a second call gives none.
    pub fn sources(&mut self) -> PyResult<Vec<TensorSource<'_>>> {
        let slots = std::mem::take(&mut self.slots);
        let arrays = &self.arrays;
        slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Copied(t) => Ok(TensorSource::from(t)),
                Slot::Lent(i, name, shape) => {
                    let data = match &arrays[i] {
                        LentArray::F32(a) => ParameterData::F32(Elements::Borrowed(a.as_slice()?)),
                        LentArray::I32(a) => ParameterData::I32(Elements::Borrowed(a.as_slice()?)),
                    };
                    NamedElements::try_new(name.as_str(), shape, data)
                        .map(TensorSource::from)
                        .map_err(|e| invalid(format!("tensor {name:?}: {e}")))
                }
            })
            .collect()
    }
}

/// `host` held read-only as a lent array, if it is a C-contiguous NumPy array of native
/// float32 or int32 (byte-swapped arrays do not cast to the native element types).
fn lendable<'py>(host: &HostArray<'py>) -> Option<LentArray<'py>> {
    let HostArray::Array(array) = host else {
        return None;
    };
    if let Ok(a) = array.cast::<PyArrayDyn<f32>>() {
        return a
            .is_c_contiguous()
            .then(|| a.try_readonly().ok().map(LentArray::F32))
            .flatten();
    }
    let a = array.cast::<PyArrayDyn<i32>>().ok()?;
    a.is_c_contiguous()
        .then(|| a.try_readonly().ok().map(LentArray::I32))
        .flatten()
}

/// Makes a NumPy array of `values` with `shape`.
fn array<'py, T: numpy::Element>(
    py: Python<'py>,
    values: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, values)
        .reshape(shape.to_vec())?
        .into_any())
}

/// A bytes-like argument as `bytes`: `bytes` as it is, a `bytearray` or `memoryview` (of a
/// `mmap`, say) copied once. Anything else is a `TypeError` (not `bytes(x)`, which would turn an
/// integer into that many zero bytes).
pub fn bytes_like<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.clone());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(PyBytes::new(obj.py(), &b.to_vec()));
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        return Ok(obj.py().get_type::<PyBytes>().call1((obj,))?.cast_into()?);
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray or memoryview, not {}",
        obj.get_type().name()?
    )))
}

/// Converts a tensor into a NumPy array of its own dtype, handing its memory to NumPy (no copy
/// except for float16/bfloat16 views). `bfloat16` needs the `ml_dtypes` package; without it the
/// values come back as `float32` (exactly).
pub fn tensor_to_py(py: Python<'_>, t: Tensor) -> PyResult<Bound<'_, PyAny>> {
    let Tensor { name, shape, data } = t;
    let shape = shape.as_slice();
    match data {
        TensorData::F64(v) => array(py, v, shape),
        TensorData::F32(v) => array(py, v, shape),
        TensorData::F16(v) => array(py, v, shape)?.call_method1("view", ("float16",)),
        TensorData::BF16(v) => match py.import("ml_dtypes") {
            Ok(ml) => array(py, v, shape)?.call_method1("view", (ml.getattr("bfloat16")?,)),
            Err(_) => {
                let wide = TensorData::BF16(v)
                    .as_f32_lossless()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                array(py, wide, shape)
            }
        },
        TensorData::I64(v) => array(py, v, shape),
        TensorData::I32(v) => array(py, v, shape),
        TensorData::I16(v) => array(py, v, shape),
        TensorData::I8(v) => array(py, v, shape),
        TensorData::U64(v) => array(py, v, shape),
        TensorData::U32(v) => array(py, v, shape),
        TensorData::U16(v) => array(py, v, shape),
        TensorData::U8(v) => array(py, v, shape),
        TensorData::Bool(v) => array(py, v, shape),
        other => Err(invalid(format!(
            "tensor {name:?}: element type {} has no NumPy equivalent",
            other.dtype().numpy_name()
        ))),
    }
}

/// Converts decoded tensors into a `dict` of arrays, in the stream's order.
pub fn tensors_to_dict(py: Python<'_>, tensors: Vec<Tensor>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for t in tensors {
        let name = t.name.clone();
        out.set_item(name, tensor_to_py(py, t)?)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_names_map_back_to_every_dtype() {
        for d in [
            DType::F64,
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::I64,
            DType::I32,
            DType::I16,
            DType::I8,
            DType::U64,
            DType::U32,
            DType::U16,
            DType::U8,
            DType::Bool,
        ] {
            assert_eq!(dtype_of_numpy_name(d.numpy_name()), Some(d));
        }
        assert_eq!(dtype_of_numpy_name("complex64"), None);
        assert_eq!(dtype_of_numpy_name("object"), None);
    }
}
