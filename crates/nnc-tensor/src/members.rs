//! Which tensors an NDU carries, in CABAC coding order, with their shapes (hls.md §4.1).

use nnc_bitstream::NduHeader;

/// `compressed_parameter_types` bits (hls.md §2.10b).
pub mod cpt {
    /// Low-rank decomposition W = G·H.
    pub const DC: u8 = 0x01;
    /// Local scaling vector.
    pub const LS: u8 = 0x02;
    /// Batch-norm beta, gamma, mean, var.
    pub const BN: u8 = 0x04;
    /// Bias.
    pub const BI: u8 = 0x08;
}

/// Role of a tensor inside an NDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    /// A stand-alone tensor (non-block NDU).
    Single,
    /// Block weight.
    Weight,
    /// Low-rank factor G of the block weight.
    FactorG,
    /// Low-rank factor H of the block weight.
    FactorH,
    /// Local scaling vector.
    LocalScaling,
    /// Bias.
    Bias,
    /// Batch-norm beta, gamma, mean or var.
    BatchNorm,
}

impl MemberRole {
    /// Whether this member is a weight (or one of its low-rank factors).
    pub fn is_weight(self) -> bool {
        matches!(
            self,
            MemberRole::Weight | MemberRole::FactorG | MemberRole::FactorH
        )
    }
}

/// One tensor coded in an NDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Name as carried by the NDU.
    pub name: String,
    /// Shape of the coded array.
    pub dims: Vec<u64>,
    /// Role in the block.
    pub role: MemberRole,
}

/// The members of an NDU in CABAC coding order, or why they cannot be derived.
///
/// `split_factor` says which factor a non-block NDU with the DC bit carries (the reference tracks
/// this across NDUs: G first, then H).
pub fn members(
    header: &NduHeader,
    split_factor: Option<MemberRole>,
) -> Result<Vec<Member>, String> {
    let dims = header.tensor_dimensions.clone();
    let cpt_bits = header.compressed_parameter_types;
    let factor_dims = |role: MemberRole| -> Result<Vec<u64>, String> {
        let rank = header
            .decomposition_rank
            .ok_or("decomposition_rank missing")?;
        let rows = header.g_number_of_rows.ok_or("g_number_of_rows missing")?;
        let total: u64 = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or("dimensions overflow")?;
        if rows == 0 || rank == 0 {
            return Err("zero decomposition rank or rows".into());
        }
        Ok(match role {
            MemberRole::FactorG => vec![rows, rank],
            _ => vec![rank, total / rows],
        })
    };
    if !is_block(header) {
        let name = header
            .topology_elem_id
            .clone()
            .ok_or("NDU without topology_elem_id")?;
        if header.nnr_multiple_topology_elements_present_flag {
            return Err("tensor split over several NDUs is not supported".into());
        }
        let (role, dims) = match split_factor {
            Some(role) if cpt_bits & cpt::DC != 0 => (role, factor_dims(role)?),
            _ => (MemberRole::Single, dims.clone()),
        };
        return Ok(vec![Member { name, dims, role }]);
    }
    let names = header
        .topology_elem_id_list
        .as_ref()
        .ok_or("block NDU without topology_elem_id_list")?;
    // Name-list index of each coding-order member (hls.md §4.1).
    let dc = usize::from(cpt_bits & cpt::DC != 0);
    let ls = usize::from(cpt_bits & cpt::LS != 0);
    let bn = if cpt_bits & cpt::BN != 0 { 4 } else { 0 };
    let first = dims
        .first()
        .copied()
        .ok_or("block NDU without dimensions")?;
    let mut out = Vec::new();
    let mut push = |index: usize, dims: Vec<u64>, role: MemberRole| -> Result<(), String> {
        let name = names
            .get(index)
            .ok_or_else(|| format!("topology_elem_id_list has no element {index}"))?;
        out.push(Member {
            name: name.clone(),
            dims,
            role,
        });
        Ok(())
    };
    if ls == 1 {
        push(1 + dc, vec![first], MemberRole::LocalScaling)?;
    }
    if cpt_bits & cpt::BI != 0 {
        push(1 + dc + ls + bn, vec![first], MemberRole::Bias)?;
    }
    if bn != 0 {
        for i in 0..4 {
            push(1 + dc + ls + i, vec![first], MemberRole::BatchNorm)?;
        }
    }
    if dc == 1 {
        push(0, factor_dims(MemberRole::FactorG)?, MemberRole::FactorG)?;
        push(1, factor_dims(MemberRole::FactorH)?, MemberRole::FactorH)?;
    } else {
        push(0, dims.clone(), MemberRole::Weight)?;
    }
    if out.len() != names.len() {
        return Err(format!(
            "{} names for {} coded tensors",
            names.len(),
            out.len()
        ));
    }
    Ok(out)
}

/// Whether the NDU carries a block of tensors (`NNR_PT_BLOCK`).
pub fn is_block(header: &NduHeader) -> bool {
    header.nnr_compressed_data_unit_payload_type == nnc_bitstream::PayloadType::Block
}
