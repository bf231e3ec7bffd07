//! What to add to a failed command's message: the option or the order of calls that the
//! input needed (its dimensions, HDSP, the state of a sequence's earlier streams).

/// The pipeline's error behind `e`, if one is.
fn tensor_error(e: &anyhow::Error) -> Option<&nnc_tensor::Error> {
    e.chain()
        .find_map(|c| c.downcast_ref::<nnc_tensor::Error>())
}

/// A stream that leaves a tensor's dimensions out needs them from the command line.
pub fn side_information(e: &anyhow::Error) -> Option<String> {
    match tensor_error(e)? {
        nnc_tensor::Error::Syntax {
            source: nnc_bitstream::Error::MissingSideInformation { name },
            ..
        } => Some(format!(
            "give them with --tensor-dims {name}=D1xD2x..., as the encoder had them"
        )),
        _ => None,
    }
}

/// An update that does not continue the encoder's state file.
pub fn encoder_state(e: &anyhow::Error) -> Option<String> {
    match tensor_error(e)? {
        nnc_tensor::Error::EncoderState { .. } => Some(
            "a --state file follows one sender's updates in order: give the --device-id of its \
             earlier updates and code each update once, in order, or start another --state file"
                .into(),
        ),
        _ => None,
    }
}

/// What a failed `nnc decode` was given, to say what it may have lacked.
pub struct DecodeCall {
    pub state_given: bool,
    pub hdsp_given: bool,
}

impl DecodeCall {
    pub fn hint(&self, e: &anyhow::Error) -> Option<&'static str> {
        let cause = tensor_error(e)?;
        if let nnc_tensor::Error::Cabac {
            source: nnc_cabac::Error::HdspNotAvailable,
            ..
        } = cause
        {
            return Some(match (self.hdsp_given, self.state_given) {
                (false, _) => {
                    "decode it with --hdsp, in order after its sequence's earlier streams, \
                     each with the same --state FILE"
                }
                (true, false) => {
                    "the history is in the state: decode the sequence in order, each stream \
                     with --hdsp and the same --state FILE"
                }
                (true, true) => {
                    "the state file must come from decoding this sequence's earlier streams, \
                     in order, with --hdsp"
                }
            });
        }
        if cause.kind() == nnc_tensor::ErrorKind::StateMismatch {
            return Some(if self.state_given {
                "the state file must come from decoding this sequence's earlier streams, in order"
            } else {
                "this stream continues a sequence of updates: decode the sequence in order, \
                 each stream with the same --state FILE"
            });
        }
        None
    }
}
