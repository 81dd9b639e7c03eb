//! Code generation. Reads only the IR; every path is absolute and goes through
//! `::netabase::__private`, so the user's crate needs no other dependency.

mod codec;
mod keys;
mod model;
mod queries;
mod sample;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Model;

pub fn expand(model: &Model) -> TokenStream {
    let keys = keys::expand(model);
    let model_impl = model::expand(model);
    let codec = codec::expand(model);
    let sample = sample::expand(model);
    let queries = queries::expand(model);
    quote! {
        #keys
        #queries
        // Trait impls sit in an anonymous const so their helper `use`s stay private.
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #model_impl
            #codec
            #sample
        };
    }
}

/// Names of the generated companion items, derived from the model's ident
/// (with its span, so errors about them point at the model).
pub mod names {
    use proc_macro2::Ident;
    use quote::format_ident;

    use crate::ast::{Field, Model};

    pub fn primary_key(model: &Model) -> Ident {
        format_ident!("{}Key", model.ident)
    }

    pub fn secondary_enum(model: &Model) -> Ident {
        format_ident!("{}SecondaryKey", model.ident)
    }

    pub fn queries_trait(model: &Model) -> Ident {
        format_ident!("{}Queries", model.ident)
    }

    pub fn watch_trait(model: &Model) -> Ident {
        format_ident!("{}Watch", model.ident)
    }

    pub fn field_key(model: &Model, field: &Field) -> Ident {
        format_ident!("{}{}Key", model.ident, pascal_case(&field.name()))
    }

    pub fn variant(field: &Field) -> Ident {
        format_ident!("{}", pascal_case(&field.name()), span = field.ident.span())
    }

    pub fn pascal_case(snake: &str) -> String {
        snake
            .split('_')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut chars = part.chars();
                match chars.next() {
                    Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                    None => String::new(),
                }
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn pascal_case() {
            assert_eq!(super::pascal_case("email"), "Email");
            assert_eq!(super::pascal_case("created_at"), "CreatedAt");
            assert_eq!(super::pascal_case("_x__y"), "XY");
        }
    }
}

/// `::netabase::__private`, the one root generated code reaches through.
fn private() -> TokenStream {
    quote!(::netabase::__private)
}
