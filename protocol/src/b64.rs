//! Base64 as the wire uses it: the standard alphabet **with** `=` padding
//! (Go's `[]byte` JSON encoding), plus the serde adapter for byte fields.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Encodes bytes as standard base64 with padding.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 with padding.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

/// Serde adapter: `Vec<u8>` <-> base64 string.
pub(crate) mod serde_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::decode(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_with_padding() {
        let text = super::encode(b"OK\n");
        assert_eq!(text, "T0sK");
        assert_eq!(super::encode(b"a"), "YQ==");
        assert_eq!(super::decode("YQ==").unwrap(), b"a");
    }

    #[test]
    fn rejects_garbage() {
        assert!(super::decode("not base64!").is_err());
    }
}
