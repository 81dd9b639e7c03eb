//! What is emitted when the model is invalid: the errors, plus the companion
//! types as empty shells so code that names them reports nothing further.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::DeriveInput;

pub fn expand(input: &DeriveInput, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let ident = &input.ident;
    let vis = &input.vis;
    let key = format_ident!("{}Key", ident);
    let secondary = format_ident!("{}SecondaryKey", ident);
    quote! {
        #errors
        #[allow(dead_code)]
        #vis struct #key;
        #[allow(dead_code)]
        #vis enum #secondary {}
    }
}
