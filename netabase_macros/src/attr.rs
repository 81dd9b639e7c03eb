//! Attributes: `#[netabase(name = "..", write = .., version = N, from = Previous)]`
//! on the struct; `#[primary_key]`,
//! `#[secondary_key]` and `#[secondary_key(unique)]` on fields. Also spots
//! near-misses of the field attributes' names, which the compiler would
//! otherwise report only as an unknown attribute.

use proc_macro2::Span;
use syn::spanned::Spanned;

use crate::ctxt::Ctxt;

pub const PRIMARY_KEY: &str = "primary_key";
pub const SECONDARY_KEY: &str = "secondary_key";
pub const NETABASE: &str = "netabase";
pub const OWNER: &str = "owner";

/// The write rules the derive knows by name.
pub const RULES: [&str; 4] = ["anyone", "owner", "immutable", "members"];

/// What the `#[netabase(..)]` attributes on the struct ask for.
#[derive(Default)]
pub struct ModelAttrs {
    /// The stored name given with `name = ".."`.
    pub name: Option<String>,
    /// The write rule given with `write = ".."` or `write = Type`.
    pub write: Option<WriteAttr>,
    /// The version given with `version = N`, and where it was written.
    pub version: Option<(u32, Span)>,
    /// The previous version's model, given with `from = Type`.
    pub from: Option<syn::Path>,
}

/// `write = "<rule>"` (a built-in rule, by name) or `write = Type` (a type
/// implementing `WriteRule`).
pub enum WriteAttr {
    Named(syn::LitStr),
    Custom(syn::Path),
}

pub fn parse_model(cx: &Ctxt, attrs: &[syn::Attribute]) -> ModelAttrs {
    let mut out = ModelAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident(NETABASE)) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("write") {
                let value = meta.value()?;
                let write = if value.peek(syn::LitStr) {
                    let lit: syn::LitStr = value.parse()?;
                    let name = lit.value();
                    if !RULES.contains(&name.as_str()) {
                        let hint = RULES
                            .iter()
                            .find(|known| edit_distance(&name, known) <= 2)
                            .map(|known| format!("; did you mean `{known}`?"))
                            .unwrap_or_else(|| {
                                format!(
                                    "; the rules are {}, or a type implementing `netabase::WriteRule`",
                                    RULES.map(|r| format!("`{r}`")).join(", ")
                                )
                            });
                        cx.error_spanned_by(&lit, format!("unknown write rule `{name}`{hint}"));
                    }
                    WriteAttr::Named(lit)
                } else {
                    WriteAttr::Custom(value.parse()?)
                };
                if out.write.is_some() {
                    cx.error_spanned_by(&meta.path, "duplicate `write` option");
                } else {
                    out.write = Some(write);
                }
                Ok(())
            } else if meta.path.is_ident("version") {
                let lit: syn::LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<u32>() {
                    Ok(0) => cx.error_spanned_by(&lit, "versions start at 1 (a model without `version` is version 1)"),
                    Ok(_) if out.version.is_some() => {
                        cx.error_spanned_by(&lit, "duplicate `version` option")
                    }
                    Ok(version) => out.version = Some((version, lit.span())),
                    Err(_) => cx.error_spanned_by(&lit, "a version is a whole number from 1 to 4294967295"),
                }
                Ok(())
            } else if meta.path.is_ident("from") {
                let path: syn::Path = meta.value()?.parse()?;
                if out.from.is_some() {
                    cx.error_spanned_by(&path, "duplicate `from` option");
                } else {
                    out.from = Some(path);
                }
                Ok(())
            } else if meta.path.is_ident("name") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                let name = lit.value();
                if let Some(problem) = name_problem(&name) {
                    cx.error_spanned_by(&lit, problem);
                } else if out.name.is_some() {
                    cx.error_spanned_by(&lit, "duplicate `name` option");
                } else {
                    out.name = Some(name);
                }
                Ok(())
            } else {
                let name = quote::ToTokens::to_token_stream(&meta.path).to_string();
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "unknown #[netabase] option `{name}`; the options are `name = \"..\"`, `write = ..`, `version = N` and `from = PreviousVersion`"
                    ),
                );
                skip_value(&meta)
            }
        });
        if let Err(err) = result {
            cx.push(err);
        }
    }
    out
}

/// Why a stored model name is unusable, if it is: it names redb tables
/// (`netabase/<name>/records`), so it must be non-empty and free of `/`.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("a model name cannot be empty")
    } else if name.contains('/') {
        Some("a model name cannot contain `/` (it is part of the model's table names)")
    } else if name.len() > 200 {
        Some("a model name can be at most 200 bytes long")
    } else {
        None
    }
}

/// Skips an unknown option's value, if any, so parsing can go on.
fn skip_value(meta: &syn::meta::ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _: proc_macro2::Group = meta.input.parse()?;
    }
    Ok(())
}

/// What the attributes on one field ask for.
#[derive(Default)]
pub struct FieldAttrs {
    /// Span of the first `#[primary_key]`.
    pub primary: Option<Span>,
    /// Span of the first `#[secondary_key]` and whether it is unique.
    pub secondary: Option<(Span, bool)>,
    /// Span of the first `#[owner]`.
    pub owner: Option<Span>,
}

pub fn parse_field(cx: &Ctxt, field: &syn::Field) -> FieldAttrs {
    let mut attrs = FieldAttrs::default();
    for attr in &field.attrs {
        let path = attr.path();
        if path.is_ident(PRIMARY_KEY) {
            if let Err(err) = attr.meta.require_path_only() {
                cx.push(syn::Error::new(
                    err.span(),
                    "#[primary_key] takes no options; write it as `#[primary_key]`",
                ));
            }
            match attrs.primary {
                Some(_) => cx.error_spanned_by(path, "duplicate #[primary_key] on this field"),
                None => attrs.primary = Some(path.span()),
            }
        } else if path.is_ident(OWNER) {
            if let Err(err) = attr.meta.require_path_only() {
                cx.push(syn::Error::new(
                    err.span(),
                    "#[owner] takes no options; write it as `#[owner]`",
                ));
            }
            match attrs.owner {
                Some(_) => cx.error_spanned_by(path, "duplicate #[owner] on this field"),
                None => attrs.owner = Some(path.span()),
            }
        } else if path.is_ident(SECONDARY_KEY) {
            let unique = parse_secondary_options(cx, attr);
            match attrs.secondary {
                Some(_) => cx.error_spanned_by(path, "duplicate #[secondary_key] on this field"),
                None => attrs.secondary = Some((path.span(), unique)),
            }
        } else if let Some(ident) = path.get_ident() {
            let name = ident.to_string();
            for known in [PRIMARY_KEY, SECONDARY_KEY] {
                if is_near_miss(&name, known) {
                    cx.error_spanned_by(
                        ident,
                        format!("unknown attribute `{name}`; did you mean `{known}`?"),
                    );
                }
            }
        }
    }
    attrs
}

fn parse_secondary_options(cx: &Ctxt, attr: &syn::Attribute) -> bool {
    let mut unique = false;
    if matches!(attr.meta, syn::Meta::Path(_)) {
        return unique;
    }
    let result = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("unique") {
            if unique {
                cx.error_spanned_by(&meta.path, "duplicate `unique` option");
            }
            unique = true;
            Ok(())
        } else {
            let name = quote::ToTokens::to_token_stream(&meta.path).to_string();
            cx.error_spanned_by(
                &meta.path,
                format!("unknown #[secondary_key] option `{name}`; the only option is `unique`"),
            );
            skip_value(&meta)
        }
    });
    if let Err(err) = result {
        cx.push(err);
    }
    unique
}

/// An attribute name within two edits of one of ours, e.g. `secondry_key`,
/// `primarykey` or `primary_keys`.
fn is_near_miss(name: &str, known: &str) -> bool {
    name != known && edit_distance(name, known) <= 2
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses() {
        assert!(is_near_miss("secondry_key", SECONDARY_KEY));
        assert!(is_near_miss("primarykey", PRIMARY_KEY));
        assert!(is_near_miss("primary_keys", PRIMARY_KEY));
        assert!(!is_near_miss("primary_key", PRIMARY_KEY));
        assert!(!is_near_miss("serde", PRIMARY_KEY));
        assert!(!is_near_miss("doc", SECONDARY_KEY));
    }
}
