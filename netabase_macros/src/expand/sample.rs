//! `impl Sample`: a deterministic instance from a seed and a target size.
//! The bounds are written as higher-ranked so that a model with a field type
//! lacking `Sample` still compiles; it just has no `Sample` impl.

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
        impl #p::Sample for #ident
        where
            #( for<'__s> #types: #p::Sample, )*
        {
            const VARIABLE: bool = true;

            fn sample(seed: u64, size: usize) -> Self {
                let variable: usize = 0 #( + usize::from(<#types as #p::Sample>::VARIABLE) )*;
                let share = size / ::core::cmp::max(variable, 1);
                Self {
                    #( #fields: <#types as #p::Sample>::sample(seed, share), )*
                }
            }
        }
    }
}
