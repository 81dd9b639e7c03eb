//! Rules across fields: exactly one primary key, key types that can be keys,
//! generated names that do not collide.

use std::collections::HashMap;

use crate::ast::{Model, Role};
use crate::ctxt::Ctxt;
use crate::expand::names;
use crate::keyty;

pub fn check(cx: &Ctxt, model: &Model) {
    check_primary_key(cx, model);
    check_key_types(cx, model);
    check_generated_names(cx, model);
    check_lookup_names(cx, model);
    check_owner(cx, model);
    check_version(cx, model);
}

/// A version above 1 names the model of the version before it (`from`),
/// through which older records are read; version 1 has none.
fn check_version(cx: &Ctxt, model: &Model) {
    match (&model.version, &model.from) {
        (Some((version, span)), None) if *version > 1 => cx.push(syn::Error::new(
            *span,
            format!(
                "version {version} needs `from = <the version {} model>`: records stored \
                 at older versions are read through it",
                version - 1
            ),
        )),
        (None | Some((1, _)), Some(from)) => cx.error_spanned_by(
            from,
            "`from` names the previous version of this model: give this one \
             `version = 2` or more",
        ),
        _ => {}
    }
}

/// `write = "owner"` needs exactly one `#[owner]` field, a `PeerId`; and
/// `#[owner]` means nothing under another rule.
fn check_owner(cx: &Ctxt, model: &Model) {
    let owners: Vec<_> = model.fields.iter().filter(|f| f.owner.is_some()).collect();
    if model.rule_is("owner") {
        match owners.as_slice() {
            [] => cx.error_spanned_by(
                model.ident,
                format!(
                    "model `{}` has `write = \"owner\"` but no #[owner] field; mark the \
                     `netabase::PeerId` field naming each record's owner with #[owner]",
                    model.ident
                ),
            ),
            [_] => {}
            [_, rest @ ..] => {
                for field in rest {
                    if let Some(span) = field.owner {
                        cx.push(syn::Error::new(
                            span,
                            "duplicate #[owner]: a record has exactly one owner field",
                        ));
                    }
                }
            }
        }
        for field in &owners {
            if !keyty::is_named(field.ty, "PeerId") {
                cx.error_spanned_by(
                    field.ty,
                    format!(
                        "the #[owner] field `{}` must be a `netabase::PeerId`: the peer whose \
                         key signs the record",
                        field.name()
                    ),
                );
            }
        }
    } else {
        for field in &owners {
            if let Some(span) = field.owner {
                cx.push(syn::Error::new(
                    span,
                    "#[owner] names the record's owner for the owner rule; add \
                     #[netabase(write = \"owner\")] to the struct",
                ));
            }
        }
    }
}

/// Lookups are `by_<field>` and `by_<field>_range` for the primary key and
/// every secondary key: a field named `<other>_range` would clash.
fn check_lookup_names(cx: &Ctxt, model: &Model) {
    let keyed: Vec<_> = model
        .fields
        .iter()
        .filter(|f| !matches!(f.role, Role::Plain))
        .collect();
    for field in &keyed {
        let name = field.name();
        if let Some(other) = keyed.iter().find(|o| format!("{}_range", o.name()) == name) {
            cx.error_spanned_by(
                field.ident,
                format!(
                    "the lookup `by_{name}` would clash with the range lookup of `{}`; rename the field",
                    other.name()
                ),
            );
        }
    }
}

fn check_primary_key(cx: &Ctxt, model: &Model) {
    let primaries: Vec<_> = model
        .fields
        .iter()
        .filter_map(|f| match f.role {
            Role::Primary { attr_span } => Some(attr_span),
            _ => None,
        })
        .collect();
    match primaries.as_slice() {
        [] => cx.error_spanned_by(
            model.ident,
            format!(
                "model `{}` has no #[primary_key] field; mark exactly one field with #[primary_key]",
                model.ident
            ),
        ),
        [_] => {}
        [first, rest @ ..] => {
            for span in rest {
                cx.push(syn::Error::new(
                    *span,
                    "duplicate #[primary_key]: a model has exactly one primary key",
                ));
            }
            cx.push(syn::Error::new(*first, "first #[primary_key] here"));
        }
    }
}

fn check_key_types(cx: &Ctxt, model: &Model) {
    for field in &model.fields {
        let key_ty = match &field.role {
            Role::Plain => continue,
            Role::Primary { .. } => field.ty,
            Role::Secondary { key_ty, .. } => key_ty,
        };
        if let Some(reason) = keyty::unkeyable_reason(key_ty) {
            cx.error_spanned_by(key_ty, format!("field `{}`: {reason}", field.name()));
        }
    }
}

fn check_generated_names(cx: &Ctxt, model: &Model) {
    let mut seen: HashMap<String, &str> = HashMap::new();
    seen.insert(
        names::primary_key(model).to_string(),
        "the primary-key type",
    );
    seen.insert(
        names::secondary_enum(model).to_string(),
        "the secondary-key enum",
    );
    seen.insert(names::queries_trait(model).to_string(), "the lookup trait");
    seen.insert(
        names::watch_trait(model).to_string(),
        "the live-query trait",
    );
    for field in model.secondaries() {
        let name = names::field_key(model, field).to_string();
        if let Some(other) = seen.get(&name) {
            cx.error_spanned_by(
                field.ident,
                format!(
                    "the key type generated for field `{}` would be named `{name}`, \
                     which is also {other}; rename the field",
                    field.name()
                ),
            );
        } else {
            seen.insert(name, "another generated type");
        }
    }
}
