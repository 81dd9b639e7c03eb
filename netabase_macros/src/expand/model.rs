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
    // The stored name is the model's identity on disk and on the wire: an
    // explicit one survives moves and renames; the default, the module path
    // plus the ident, tells apart same-named structs of different modules.
    let name = match &model.name {
        Some(name) => quote!(#name),
        None => {
            let ident = ident.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #ident))
        }
    };
    let table = quote!(::core::concat!("netabase/", #name, "/records"));
    let key = names::primary_key(model);
    let enum_ident = names::secondary_enum(model);
    let pk_field = primary.ident;
    let pk_ty = primary.ty;

    let mut specs = Vec::new();
    let mut entries = Vec::new();
    let mut secondary_keys = Vec::new();
    for (index, field) in model.secondaries().enumerate() {
        let Role::Secondary { unique, shape, .. } = &field.role else {
            continue;
        };
        let field_name = field.name();
        let table = quote!(::core::concat!("netabase/", #name, "/index/", #field_name));
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

    let schema = schema_hash(model);
    let rule = match &model.write {
        None => quote!(#p::rules::Anyone),
        Some(crate::attr::WriteAttr::Named(lit)) => match lit.value().as_str() {
            "owner" => quote!(#p::rules::Owner),
            "immutable" => quote!(#p::rules::Immutable),
            "members" => quote!(#p::rules::Members),
            _ => quote!(#p::rules::Anyone),
        },
        Some(crate::attr::WriteAttr::Custom(path)) => quote!(#path),
    };
    let owner_fn = match model.owner() {
        Some(field) => {
            let f = field.ident;
            let ty = field.ty;
            quote_spanned! {ty.span()=>
                fn owner(&self) -> ::core::option::Option<#p::PeerId> {
                    ::core::option::Option::Some(::core::clone::Clone::clone(&self.#f))
                }
            }
        }
        None => TokenStream::new(),
    };
    let versioned = versioned(model);
    quote! {
        #[automatically_derived]
        impl #p::PrimaryField for #ident {
            type Field = #pk_ty;
        }

        #[automatically_derived]
        impl #p::NetabaseModel for #ident {
            #versioned
            const NAME: &'static str = #name;
            const SCHEMA: u64 = #schema;
            const TABLE: &'static str = #table;
            const INDEXES: &'static [#p::IndexSpec] = &[#(#specs),*];
            type Key = #key;
            type SecondaryKey = #enum_ident;
            type Rule = #rule;

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

            fn key_from_bytes(bytes: &[u8]) -> ::core::option::Option<#key> {
                let mut rest = bytes;
                let value = <#pk_ty as #p::KeyType>::decode_key(&mut rest)?;
                if rest.is_empty() {
                    ::core::option::Option::Some(#key(value))
                } else {
                    ::core::option::Option::None
                }
            }

            #owner_fn

            fn secondary_keys(&self) -> #p::Vec<#enum_ident> {
                let mut keys = #p::Vec::new();
                #(#secondary_keys)*
                keys
            }
        }
    }
}

/// `VERSION` and `decode_version` for a model with `version = N, from =
/// Previous` (none for version 1), and the checks that `Previous` is this
/// model's version N - 1: the same stored name and primary key type.
fn versioned(model: &Model) -> TokenStream {
    let (Some((version, span)), Some(from)) = (&model.version, &model.from) else {
        return match &model.version {
            Some((version, _)) => quote!(const VERSION: u32 = #version;),
            None => TokenStream::new(),
        };
    };
    let p = private();
    let ident = model.ident;
    let previous = version - 1;
    let name_check = format!(
        "`from` must name the previous version of `{ident}`: its stored name differs \
         (give both the same `#[netabase(name = \"..\")]`)"
    );
    let version_check = format!(
        "`from` must name version {previous} of `{ident}`: the chain of versions has a gap"
    );
    quote_spanned! {*span=>
        const VERSION: u32 = #version;

        fn decode_version(
            version: u32,
            bytes: &[u8],
        ) -> ::core::result::Result<Self, #p::VersionError> {
            const _: () = {
                ::core::assert!(
                    #p::same_str(
                        <#from as #p::NetabaseModel>::NAME,
                        <#ident as #p::NetabaseModel>::NAME,
                    ),
                    #name_check
                );
                ::core::assert!(
                    <#from as #p::NetabaseModel>::VERSION == #previous,
                    #version_check
                );
            };
            #p::same_primary_key::<#from, #ident>();
            if version == #version {
                return #p::decode_own::<Self>(bytes);
            }
            if version > #version {
                return ::core::result::Result::Err(#p::VersionError::Unknown {
                    model: <Self as #p::NetabaseModel>::NAME,
                    version,
                    known: #version,
                });
            }
            let older = <#from as #p::NetabaseModel>::decode_version(version, bytes)?;
            <Self as ::core::convert::TryFrom<#from>>::try_from(older).map_err(|error| {
                #p::VersionError::Refused {
                    model: <Self as #p::NetabaseModel>::NAME,
                    to: #version,
                    reason: ::std::string::ToString::to_string(&error),
                }
            })
        }
    }
}

/// A hash of the model's layout as written: each field's name, type and key
/// role, in order. Two types registered under one name with different
/// layouts are told apart by it.
fn schema_hash(model: &Model) -> u64 {
    let mut text = String::new();
    for field in &model.fields {
        let role = match &field.role {
            Role::Plain => "",
            Role::Primary { .. } => "primary",
            Role::Secondary { unique: true, .. } => "unique",
            Role::Secondary { unique: false, .. } => "secondary",
        };
        let ty = quote::ToTokens::to_token_stream(field.ty).to_string();
        text.push_str(&format!("{}:{ty}:{role};", field.name()));
    }
    // FNV-1a, 64 bits: stable across compilers, unlike `DefaultHasher`.
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
