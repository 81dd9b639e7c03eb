//! The derive behind `netabase`. Use it through `netabase::NetabaseModel`:
//! generated code names only `::netabase::__private::*`, so this crate is not a
//! dependency users add themselves.
//!
//! The pipeline is parse (`ast`) -> validate (`check`) -> generate (`expand`);
//! every stage reports all the errors it finds, each spanned on the offending
//! token, and on error `fallback` keeps the user's crate from drowning in
//! follow-on errors.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod keyty;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `netabase::model::NetabaseModel` and the companion key types for a
/// struct with named fields. See the `netabase` crate for the full reference.
#[proc_macro_derive(NetabaseModel, attributes(netabase, owner, primary_key, secondary_key))]
pub fn derive_netabase_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_derive(&input).into()
}

fn expand_derive(input: &DeriveInput) -> proc_macro2::TokenStream {
    let cx = ctxt::Ctxt::new();
    let model = ast::Model::from_syn(&cx, input);
    if let Some(model) = &model {
        check::check(&cx, model);
    }
    match (cx.finish(), model) {
        (Ok(()), Some(model)) => expand::expand(&model),
        (Err(errors), _) => fallback::expand(input, errors),
        // `from_syn` returns None only after recording an error.
        (Ok(()), None) => fallback::expand(
            input,
            syn::Error::new_spanned(&input.ident, "netabase: could not read this model"),
        ),
    }
}
