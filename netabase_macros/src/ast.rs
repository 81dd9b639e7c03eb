//! The IR: a model with its fields and their key roles, each keeping the
//! `syn` node it came from so later errors and generated code carry its span.

use proc_macro2::Span;
use syn::{Data, DeriveInput, Fields, Ident, Type, Visibility};

use crate::attr;
use crate::ctxt::Ctxt;
use crate::keyty::{self, Shape};

pub struct Model<'a> {
    pub ident: &'a Ident,
    /// The stored name given with `#[netabase(name = "..")]`.
    pub name: Option<String>,
    /// The write rule given with `#[netabase(write = ..)]`.
    pub write: Option<attr::WriteAttr>,
    /// `#[netabase(version = N)]`, and where it was written.
    pub version: Option<(u32, Span)>,
    /// `#[netabase(from = Previous)]`: the model of the version before.
    pub from: Option<syn::Path>,
    pub vis: &'a Visibility,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub role: Role<'a>,
    /// Span of its `#[owner]`, if it names the record's owner.
    pub owner: Option<Span>,
}

pub enum Role<'a> {
    Plain,
    Primary {
        attr_span: Span,
    },
    Secondary {
        unique: bool,
        shape: Shape,
        /// The type each index entry is made from: `T` in `T`, `Option<T>`, `Vec<T>`.
        key_ty: &'a Type,
    },
}

impl<'a> Model<'a> {
    /// Reads the derive input; records an error and returns `None` for items
    /// that are not structs with named fields.
    pub fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        if input.generics.lt_token.is_some() || input.generics.where_clause.is_some() {
            cx.error_spanned_by(
                &input.generics,
                "generic models are not supported: a model is stored under one concrete type",
            );
        }
        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(fields) => {
                    cx.error_spanned_by(
                        fields,
                        "tuple structs cannot be models: the key fields need names, \
                         use `struct Name { field: Type, .. }`",
                    );
                    return None;
                }
                Fields::Unit => {
                    cx.error_spanned_by(
                        &input.ident,
                        "unit structs cannot be models: a model needs a #[primary_key] field",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "NetabaseModel can only be derived for structs with named fields, not enums",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "NetabaseModel can only be derived for structs with named fields, not unions",
                );
                return None;
            }
        };
        let fields = named
            .named
            .iter()
            .filter_map(|field| Field::from_syn(cx, field))
            .collect();
        let attrs = attr::parse_model(cx, &input.attrs);
        Some(Model {
            ident: &input.ident,
            name: attrs.name,
            write: attrs.write,
            version: attrs.version,
            from: attrs.from,
            vis: &input.vis,
            fields,
        })
    }

    pub fn primary(&self) -> Option<&Field<'a>> {
        self.fields
            .iter()
            .find(|f| matches!(f.role, Role::Primary { .. }))
    }

    /// The field marked `#[owner]` (the first, if several are).
    pub fn owner(&self) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.owner.is_some())
    }

    /// Whether the write rule is the built-in one called `name`.
    pub fn rule_is(&self, name: &str) -> bool {
        matches!(&self.write, Some(attr::WriteAttr::Named(lit)) if lit.value() == name)
    }

    pub fn secondaries(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields
            .iter()
            .filter(|f| matches!(f.role, Role::Secondary { .. }))
    }
}

impl<'a> Field<'a> {
    fn from_syn(cx: &Ctxt, field: &'a syn::Field) -> Option<Self> {
        // Named fields always have an ident; the None arm only guards the type.
        let ident = field.ident.as_ref()?;
        let attrs = attr::parse_field(cx, field);
        let role = match (attrs.primary, attrs.secondary) {
            (Some(primary), Some((secondary, _))) => {
                cx.push(syn::Error::new(
                    secondary,
                    "a field cannot be both #[primary_key] and #[secondary_key]; \
                     the primary key is already unique and looked up directly",
                ));
                Role::Primary { attr_span: primary }
            }
            (Some(attr_span), None) => Role::Primary { attr_span },
            (None, Some((_, unique))) => {
                let (shape, key_ty) = keyty::shape_of(&field.ty);
                Role::Secondary {
                    unique,
                    shape,
                    key_ty,
                }
            }
            (None, None) => Role::Plain,
        };
        Some(Field {
            ident,
            ty: &field.ty,
            role,
            owner: attrs.owner,
        })
    }

    /// The field name without a raw-identifier prefix, for generated names.
    pub fn name(&self) -> String {
        let name = self.ident.to_string();
        name.strip_prefix("r#").map(str::to_owned).unwrap_or(name)
    }
}
