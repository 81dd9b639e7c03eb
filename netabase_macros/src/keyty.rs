//! Reading a key field's type: its shape (`T`, `Option<T>` or `Vec<T>`) and
//! whether `T` can be a key at all. Types the macro cannot judge by their
//! spelling (user types, aliases) are checked by a trait bound spanned on the
//! type instead, see `expand::keys`.

use syn::{GenericArgument, PathArguments, Type};

/// How a secondary-key field maps to index entries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One entry per record.
    Single,
    /// `Option<T>`: one entry when `Some`, none when `None`.
    Optional,
    /// `Vec<T>`: one entry per element (`Vec<u8>` is a byte-string key instead).
    Many,
}

/// Splits `Option<T>` / `Vec<T>` into their shape and `T`.
pub fn shape_of(ty: &Type) -> (Shape, &Type) {
    if let Some(inner) = single_generic_arg(ty, "Option") {
        return (Shape::Optional, inner);
    }
    if let Some(inner) = single_generic_arg(ty, "Vec") {
        if !is_ident(inner, "u8") {
            return (Shape::Many, inner);
        }
    }
    (Shape::Single, ty)
}

/// Why `ty` can never be a key, if its spelling shows it.
pub fn unkeyable_reason(ty: &Type) -> Option<String> {
    match ty {
        Type::Paren(inner) => unkeyable_reason(&inner.elem),
        Type::Group(inner) => unkeyable_reason(&inner.elem),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            let name = last.ident.to_string();
            match name.as_str() {
                "f32" | "f64" => Some(format!(
                    "`{name}` cannot be a key: floating-point numbers have no total order \
                     (NaN, -0.0); store an integer (e.g. fixed-point) or the bits instead"
                )),
                "Vec" if single_generic_arg(ty, "Vec").is_some_and(|t| is_ident(t, "u8")) => None,
                "Option" | "Vec" if single_generic_arg(ty, &name).is_some() => Some(format!(
                    "`{name}<..>` cannot be nested in a key; a secondary key may be `Option<T>` \
                     or `Vec<T>` of a key type T, a primary key must be a plain key type"
                )),
                "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet" => Some(format!(
                    "`{name}` cannot be a key; index a `Vec<T>` field to index each element"
                )),
                _ => None,
            }
        }
        Type::Array(array) if is_ident(&array.elem, "u8") => None,
        Type::Array(_) => Some("arrays cannot be keys, except byte arrays `[u8; N]`".to_string()),
        Type::Reference(_) => Some(
            "references cannot be keys: models own their data (use `String`, `Vec<u8>`)".into(),
        ),
        Type::Tuple(tuple) if tuple.elems.is_empty() => Some("`()` cannot be a key".into()),
        Type::Tuple(tuple) if tuple.elems.len() == 1 => unkeyable_reason(&tuple.elems[0]),
        Type::Tuple(tuple) if tuple.elems.len() > 4 => {
            Some("a tuple key has at most 4 parts; make a key type of your own (`KeyType`)".into())
        }
        // Each part must be a key; the tuple sorts by its parts in order.
        Type::Tuple(tuple) => tuple.elems.iter().find_map(unkeyable_reason),
        Type::Slice(_)
        | Type::TraitObject(_)
        | Type::ImplTrait(_)
        | Type::Ptr(_)
        | Type::BareFn(_)
        | Type::Never(_) => Some(
            "this type cannot be a key: keys are integers, bool, char, strings or bytes".into(),
        ),
        _ => None,
    }
}

fn single_generic_arg<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    if args.args.len() != 1 {
        return None;
    }
    match args.args.first()? {
        GenericArgument::Type(inner) => Some(inner),
        _ => None,
    }
}

/// Whether `ty` is spelled as a path ending in `name` (`PeerId`,
/// `netabase::PeerId`), with no generics.
pub fn is_named(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == name && s.arguments.is_empty()),
        Type::Paren(inner) => is_named(&inner.elem, name),
        Type::Group(inner) => is_named(&inner.elem, name),
        _ => false,
    }
}

fn is_ident(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Type {
        syn::parse_str(s).unwrap()
    }

    #[test]
    fn shapes() {
        assert!(shape_of(&ty("u32")).0 == Shape::Single);
        assert!(shape_of(&ty("Option<String>")).0 == Shape::Optional);
        assert!(shape_of(&ty("Vec<String>")).0 == Shape::Many);
        assert!(shape_of(&ty("Vec<u8>")).0 == Shape::Single);
        assert!(shape_of(&ty("std::option::Option<u8>")).0 == Shape::Optional);
    }

    #[test]
    fn unkeyable() {
        assert!(unkeyable_reason(&ty("f64")).is_some());
        assert!(unkeyable_reason(&ty("Option<u8>")).is_some());
        assert!(unkeyable_reason(&ty("&'static str")).is_some());
        assert!(unkeyable_reason(&ty("(u8, u8)")).is_none());
        assert!(
            unkeyable_reason(&ty("(String, f32)")).is_some(),
            "a part that is no key"
        );
        assert!(
            unkeyable_reason(&ty("(u8, u8, u8, u8, u8)")).is_some(),
            "over 4 parts"
        );
        assert!(unkeyable_reason(&ty("[u32; 4]")).is_some());
        assert!(unkeyable_reason(&ty("[u8; 4]")).is_none());
        assert!(unkeyable_reason(&ty("String")).is_none());
        assert!(unkeyable_reason(&ty("MyKey")).is_none());
    }
}
