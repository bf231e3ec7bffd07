//! Named values of NNR syntax elements (hls.md §2.10, §2.6, §2.9).

/// `compressed_parameter_types` bit: low-rank decomposition (W = G·H).
pub const NNR_CPT_DC: u8 = 0x01;
/// `compressed_parameter_types` bit: local scaling vector.
pub const NNR_CPT_LS: u8 = 0x02;
/// `compressed_parameter_types` bit: batch-norm parameters (beta, gamma, mean, var).
pub const NNR_CPT_BN: u8 = 0x04;
/// `compressed_parameter_types` bit: bias.
pub const NNR_CPT_BI: u8 = 0x08;

/// `*_quantization_method_flags` bit: scalar uniform quantisation.
pub const NNR_QSU: u8 = 1;
/// `*_quantization_method_flags` bit: codebook quantisation.
pub const NNR_QCB: u8 = 2;

/// `topology_storage_format`: unrecognised / none.
pub const NNR_TPL_UNREC: u8 = 0;
/// `topology_storage_format`: NNEF.
pub const NNR_TPL_NNEF: u8 = 1;
/// `topology_storage_format`: ONNX.
pub const NNR_TPL_ONNX: u8 = 2;
/// `topology_storage_format`: PyTorch.
pub const NNR_TPL_PYT: u8 = 3;
/// `topology_storage_format`: TensorFlow.
pub const NNR_TPL_TEF: u8 = 4;
/// `topology_storage_format`: pruning topology container (not implemented by the reference).
pub const NNR_TPL_PRUN: u8 = 5;
/// `topology_storage_format`: list of topology element ids.
pub const NNR_TPL_REFLIST: u8 = 6;

/// `topology_compression_format`: raw.
pub const NNR_PT_RAW: u8 = 0;
/// `topology_compression_format`: deflate.
pub const NNR_DFL: u8 = 1;

/// `parent_node_id_type`: parent identified by device id, parameter id and depth.
pub const ICNN_NDU_ID: u8 = 0;
/// `parent_node_id_type`: parent identified by the SHA-256 of its payload.
pub const ICNN_NDU_PL_SHA256: u8 = 1;
/// `parent_node_id_type`: parent identified by the SHA-512 of its payload.
pub const ICNN_NDU_PL_SHA512: u8 = 2;

/// `nnr_decompressed_data_format`: 32-bit float.
pub const TENSOR_FLOAT32: u8 = 1;

/// `cabac_unary_length_minus1` the reference decoder assumes when it is not transmitted.
pub const DEFAULT_CABAC_UNARY_LENGTH_MINUS1: u8 = 9;
