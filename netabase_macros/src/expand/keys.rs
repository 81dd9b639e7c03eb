//! The companion key types: `FooKey` (primary), one `Foo<Field>Key` per
//! indexed field and the `FooSecondaryKey` enum over them.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{names, private};
use crate::ast::{Field, Model, Role};

pub fn expand(model: &Model) -> TokenStream {
    let Some(primary) = model.primary() else {
        return TokenStream::new();
    };
    let p = private();
    let model_ident = model.ident;
    let vis = model.vis;
    let key = names::primary_key(model);
    let key_ty = primary.ty;
    let key_doc = format!(
        "Primary key of [`{model_ident}`]: the value of its `{}` field.",
        primary.name()
    );
    let assert_key = assert_key_type(key_ty);

    let field_keys = model
        .secondaries()
        .enumerate()
        .map(|(index, field)| field_key(model, field, index));
    let enum_ident = names::secondary_enum(model);
    let enum_doc =
        format!("Any secondary key of [`{model_ident}`], one variant per indexed field.");
    let variants: Vec<_> = model.secondaries().map(names::variant).collect();
    let variant_types: Vec<_> = model
        .secondaries()
        .map(|f| names::field_key(model, f))
        .collect();
    let variant_docs = model
        .secondaries()
        .map(|f| format!("A value of the `{}` index.", f.name()));
    let indexes = 0..variants.len();

    quote! {
        #assert_key

        #[doc = #key_doc]
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #vis struct #key(pub #key_ty);

        #[automatically_derived]
        impl ::core::convert::From<#key_ty> for #key {
            fn from(value: #key_ty) -> Self {
                #key(value)
            }
        }

        #[automatically_derived]
        impl #p::KeyEncode for #key {
            #[inline]
            fn encode_key(&self, out: &mut #p::KeyBuf) {
                <#key_ty as #p::KeyEncode>::encode_key(&self.0, out)
            }
        }

        #(#field_keys)*

        #[doc = #enum_doc]
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #vis enum #enum_ident {
            #(
                #[doc = #variant_docs]
                #variants(#variant_types),
            )*
        }

        #[automatically_derived]
        impl #p::SecondaryKey for #enum_ident {
            type Model = #model_ident;

            fn index(&self) -> usize {
                match *self {
                    #( #enum_ident::#variants(_) => #indexes, )*
                }
            }

            fn encode_key(&self, out: &mut #p::KeyBuf) {
                // `*self` so a model without secondary keys (an empty enum) matches nothing.
                match *self {
                    #( #enum_ident::#variants(ref key) => #p::KeyEncode::encode_key(key, out), )*
                }
            }
        }
    }
}

fn field_key(model: &Model, field: &Field, index: usize) -> TokenStream {
    let Role::Secondary { key_ty, unique, .. } = &field.role else {
        return TokenStream::new();
    };
    let p = private();
    let vis = model.vis;
    let model_ident = model.ident;
    let ident = names::field_key(model, field);
    let enum_ident = names::secondary_enum(model);
    let variant = names::variant(field);
    let doc = format!(
        "A value of the {}`{}` index of [`{model_ident}`].",
        if *unique { "unique " } else { "" },
        field.name()
    );
    let assert_key = assert_key_type(key_ty);
    quote! {
        #assert_key

        #[doc = #doc]
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #vis struct #ident(pub #key_ty);

        #[automatically_derived]
        impl ::core::convert::From<#key_ty> for #ident {
            fn from(value: #key_ty) -> Self {
                #ident(value)
            }
        }

        #[automatically_derived]
        impl ::core::convert::From<#ident> for #enum_ident {
            fn from(key: #ident) -> Self {
                #enum_ident::#variant(key)
            }
        }

        #[automatically_derived]
        impl #p::KeyEncode for #ident {
            #[inline]
            fn encode_key(&self, out: &mut #p::KeyBuf) {
                <#key_ty as #p::KeyEncode>::encode_key(&self.0, out)
            }
        }

        #[automatically_derived]
        impl #p::IndexKey for #ident {
            type Model = #model_ident;
            const INDEX: usize = #index;
        }
    }
}

/// A bound check spanned on the field's type, so a type that is not a
/// `KeyType` is reported there rather than somewhere in generated code.
fn assert_key_type(ty: &syn::Type) -> TokenStream {
    let p = private();
    quote_spanned! {ty.span()=>
        const _: fn() = || {
            fn assert_key_type<T: #p::KeyType>() {}
            assert_key_type::<#ty>();
        };
    }
}
