//! bincode 2 `Encode`/`Decode`/`BorrowDecode`, field by field in declaration
//! order. Generated here rather than by bincode's derive so the user's crate
//! needs no `bincode` dependency and no `#[bincode(crate = ..)]` attribute.

use proc_macro2::TokenStream;
use quote::quote;

use super::private;
use crate::ast::Model;

pub fn expand(model: &Model) -> TokenStream {
    let p = private();
    let ident = model.ident;
    let fields: Vec<_> = model.fields.iter().map(|f| f.ident).collect();
    let types: Vec<_> = model.fields.iter().map(|f| f.ty).collect();
    quote! {
        #[automatically_derived]
        impl #p::bincode::Encode for #ident {
            fn encode<__E: #p::bincode::enc::Encoder>(
                &self,
                encoder: &mut __E,
            ) -> ::core::result::Result<(), #p::bincode::error::EncodeError> {
                #( <#types as #p::bincode::Encode>::encode(&self.#fields, encoder)?; )*
                ::core::result::Result::Ok(())
            }
        }

        #[automatically_derived]
        impl<__Ctx> #p::bincode::Decode<__Ctx> for #ident {
            fn decode<__D: #p::bincode::de::Decoder<Context = __Ctx>>(
                decoder: &mut __D,
            ) -> ::core::result::Result<Self, #p::bincode::error::DecodeError> {
                ::core::result::Result::Ok(Self {
                    #( #fields: <#types as #p::bincode::Decode<__Ctx>>::decode(decoder)?, )*
                })
            }
        }

        #[automatically_derived]
        impl<'__de, __Ctx> #p::bincode::BorrowDecode<'__de, __Ctx> for #ident {
            fn borrow_decode<__D: #p::bincode::de::BorrowDecoder<'__de, Context = __Ctx>>(
                decoder: &mut __D,
            ) -> ::core::result::Result<Self, #p::bincode::error::DecodeError> {
                ::core::result::Result::Ok(Self {
                    #( #fields: <#types as #p::bincode::BorrowDecode<'__de, __Ctx>>::borrow_decode(decoder)?, )*
                })
            }
        }
    }
}
