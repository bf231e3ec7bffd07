//! NNR unit framing and header syntax (nnc-bitstream): split the input into units and parse each
//! with the context of the earlier ones. A parsed unit that re-encodes must parse back and
//! re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_bitstream::{encode_unit_with_header, parse_unit, ParseContext, SideInfo, UnitReader};

fuzz_target!(|data: &[u8]| {
    let side = SideInfo::new().with_tensor_dimensions("0", vec![4, 4]);
    let mut units = UnitReader::new(data);
    let mut ctx = ParseContext::default();
    while let Ok(Some(raw)) = units.next() {
        let Ok(parsed) = parse_unit(raw, &mut ctx, &side) else {
            break;
        };
        let _ = parsed.to_hls_json();
        if let Ok(bytes) = encode_unit_with_header(&parsed.header, &parsed.unit, &parsed.context) {
            let mut again = UnitReader::new(&bytes);
            let mut raw2 = again
                .next()
                .ok()
                .flatten()
                .expect("a re-encoded unit frames");
            // Same position in the stream, so the unit-order rules see the same situation.
            raw2.index = raw.index;
            let ctx_before = parsed.context;
            let mut ctx2 = parsed.context;
            let reparsed = parse_unit(raw2, &mut ctx2, &side).expect("a re-encoded unit parses");
            // Compared as bytes: a unit may hold NaN floats, which never compare equal.
            let bytes2 = encode_unit_with_header(&reparsed.header, &reparsed.unit, &ctx_before)
                .expect("a re-parsed unit re-encodes");
            assert_eq!(bytes2, bytes, "re-encoding is not stable");
        }
    }
});
