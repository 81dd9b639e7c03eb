//! How the derive encodes each field of a model. Most fields go through
//! bincode's own `Encode`/`Decode`; identities (`PeerId`, `PublicKey`, and
//! `Option`s and `Vec`s of them), which bincode does not know, are encoded
//! as their bytes. Generated code picks between the two by method
//! resolution on the field's concrete type ("autoref specialisation"): an
//! identity's impl is found before the blanket bincode one, which needs one
//! more reference. Not public API.

use core::marker::PhantomData;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use libp2p_identity::{PeerId, PublicKey};

/// A field to encode: `(&Field(&self.x)).encode_field(encoder)`.
pub struct Field<'a, T: ?Sized>(pub &'a T);

/// A field type to decode: `(&Tag::<T>::new()).decode_field(decoder)`.
pub struct Tag<T>(PhantomData<fn() -> T>);

impl<T> Tag<T> {
    /// The tag of `T`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Tag(PhantomData)
    }
}

/// Encoding through bincode: every type with `Encode`.
pub trait EncodeAny {
    /// Encodes the field.
    ///
    /// # Errors
    ///
    /// What the field's encoding reports.
    fn encode_field<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError>;
}

impl<T: Encode + ?Sized> EncodeAny for &Field<'_, T> {
    #[inline]
    fn encode_field<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.0.encode(encoder)
    }
}

/// Decoding through bincode: every type with `Decode`.
pub trait DecodeAny<T> {
    /// Decodes the field.
    ///
    /// # Errors
    ///
    /// What the field's decoding reports.
    fn decode_field<D: Decoder>(&self, decoder: &mut D) -> Result<T, DecodeError>
    where
        T: Decode<D::Context>;
}

impl<T> DecodeAny<T> for &Tag<T> {
    #[inline]
    fn decode_field<D: Decoder>(&self, decoder: &mut D) -> Result<T, DecodeError>
    where
        T: Decode<D::Context>,
    {
        T::decode(decoder)
    }
}

/// An identity bincode cannot encode, as bytes.
pub trait Identity: Sized {
    /// The identity's bytes.
    fn to_field_bytes(&self) -> Vec<u8>;
    /// The identity from its bytes.
    ///
    /// # Errors
    ///
    /// If the bytes are no such identity.
    fn from_field_bytes(bytes: &[u8]) -> Result<Self, DecodeError>;
}

impl Identity for PeerId {
    fn to_field_bytes(&self) -> Vec<u8> {
        self.to_bytes()
    }

    fn from_field_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        PeerId::from_bytes(bytes)
            .map_err(|e| DecodeError::OtherString(format!("not a peer id: {e}")))
    }
}

impl Identity for PublicKey {
    fn to_field_bytes(&self) -> Vec<u8> {
        self.encode_protobuf()
    }

    fn from_field_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        PublicKey::try_decode_protobuf(bytes)
            .map_err(|e| DecodeError::OtherString(format!("not a public key: {e}")))
    }
}

/// Encoding an identity field (or an `Option` or `Vec` of them) as bytes.
pub trait EncodeIdentity {
    /// Encodes the field.
    ///
    /// # Errors
    ///
    /// What the encoder reports.
    fn encode_field<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError>;
}

/// Decoding an identity field (or an `Option` or `Vec` of them).
pub trait DecodeIdentity<T> {
    /// Decodes the field.
    ///
    /// # Errors
    ///
    /// If the bytes are not a valid identity.
    fn decode_field<D: Decoder>(&self, decoder: &mut D) -> Result<T, DecodeError>;
}

macro_rules! identity_fields {
    ($($id:ty),*) => {$(
        impl EncodeIdentity for Field<'_, $id> {
            fn encode_field<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
                self.0.to_field_bytes().encode(encoder)
            }
        }
        impl DecodeIdentity<$id> for Tag<$id> {
            fn decode_field<D: Decoder>(&self, decoder: &mut D) -> Result<$id, DecodeError> {
                let bytes: Vec<u8> = Decode::decode(&mut *decoder)?;
                <$id>::from_field_bytes(&bytes)
            }
        }
        impl EncodeIdentity for Field<'_, Option<$id>> {
            fn encode_field<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
                self.0.as_ref().map(Identity::to_field_bytes).encode(encoder)
            }
        }
        impl DecodeIdentity<Option<$id>> for Tag<Option<$id>> {
            fn decode_field<D: Decoder>(&self, decoder: &mut D) -> Result<Option<$id>, DecodeError> {
                let bytes: Option<Vec<u8>> = Decode::decode(&mut *decoder)?;
                bytes.map(|b| <$id>::from_field_bytes(&b)).transpose()
            }
        }
        impl EncodeIdentity for Field<'_, Vec<$id>> {
            fn encode_field<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
                let all: Vec<Vec<u8>> = self.0.iter().map(Identity::to_field_bytes).collect();
                all.encode(encoder)
            }
        }
        impl DecodeIdentity<Vec<$id>> for Tag<Vec<$id>> {
            fn decode_field<D: Decoder>(&self, decoder: &mut D) -> Result<Vec<$id>, DecodeError> {
                let all: Vec<Vec<u8>> = Decode::decode(&mut *decoder)?;
                all.iter().map(|b| <$id>::from_field_bytes(b)).collect()
            }
        }
    )*};
}

identity_fields!(PeerId, PublicKey);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(value: T) -> T
    where
        T: Clone,
        for<'a> Field<'a, T>: EncodeIdentity,
        Tag<T>: DecodeIdentity<T>,
    {
        let config = bincode::config::standard();
        let bytes = {
            let mut out = Vec::new();
            let mut encoder = bincode::enc::EncoderImpl::new(VecWriter(&mut out), config);
            Field(&value).encode_field(&mut encoder).unwrap();
            out
        };
        let mut decoder =
            bincode::de::DecoderImpl::new(bincode::de::read::SliceReader::new(&bytes), config, ());
        Tag::<T>::new().decode_field(&mut decoder).unwrap()
    }

    struct VecWriter<'a>(&'a mut Vec<u8>);

    impl bincode::enc::write::Writer for VecWriter<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }

    #[test]
    fn identities_round_trip_and_garbage_is_refused() {
        let peer = PeerId::random();
        assert_eq!(round_trip(peer), peer);
        assert_eq!(round_trip(Some(peer)), Some(peer));
        assert_eq!(round_trip(vec![peer, PeerId::random()]).len(), 2);
        let key = libp2p_identity::Keypair::generate_ed25519().public();
        assert_eq!(round_trip(key.clone()), key);
        let config = bincode::config::standard();
        let garbage = bincode::encode_to_vec(vec![1u8, 2, 3], config).unwrap();
        let mut decoder = bincode::de::DecoderImpl::new(
            bincode::de::read::SliceReader::new(&garbage),
            config,
            (),
        );
        assert!(Tag::<PeerId>::new().decode_field(&mut decoder).is_err());
    }
}
