//! bincode 2 `Encode`/`Decode`/`BorrowDecode`, field by field in declaration
//! order. Generated here rather than by bincode's derive so the user's crate
//! needs no `bincode` dependency and no `#[bincode(crate = ..)]` attribute.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::private;
use crate::ast::Model;

pub fn expand(model: &Model) -> TokenStream {
    let p = private();
    let ident = model.ident;
    // Spanned on each field's type, so a type that cannot be encoded is
    // reported there.
    let encodes = model.fields.iter().map(|f| {
        let (field, ty) = (f.ident, f.ty);
        quote_spanned! {ty.span()=> (&#p::Field::<#ty>(&self.#field)).encode_field(encoder)?; }
    });
    let decodes = model.fields.iter().map(|f| {
        let (field, ty) = (f.ident, f.ty);
        quote_spanned! {ty.span()=> #field: (&#p::Tag::<#ty>::new()).decode_field(decoder)?, }
    });
    // Each field through `__private::Field`/`Tag`: bincode's own traits,
    // or for identities (`PeerId`, `PublicKey`), which bincode does not
    // know, their bytes. Method resolution picks (see `codec::field`).
    quote! {
        #[automatically_derived]
        impl #p::bincode::Encode for #ident {
            fn encode<__E: #p::bincode::enc::Encoder>(
                &self,
                encoder: &mut __E,
            ) -> ::core::result::Result<(), #p::bincode::error::EncodeError> {
                #[allow(unused_imports)]
                use #p::{EncodeAny as _, EncodeIdentity as _};
                #( #encodes )*
                ::core::result::Result::Ok(())
            }
        }

        #[automatically_derived]
        impl<__Ctx> #p::bincode::Decode<__Ctx> for #ident {
            fn decode<__D: #p::bincode::de::Decoder<Context = __Ctx>>(
                decoder: &mut __D,
            ) -> ::core::result::Result<Self, #p::bincode::error::DecodeError> {
                #[allow(unused_imports)]
                use #p::{DecodeAny as _, DecodeIdentity as _};
                ::core::result::Result::Ok(Self {
                    #( #decodes )*
                })
            }
        }

        #[automatically_derived]
        impl<'__de, __Ctx> #p::bincode::BorrowDecode<'__de, __Ctx> for #ident {
            fn borrow_decode<__D: #p::bincode::de::BorrowDecoder<'__de, Context = __Ctx>>(
                decoder: &mut __D,
            ) -> ::core::result::Result<Self, #p::bincode::error::DecodeError> {
                // A model owns its fields: decoding them owned is all there is.
                <Self as #p::bincode::Decode<__Ctx>>::decode(decoder)
            }
        }
    }
}
