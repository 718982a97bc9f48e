//! OpenAPI names for the scalar types of `agora-types`, whose serde form is a string: they stay
//! free of any documentation dependency, so their schemas are written here, next to the API.

use std::borrow::Cow;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

fn string(pattern: &str, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

/// `agora_types::Amount`.
pub struct AmountSchema;

impl PartialSchema for AmountSchema {
    fn schema() -> RefOr<Schema> {
        string("^[0-9]+$", "base units (1 AGR = 10^9), as a decimal string")
    }
}

impl ToSchema for AmountSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Amount")
    }
}

/// `agora_types::Hash`.
pub struct HashSchema;

impl PartialSchema for HashSchema {
    fn schema() -> RefOr<Schema> {
        string("^[0-9a-f]{64}$", "32 bytes as lowercase hex")
    }
}

impl ToSchema for HashSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Hash")
    }
}

/// `agora_types::Address`.
pub struct AddressSchema;

impl PartialSchema for AddressSchema {
    fn schema() -> RefOr<Schema> {
        string("^agora1[02-9ac-hj-np-z]+$", "bech32m address")
    }
}

impl ToSchema for AddressSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Address")
    }
}
