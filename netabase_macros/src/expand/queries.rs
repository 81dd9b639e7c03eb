//! `FooQueries`: lookups named after the indexed fields, as an extension trait
//! implemented for every tree that can read `Foo`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::{names, private};
use crate::ast::{Model, Role};

pub fn expand(model: &Model) -> TokenStream {
    let Some(primary) = model.primary() else {
        return TokenStream::new();
    };
    let p = private();
    let ident = model.ident;
    let vis = model.vis;
    let trait_ident = names::queries_trait(model);
    let trait_doc = format!(
        "Lookups by the primary key (in its borrowed form) and on the secondary \
         indexes of [`{ident}`], available on every tree of `{ident}` (`Tree`, \
         `ReadTree`, `WriteTree`). Bring it into scope with `use`."
    );
    let methods = model.secondaries().enumerate().map(|(index, field)| {
        let Role::Secondary { key_ty, unique, .. } = &field.role else {
            return TokenStream::new();
        };
        let name = field.name();
        let by = format_ident!("by_{}", name, span = field.ident.span());
        let by_range = format_ident!("by_{}_range", name, span = field.ident.span());
        // Spanned on the field's type so a non-key type is reported there.
        let key_ref = quote_spanned!(key_ty.span()=> <#key_ty as #p::KeyType>::Ref<'__k>);
        let range_doc = format!(
            "All [`{ident}`] records whose `{name}` lies in `range`, in `{name}` order \
             (then primary-key order).\n\n# Errors\n\nFails if the database cannot be read \
             or a stored record does not decode."
        );
        let exact = if *unique {
            let doc = format!(
                "The [`{ident}`] whose `{name}` equals `value`, if any (the index is unique).\
                 \n\n# Errors\n\nFails if the database cannot be read or the record does not decode."
            );
            quote! {
                #[doc = #doc]
                fn #by<'__k>(
                    &self,
                    value: #key_ref,
                ) -> ::core::result::Result<::core::option::Option<#ident>, #p::StoreError> {
                    #p::Lookup::<#ident>::index_get_unique(self, #index, &value)
                }
            }
        } else {
            let doc = format!(
                "Every [`{ident}`] whose `{name}` equals `value`, in primary-key order.\
                 \n\n# Errors\n\nFails if the database cannot be read or a record does not decode."
            );
            quote! {
                #[doc = #doc]
                fn #by<'__k>(
                    &self,
                    value: #key_ref,
                ) -> ::core::result::Result<#p::Vec<#ident>, #p::StoreError> {
                    #p::Lookup::<#ident>::index_get(self, #index, &value)
                }
            }
        };
        quote! {
            #exact

            #[doc = #range_doc]
            fn #by_range<'__k, __R: ::core::ops::RangeBounds<#key_ref>>(
                &self,
                range: __R,
            ) -> ::core::result::Result<#p::Vec<#ident>, #p::StoreError> {
                #p::Lookup::<#ident>::index_range(self, #index, range)
            }
        }
    });
    let by_key = primary_lookups(model, primary);
    let live = live_queries(model);
    quote! {
        #live

        #[doc = #trait_doc]
        #vis trait #trait_ident: #p::Lookup<#ident> {
            #by_key
            #(#methods)*
        }

        #[automatically_derived]
        impl<__T: #p::Lookup<#ident> + ?::core::marker::Sized> #trait_ident for __T {}
    }
}

/// `by_<key>(value)` and `by_<key>_range(range)`: the primary key in its
/// borrowed form (`&str` for a `String` key), with no newtype to build.
fn primary_lookups(model: &Model, primary: &crate::ast::Field) -> TokenStream {
    let p = private();
    let ident = model.ident;
    let name = primary.name();
    let ty = primary.ty;
    let by = format_ident!("by_{}", name, span = primary.ident.span());
    let by_range = format_ident!("by_{}_range", name, span = primary.ident.span());
    let key_ref = quote_spanned!(ty.span()=> <#ty as #p::KeyType>::Ref<'__k>);
    let doc = format!(
        "The [`{ident}`] whose primary key `{name}` equals `value`, if any: \
         `get` without building the key type.\n\n# Errors\n\nFails if the database \
         cannot be read or the record does not decode."
    );
    let range_doc = format!(
        "The [`{ident}`] records whose primary key `{name}` lies in `range`, in key \
         order: `range` without building the key type.\n\n# Errors\n\nFails if the \
         database cannot be read; each item fails if its record does not decode."
    );
    quote! {
        #[doc = #doc]
        fn #by<'__k>(
            &self,
            value: #key_ref,
        ) -> ::core::result::Result<::core::option::Option<#ident>, #p::StoreError> {
            #p::Lookup::<#ident>::get_by(self, &value)
        }

        #[doc = #range_doc]
        fn #by_range<'__k, __R: ::core::ops::RangeBounds<#key_ref>>(
            &self,
            range: __R,
        ) -> ::core::result::Result<#p::Records<'_, #ident>, #p::StoreError> {
            #p::Lookup::<#ident>::key_range(self, range)
        }
    }
}

/// `<Model>Watch`: `watch_by_<field>(..)` and `watch_by_<field>_range(..)`
/// on a `Store`, starting live queries of the same sets as the lookups.
fn live_queries(model: &Model) -> TokenStream {
    let p = private();
    let ident = model.ident;
    let vis = model.vis;
    let trait_ident = names::watch_trait(model);
    let trait_doc = format!(
        "Live queries of [`{ident}`] by its secondary indexes, on a `Store` (a node's \
         `store()` too): the matching records now, then each change to that set. \
         Bring it into scope with `use`."
    );
    let (decls, impls): (Vec<_>, Vec<_>) = model
        .secondaries()
        .enumerate()
        .map(|(index, field)| {
            let Role::Secondary { key_ty, .. } = &field.role else {
                return (TokenStream::new(), TokenStream::new());
            };
            let name = field.name();
            let watch = format_ident!("watch_by_{}", name, span = field.ident.span());
            let watch_range = format_ident!("watch_by_{}_range", name, span = field.ident.span());
            let key_ref = quote_spanned!(key_ty.span()=> <#key_ty as #p::KeyType>::Ref<'__k>);
            let doc = format!(
                "A live query of the [`{ident}`] records whose `{name}` equals `value`.\
                 \n\n# Errors\n\nA store error if the first read fails."
            );
            let range_doc = format!(
                "A live query of the [`{ident}`] records whose `{name}` lies in `range`.\
                 \n\n# Errors\n\nA store error if the first read fails."
            );
            let result = quote! {
                ::core::result::Result<#p::LiveQuery<#ident>, #p::StoreError>
            };
            let decl = quote! {
                #[doc = #doc]
                fn #watch<'__k>(&self, value: #key_ref) -> #result;
                #[doc = #range_doc]
                fn #watch_range<'__k, __R: ::core::ops::RangeBounds<#key_ref>>(
                    &self,
                    range: __R,
                ) -> #result;
            };
            let body = quote! {
                fn #watch<'__k>(&self, value: #key_ref) -> #result {
                    self.watch_index::<#ident, _>(
                        #index,
                        ::core::ops::Bound::Included(&value),
                        ::core::ops::Bound::Included(&value),
                    )
                }
                fn #watch_range<'__k, __R: ::core::ops::RangeBounds<#key_ref>>(
                    &self,
                    range: __R,
                ) -> #result {
                    self.watch_index::<#ident, _>(#index, range.start_bound(), range.end_bound())
                }
            };
            (decl, body)
        })
        .unzip();
    quote! {
        #[doc = #trait_doc]
        #vis trait #trait_ident {
            #(#decls)*
        }

        #[automatically_derived]
        impl #trait_ident for #p::Store {
            #(#impls)*
        }
    }
}
