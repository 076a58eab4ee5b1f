//! The opt-in binary stream-data message (capability
//! [`caps::BINARY_STREAM`](crate::caps::BINARY_STREAM)).
//!
//! With the extension negotiated, the agent may send the data of a
//! `stream` frame as one binary WebSocket message instead of JSON with
//! base64: no base64 (a third fewer bytes), no JSON escaping scan, no UTF-8
//! validation, and the hub hands the payload on without a copy. Everything
//! else (the first chunk with the status, `stream_end`, errors) stays JSON,
//! in the same order on the one socket.
//!
//! Layout: `[kind: u8 = 1][id length: u8][request id, UTF-8][raw data…]`.
//! A message of another kind, or one too short for its header, is an error.

/// Kind byte of a stream-data message.
pub const STREAM_DATA: u8 = 1;

/// Why a binary message is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// Empty, or shorter than its header says.
    #[error("binary message truncated ({0} bytes)")]
    Truncated(usize),
    /// A kind byte this side does not know.
    #[error("unknown binary message kind {0}")]
    UnknownKind(u8),
    /// The request id is not UTF-8.
    #[error("binary message request id is not UTF-8")]
    BadId,
    /// A request id longer than 255 bytes cannot be encoded.
    #[error("request id of {0} bytes is too long for a binary message (max 255)")]
    IdTooLong(usize),
}

/// One decoded stream-data message, borrowing from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamData<'a> {
    /// The request the data belongs to.
    pub request_id: &'a str,
    /// Offset of the raw data within the message (for zero-copy slicing).
    pub data_offset: usize,
    /// The raw data.
    pub data: &'a [u8],
}

/// The header of a stream-data message for `request_id`; the caller
/// appends the data (so it can write both into one buffer).
pub fn stream_data_header(request_id: &str) -> Result<Vec<u8>, BinaryError> {
    let id = request_id.as_bytes();
    let len = u8::try_from(id.len()).map_err(|_| BinaryError::IdTooLong(id.len()))?;
    let mut out = Vec::with_capacity(2 + id.len());
    out.push(STREAM_DATA);
    out.push(len);
    out.extend_from_slice(id);
    Ok(out)
}

/// A whole stream-data message.
pub fn encode_stream_data(request_id: &str, data: &[u8]) -> Result<Vec<u8>, BinaryError> {
    let mut out = stream_data_header(request_id)?;
    out.reserve_exact(data.len());
    out.extend_from_slice(data);
    Ok(out)
}

/// Decodes a binary message.
pub fn decode(msg: &[u8]) -> Result<StreamData<'_>, BinaryError> {
    let (&kind, rest) = msg.split_first().ok_or(BinaryError::Truncated(0))?;
    if kind != STREAM_DATA {
        return Err(BinaryError::UnknownKind(kind));
    }
    let (&len, rest) = rest
        .split_first()
        .ok_or(BinaryError::Truncated(msg.len()))?;
    let len = len as usize;
    if rest.len() < len {
        return Err(BinaryError::Truncated(msg.len()));
    }
    let request_id = std::str::from_utf8(&rest[..len]).map_err(|_| BinaryError::BadId)?;
    Ok(StreamData {
        request_id,
        data_offset: 2 + len,
        data: &rest[len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = "0b5e0c3e-7d0f-4f0e-9d43-5a8c1d2e3f40";
        let msg = encode_stream_data(id, b"\x00\x01raw").unwrap();
        let d = decode(&msg).unwrap();
        assert_eq!(d.request_id, id);
        assert_eq!(d.data, b"\x00\x01raw");
        assert_eq!(&msg[d.data_offset..], b"\x00\x01raw");
        let empty = encode_stream_data("r", b"").unwrap();
        assert_eq!(decode(&empty).unwrap().data, b"");
    }

    #[test]
    fn bad_messages_are_errors() {
        assert_eq!(decode(b""), Err(BinaryError::Truncated(0)));
        assert_eq!(decode(b"\x01"), Err(BinaryError::Truncated(1)));
        assert_eq!(decode(b"\x01\x05ab"), Err(BinaryError::Truncated(4)));
        assert_eq!(decode(b"\x07\x00"), Err(BinaryError::UnknownKind(7)));
        assert_eq!(decode(b"\x01\x01\xff"), Err(BinaryError::BadId));
        assert_eq!(
            encode_stream_data(&"x".repeat(256), b""),
            Err(BinaryError::IdTooLong(256))
        );
    }
}
