//! `impl NetabaseModel`: name, index list, key and index extraction.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{names, private};
use crate::ast::{Model, Role};
use crate::keyty::Shape;

pub fn expand(model: &Model) -> TokenStream {
    let Some(primary) = model.primary() else {
        return TokenStream::new();
    };
    let p = private();
    let ident = model.ident;
    let name = ident.to_string();
    // Table names are part of the on-disk format: renaming a model moves its data.
    let table = format!("netabase/{name}/records");
    let key = names::primary_key(model);
    let enum_ident = names::secondary_enum(model);
    let pk_field = primary.ident;

    let mut specs = Vec::new();
    let mut entries = Vec::new();
    let mut secondary_keys = Vec::new();
    for (index, field) in model.secondaries().enumerate() {
        let Role::Secondary { unique, shape, .. } = &field.role else {
            continue;
        };
        let field_name = field.name();
        let table = format!("netabase/{name}/index/{field_name}");
        specs.push(quote! {
            #p::IndexSpec { name: #field_name, table: #table, unique: #unique }
        });
        let f = field.ident;
        // Spanned on the field's type so a non-key type is reported there.
        let ty_span = field.ty.span();
        let field_key = names::field_key(model, field);
        let variant = names::variant(field);
        let make_key = quote! {
            #enum_ident::#variant(#field_key(::core::clone::Clone::clone(value)))
        };
        match shape {
            Shape::Single => {
                entries.push(
                    quote_spanned! {ty_span=> #p::IndexEntries::push(out, #index, &self.#f); },
                );
                secondary_keys.push(quote! {
                    { let value = &self.#f; keys.push(#make_key); }
                });
            }
            Shape::Optional => {
                entries.push(quote! {
                    if let ::core::option::Option::Some(value) = &self.#f {
                        #p::IndexEntries::push(out, #index, value);
                    }
                });
                secondary_keys.push(quote! {
                    if let ::core::option::Option::Some(value) = &self.#f {
                        keys.push(#make_key);
                    }
                });
            }
            Shape::Many => {
                entries.push(quote! {
                    for value in &self.#f {
                        #p::IndexEntries::push(out, #index, value);
                    }
                });
                secondary_keys.push(quote! {
                    for value in &self.#f {
                        keys.push(#make_key);
                    }
                });
            }
        }
    }

    quote! {
        #[automatically_derived]
        impl #p::NetabaseModel for #ident {
            const NAME: &'static str = #name;
            const TABLE: &'static str = #table;
            const INDEXES: &'static [#p::IndexSpec] = &[#(#specs),*];
            type Key = #key;
            type SecondaryKey = #enum_ident;

            #[inline]
            fn key(&self) -> #key {
                #key(::core::clone::Clone::clone(&self.#pk_field))
            }

            #[inline]
            fn encode_key(&self, out: &mut #p::KeyBuf) {
                #p::KeyEncode::encode_key(&self.#pk_field, out)
            }

            #[inline]
            fn index_entries(&self, out: &mut #p::IndexEntries) {
                #(#entries)*
            }

            fn secondary_keys(&self) -> #p::Vec<#enum_ident> {
                let mut keys = #p::Vec::new();
                #(#secondary_keys)*
                keys
            }
        }
    }
}
